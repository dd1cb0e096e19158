"""Per-class training weights and per-class evaluation (study 004), computed with scikit-learn.

Weights: `class_weights` turns the training set's class counts n_c into loss
weights, normalised to mean 1 so the loss keeps its scale and the learning rate
means the same thing with and without weighting.

Metrics, per class c, on one evaluation split (the study's definitions):
    precision, recall      as usual (0 where undefined: no predictions / no images)
    bcr                    (precision + recall) / 2, the balanced classification rate
    ova_acc                one-vs-rest accuracy, (TP + TN) / N
    aggregated             mean of ova_acc, precision, recall and bcr
The arithmetic is scikit-learn's (`precision_recall_fscore_support`,
`multilabel_confusion_matrix`, `confusion_matrix`); nothing here counts by hand.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix, precision_recall_fscore_support

METRICS = ("precision", "recall", "bcr", "ova_acc", "aggregated")


def class_weights(counts: list[int], scheme: str, beta: float = 0.999) -> torch.Tensor | None:
    """Loss weight per class from training counts, mean 1; None for `none`.

    inverse:   w_c ∝ 1 / n_c
    effective: w_c ∝ (1 - beta) / (1 - beta^n_c)   (Cui et al. 2019, "effective number of samples")
    A class absent from the training set counts as 1 image, so its weight stays finite.
    """
    if scheme == "none":
        return None
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if scheme == "inverse":
        w = 1.0 / n
    elif scheme == "effective":
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise ValueError(f"unknown class_weights scheme {scheme!r}")
    return torch.as_tensor(w / w.mean(), dtype=torch.float32)


def per_class(y_true, y_pred, classes: list[str], train_counts: list[int] | None = None) -> list[dict]:
    """One dict per class: class_index, class_name, support, train_count and METRICS."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    precision, recall, _, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    ova = multilabel_confusion_matrix(y_true, y_pred, labels=labels)  # per class [[TN, FP], [FN, TP]]
    ova_acc = (ova[:, 0, 0] + ova[:, 1, 1]) / max(len(y_true), 1)
    rows = []
    for c in labels:
        bcr = (precision[c] + recall[c]) / 2
        rows.append(dict(class_index=c, class_name=classes[c], support=int(support[c]),
                         train_count=int(train_counts[c]) if train_counts is not None else -1,
                         precision=float(precision[c]), recall=float(recall[c]), bcr=float(bcr),
                         ova_acc=float(ova_acc[c]),
                         aggregated=float((ova_acc[c] + precision[c] + recall[c] + bcr) / 4)))
    return rows


def confusion_rows(y_true, y_pred, num_classes: int) -> list[dict]:
    """The confusion matrix in long form, non-zero cells only: true, pred, count."""
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(range(num_classes)))
    true, pred = np.nonzero(cm)
    return [dict(true=int(t), pred=int(p), count=int(cm[t, p])) for t, p in zip(true, pred)]


def summary(rows: list[dict]) -> dict:
    """The study's summary numbers over classes: macro means of every metric and the median aggregated."""
    out = {f"macro_{m}": float(np.mean([r[m] for r in rows])) for m in METRICS}
    out["median_aggregated"] = float(np.median([r["aggregated"] for r in rows]))
    return out


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, normalize, batch: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(normalize(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)])


def evaluate_classes(model, splits: dict, normalize, classes: list[str], train_counts: list[int]):
    """(classes rows, confusion rows) for the val and test splits, each row tagged with its split."""
    class_rows, cells = [], []
    for split in ("val", "test"):
        if split not in splits:
            continue
        x, y = splits[split]
        pred = predict(model, x, normalize).cpu().numpy()
        true = y.cpu().numpy()
        class_rows += [dict(r, split=split) for r in per_class(true, pred, classes, train_counts)]
        cells += [dict(r, split=split) for r in confusion_rows(true, pred, len(classes))]
    return class_rows, cells
