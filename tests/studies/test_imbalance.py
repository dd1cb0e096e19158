"""Study 004: long-tailed splits, class weights, per-class metrics, k-fold, ResNet18 weights, kernel figures."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trainables.classes import class_weights, confusion_rows, per_class, summary
from trainables.config import ConfigError, resolve
from trainables.data import Dataset, kfold_split, long_tail_counts, long_tail_indices, split_facts, trial_splits

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default


def balanced_dataset(per_class: int = 50, num_classes: int = 10, n_test: int = 30) -> Dataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(num_classes).repeat(per_class)[torch.randperm(per_class * num_classes, generator=g)]
    x = torch.arange(len(y)).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8)
    test_y = torch.arange(n_test) % num_classes
    return Dataset("synthetic", "synthetic", [f"c{i}" for i in range(num_classes)], x, y,
                   torch.zeros(n_test, 3, 32, 32, dtype=torch.uint8), test_y, (0.5,) * 3, (0.25,) * 3)


# --- long tail -------------------------------------------------------------------------------

def test_long_tail_counts_follow_the_exponential_profile():
    counts = long_tail_counts([500] * 10, 100.0)
    expected = [int(500 * 100 ** (-c / 9)) for c in range(10)]
    assert counts == expected
    assert counts[0] == 500 and counts[-1] == 5          # n_max and n_max / rho
    assert all(a > b for a, b in zip(counts, counts[1:]))
    assert long_tail_counts([500] * 10, 1.0) == [500] * 10
    # a class with fewer images than its quota keeps what it has; none drops to zero
    assert long_tail_counts([100, 10, 100], 4.0) == [100, 10, 25]
    assert min(long_tail_counts([3] * 5, 1000.0)) == 1


def test_long_tail_indices_are_seeded_and_leave_the_test_set_alone():
    data = balanced_dataset()
    keep = long_tail_indices(data.train_y, 10, 10.0, seed=0)
    assert torch.bincount(data.train_y[keep], minlength=10).tolist() == long_tail_counts([50] * 10, 10.0)
    assert torch.equal(keep, long_tail_indices(data.train_y, 10, 10.0, seed=0))
    assert not torch.equal(keep, long_tail_indices(data.train_y, 10, 10.0, seed=1))
    splits = trial_splits(data, resolve(dict(imbalance_ratio=10.0)))
    assert torch.equal(splits["train"][1], data.train_y[keep])
    assert torch.equal(splits["test"][1], data.test_y)  # test set untouched, still balanced
    facts = split_facts(data, resolve(dict(imbalance_ratio=10.0)))
    assert json.loads(facts["train_class_counts"]) == long_tail_counts([50] * 10, 10.0)


# --- class weights ---------------------------------------------------------------------------

def test_inverse_weights_are_proportional_to_one_over_n_with_mean_one():
    w = class_weights([100, 10, 1], "inverse")
    assert w.mean().item() == pytest.approx(1.0)
    assert (w[2] / w[0]).item() == pytest.approx(100.0)
    assert (w[1] / w[0]).item() == pytest.approx(10.0)
    assert class_weights([100, 10, 1], "none") is None


def test_effective_number_weights_match_hand_computation():
    # beta = 0.9: n=1 -> (0.1)/(0.1) = 1; n=2 -> 0.1/(1-0.81) = 0.526316; mean-1 normalisation
    w = class_weights([1, 2], "effective", beta=0.9)
    raw = np.array([1.0, 0.1 / 0.19])
    assert w.tolist() == pytest.approx((raw / raw.mean()).tolist(), rel=1e-6)
    # large beta approaches inverse weighting, small beta approaches no weighting
    assert class_weights([100, 1], "effective", beta=0.99999).tolist() == pytest.approx(
        class_weights([100, 1], "inverse").tolist(), rel=1e-2)
    assert class_weights([100, 1], "effective", beta=1e-6).tolist() == pytest.approx([1.0, 1.0], rel=1e-4)


# --- per-class metrics -----------------------------------------------------------------------

def test_per_class_metrics_against_a_hand_computed_case():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    rows = per_class(y_true, y_pred, ["a", "b", "c", "d"], train_counts=[5, 4, 3, 0])
    by = {r["class_name"]: r for r in rows}
    # class a: TP 2, FP 0, FN 1, TN 3
    assert by["a"]["precision"] == pytest.approx(1.0)
    assert by["a"]["recall"] == pytest.approx(2 / 3)
    assert by["a"]["bcr"] == pytest.approx(5 / 6)
    assert by["a"]["ova_acc"] == pytest.approx(5 / 6)
    assert by["a"]["aggregated"] == pytest.approx((5 / 6 + 1 + 2 / 3 + 5 / 6) / 4)
    # class b: TP 1, FP 1, FN 1, TN 3
    assert (by["b"]["precision"], by["b"]["recall"], by["b"]["ova_acc"]) == pytest.approx((0.5, 0.5, 4 / 6))
    # class c: TP 1, FP 1, FN 0, TN 4
    assert (by["c"]["precision"], by["c"]["recall"], by["c"]["bcr"]) == pytest.approx((0.5, 1.0, 0.75))
    # class d: never present, never predicted: precision/recall 0, one-vs-rest accuracy 1
    assert (by["d"]["precision"], by["d"]["recall"], by["d"]["ova_acc"], by["d"]["support"]) == (0, 0, 1.0, 0)
    assert [r["support"] for r in rows] == [3, 2, 1, 0]
    assert [r["train_count"] for r in rows] == [5, 4, 3, 0]
    s = summary(rows)
    assert s["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1.0 + 0) / 4)
    assert s["median_aggregated"] == pytest.approx(np.median([r["aggregated"] for r in rows]))
    cells = {(c["true"], c["pred"]): c["count"] for c in confusion_rows(y_true, y_pred, 4)}
    assert cells == {(0, 0): 2, (0, 1): 1, (1, 1): 1, (1, 2): 1, (2, 2): 1}


# --- k-fold ----------------------------------------------------------------------------------

def test_kfold_split_is_disjoint_covering_and_stratified():
    data = balanced_dataset()
    labels = data.train_y[long_tail_indices(data.train_y, 10, 10.0, seed=0)]
    folds = 4
    vals = []
    for k in range(folds):
        train_idx, val_idx = kfold_split(labels, folds, k, seed=0)
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
        assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(len(labels)))
        counts = torch.bincount(labels, minlength=10)
        val_counts = torch.bincount(labels[val_idx], minlength=10)
        assert ((val_counts.float() - counts.float() / folds).abs() <= 1).all()  # stratified
        vals.append(set(val_idx.tolist()))
    assert set().union(*vals) == set(range(len(labels)))       # every image validates once
    assert sum(len(v) for v in vals) == len(labels)
    with pytest.raises(ValueError, match="rarest class"):
        kfold_split(labels, 6, 0, seed=0)  # the rarest class has 5 images


def test_kfold_through_trial_splits_and_config_errors():
    data = balanced_dataset()
    config = resolve(dict(imbalance_ratio=10.0, folds=3, fold=2))
    splits = trial_splits(data, config)
    facts = split_facts(data, config)
    assert len(splits["train"][1]) + len(splits["val"][1]) == sum(long_tail_counts([50] * 10, 10.0))
    assert facts["n_val"] == len(splits["val"][1]) and facts["n_train"] == len(splits["train"][1])
    for bad, message in [(dict(folds=1), "at least 2"), (dict(folds=3, fold=3), r"0\.\.2"),
                         (dict(fold=1), "set folds"), (dict(folds=3, val_size=10), "val_size=0"),
                         (dict(imbalance_ratio=0.5), ">= 1"), (dict(class_weights="inverted"), "inverse"),
                         (dict(effective_beta=1.0), r"\(0, 1\)")]:
        with pytest.raises(ConfigError, match=message):
            resolve(bad)


# --- models and weight loading ---------------------------------------------------------------

@pytest.mark.parametrize("model", ["baseline4", "deeper7", "resnet18"])
def test_study_models_build_for_32x32(model):
    from trainables.models import build_model
    net = build_model(resolve(dict(model=model, init="default")), 7)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_resnet18_loads_a_local_weights_file_and_freezes_the_backbone(tmp_path):
    import torchvision
    from trainables.models import build_model
    torch.manual_seed(123)
    source = torchvision.models.resnet18(weights=None)  # 1000-class head, like ImageNet weights
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    net = build_model(resolve(dict(model="resnet18", init="default", resnet_weights=str(path))), 10)
    assert torch.equal(net.conv1.weight, source.conv1.weight)
    assert torch.equal(net.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)
    assert net.fc.weight.shape == (10, 512)
    assert all(p.requires_grad for p in net.parameters())
    frozen = build_model(resolve(dict(model="resnet18", init="default", resnet_weights=str(path),
                                      freeze_backbone=True)), 10)
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    scratch = build_model(resolve(dict(model="resnet18", init="default")), 10)
    assert not torch.equal(scratch.conv1.weight, source.conv1.weight)
    # a checkpoint-style dict with the weights under "model" also loads
    torch.save({"model": source.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    again = build_model(resolve(dict(model="resnet18", init="default", resnet_weights=str(tmp_path / "ckpt.pt"))), 10)
    assert torch.equal(again.conv1.weight, source.conv1.weight)


def test_resnet18_weight_errors_are_clear(tmp_path, monkeypatch):
    import torchvision
    from trainables.models import build_model
    with pytest.raises(ConfigError, match="no such file"):
        resolve(dict(model="resnet18", init="default", resnet_weights=str(tmp_path / "absent.pth")))
    (tmp_path / "junk.pth").write_bytes(b"not torch")
    with pytest.raises(ConfigError, match="not a readable torch file"):
        build_model(resolve(dict(model="resnet18", init="default", resnet_weights=str(tmp_path / "junk.pth"))), 10)
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ConfigError, match="not a ResNet18 state_dict"):
        build_model(resolve(dict(model="resnet18", init="default", resnet_weights=str(tmp_path / "r34.pth"))), 10)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match="init=default"):
        resolve(dict(model="resnet18", init="he_normal", resnet_weights=str(tmp_path / "r18.pth")))
    with pytest.raises(ConfigError, match="needs resnet_weights"):
        resolve(dict(model="resnet18", init="default", freeze_backbone=True))

    real = torchvision.models.resnet18

    def offline(*args, weights=None, **kwargs):  # what a machine without network sees
        if weights is not None:
            raise OSError("network unreachable")
        return real(*args, **kwargs)
    monkeypatch.setattr(torchvision.models, "resnet18", offline)
    with pytest.raises(ConfigError, match="downloading .* failed .*network unreachable.*state_dict"):
        build_model(resolve(dict(model="resnet18", init="default", resnet_weights="imagenet")), 10)


# --- kernel pictures -------------------------------------------------------------------------

def test_kernel_figures_show_each_kernel(tmp_path):
    import matplotlib.pyplot as plt
    from analysis.kernels import _scaled, conv_weights, find_checkpoint, init_vs_final, kernel_figure
    from trainables.models import build_model
    net = build_model(resolve(dict(model="baseline4", init="default")), 10)
    convs = conv_weights(net.state_dict())
    assert [tuple(w.shape) for _, w in convs] == [(21, 3, 3, 3), (20, 21, 3, 3), (15, 20, 3, 3), (7, 15, 5, 5)]
    first = convs[0][1]
    fig = kernel_figure(first, "conv 0")
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 21  # one RGB tile per filter
    assert np.allclose(shown[4], _scaled(first[4].permute(1, 2, 0).numpy()))
    plt.close(fig)
    fig = kernel_figure(convs[3][1], "conv 3", max_out=4, max_in=6)
    shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(shown) == 4 * 6 and shown[0].shape == (5, 5)  # filter x input-channel grid
    assert np.allclose(shown[6 + 2], _scaled(convs[3][1][1, 2].numpy()))
    plt.close(fig)
    fig = init_vs_final([("baseline", first, first * 2)])
    assert sum(1 for ax in fig.axes if ax.images) == 2 * 21
    fig.savefig(tmp_path / "k.png")
    plt.close(fig)
    folder = tmp_path / "sweep" / "tune" / "run_trial_abc12_00003_3_trial=3" / "checkpoint_000002"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path / "sweep", "abc12_00003") == folder / "state.pt"
    assert find_checkpoint(tmp_path / "sweep", "abc12_00004") is None


def test_train_reports_classes_and_snapshots_without_ray():
    from trainables.train import train
    data = balanced_dataset(per_class=8, n_test=20)
    reports = []
    train(dict(model="baseline4", init="default", dataset="synthetic", epochs=2, batch_size=16, augment=False,
               imbalance_ratio=4.0, class_weights="inverse", class_metrics="final", weight_snapshots=True),
          data, report=lambda m, s: reports.append((m, s)))
    (first, s1), (last, s2) = reports
    assert "classes" not in first and s1 is None
    assert len(last["classes"]) == 10 and {r["split"] for r in last["classes"]} == {"test"}
    assert [r["train_count"] for r in last["classes"]] == long_tail_counts([8] * 10, 4.0)
    assert sum(c["count"] for c in last["confusion"]) == 20
    acc = sum(c["count"] for c in last["confusion"] if c["true"] == c["pred"]) / 20
    assert math.isclose(acc, last["test_acc"])
    assert set(s2["init_model"]) == set(s2["model"])
    assert not torch.equal(s2["init_model"]["0.weight"], s2["model"]["0.weight"].cpu())


# --- end to end through Ray ------------------------------------------------------------------

@pytest.mark.slow
def test_kfold_sweep_writes_classes_and_confusion_and_a_report(tiny_cifar10, tmp_path):
    from analysis.report import build_report
    from analysis.results import load
    from sweeps.engine.grid import Sweep, axis
    from sweeps.engine.runner import main
    sweep = Sweep(study="imbalance", fixed=dict(model="baseline4", init="default", epochs=2, batch_size=16,
                                                imbalance_ratio=4.0, folds=2, class_weights="inverse",
                                                class_metrics="every"),
                  grid=axis("fold", [0, 1]))
    code = main(sweep, "imbalance_test.py", ["--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "res"),
                                             "--cpus-per-trial", "1"])
    assert code == 0
    tables = load(tmp_path / "res" / "imbalance_test")
    trials, classes, confusion = tables["trials"], tables["classes"], tables["confusion"]
    assert len(trials) == 2 and set(trials["status"]) == {"completed"}
    # 2 trials x 2 epochs x {val, test} x 10 classes
    assert len(classes) == 2 * 2 * 2 * 10
    assert classes.groupby(["trial_id", "epoch", "split"]).size().eq(10).all()
    for _, t in trials.iterrows():
        mine = classes[(classes["trial_id"] == t["trial_id"]) & (classes["split"] == "test")]
        assert mine[mine["epoch"] == 2]["train_count"].tolist() == json.loads(t["train_class_counts"])
        assert mine[mine["epoch"] == 2]["support"].sum() == t["n_test"]
        val = classes[(classes["trial_id"] == t["trial_id"]) & (classes["split"] == "val") & (classes["epoch"] == 2)]
        assert val["support"].sum() == t["n_val"]
        cells = confusion[(confusion["trial_id"] == t["trial_id"]) & (confusion["split"] == "test")]
        assert set(cells["epoch"]) == {2} and cells["count"].sum() == t["n_test"]
    assert trials["n_train"].sum() == trials["n_val"].sum()  # 2 folds: each half trains once, validates once
    report = build_report(str(tmp_path / "res" / "imbalance_test"))
    names = {p.name for p in report.parts if p.kind in ("table", "figure")}
    assert {"kfold", "average_metrics", "weighted_vs_unweighted", "recall_vs_frequency"} <= names


# --- the report, on fabricated tables ---------------------------------------------------------------------------

def test_report_leads_with_what_the_weighting_changes(tmp_path):
    """One net, unweighted against inverse weights, 4 classes with a known tail: the findings state the change in
    tail recall first, then come the recall figure and the top/worst table; the long table is folded."""
    import pandas as pd

    from analysis import imbalance as report_module
    from analysis.document import Report
    counts = [40, 20, 5, 1]
    recall = {"none": [0.9, 0.6, 0.2, 0.0], "inverse": [0.8, 0.6, 0.4, 0.3]}
    trials, classes, confusion = [], [], []
    for weights, rec in recall.items():
        tid = f"t_{weights}"
        trials.append(dict(trial_id=tid, study="imbalance", net="baseline4", model="baseline4", class_weights=weights,
                           imbalance_ratio=40.0, fold=0, folds=0, seed=0, status="completed",
                           test_acc=float(np.mean(rec)), val_acc=float(np.mean(rec)),
                           train_class_counts=json.dumps(counts)))
        for c, (n, r) in enumerate(zip(counts, rec)):
            classes.append(dict(trial_id=tid, epoch=1, split="test", class_index=c, class_name=f"c{c}", train_count=n,
                                support=10, ova_acc=r, precision=r, recall=r, bcr=r, aggregated=r))
            confusion.append(dict(trial_id=tid, epoch=1, split="test", true=c, pred=c, count=int(10 * r)))
    tables = dict(trials=pd.DataFrame(trials), classes=pd.DataFrame(classes), confusion=pd.DataFrame(confusion))
    report = Report(tmp_path, tables, title="imbalance")
    report_module.build(report, tables)
    (_, parts), = report.page()
    assert [p.place for p in parts[:3]] == ["findings", "main figure", "main table"]
    tail = (0.2 + 0.0 + 0.6) / 3, (0.4 + 0.3 + 0.6) / 3  # the 3 rarest classes
    assert (f"- baseline4, imbalance_ratio=40, class_weights=inverse against none: tail recall (3 rarest classes) "
            f"{tail[0]:.2f} -> {tail[1]:.2f}") in parts[0].body
    assert parts[1].name == "recall_vs_frequency" and parts[2].name == "top_worst_w-none_rho-40"
    assert next(p for p in parts if p.name == "top_worst_classes_long").folded
