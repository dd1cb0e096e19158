"""Refactor check: a 2-epoch CPU run of every model family reports the same metrics, bit for bit, as the
code before the architecture change (issue 12) did.

tests/data/train_reference.json was written by the pre-refactor code with
`python -m tests.test_refactor_reference --write`. The cases cover each model family and each study hook
(validation split, class metrics and loss weights, k-fold, init snapshots, LSUV, dropout, the probe task,
fused packs), so a hook that moved changes nothing a trial reports. Only wall-clock fields are left out.
Regenerate the file only for a change that is meant to alter the numbers, and say so in its commit.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from trainables.data import make_synthetic

REFERENCE = Path(__file__).resolve().parent / "data" / "train_reference.json"
TIMING = ("seconds", "it_per_s")
# Per-layer diagnostics added after the reference was written (issue 14; tests/test_diagnostics.py checks
# them). Everything the reference holds must stay bit for bit; these are new keys beside it.
ADDED_LAYER_KEYS = ("update_ratio", "dead_fraction")
SMALL = dict(dataset="synthetic", epochs=2, batch_size=64, device="cpu", width=8)

CASES = {
    "cnn": dict(SMALL, model="cnn", depth=4, activation="prelu", val_size=32),
    "vgg": dict(SMALL, model="vgg", stages=1, blocks=1, residual=True, bn=True, schedule="cosine", lr_min=1e-5),
    "vgg08": dict(SMALL, model="vgg08", width=8),
    "mlp": dict(SMALL, model="mlp", depth=3, width=32, dropout=0.2, dropout_at="all", init="lsuv",
                init_targets="all", init_batch=64),
    "baseline4": dict(dataset="synthetic", epochs=2, device="cpu", model="baseline4", class_metrics="every",
                      imbalance_ratio=5.0, class_weights="inverse"),
    "deeper7": dict(dataset="synthetic", epochs=2, device="cpu", model="deeper7", init="xavier_normal",
                    folds=3, fold=1, weight_snapshots=True, optimizer="sgd", lr=0.01, checkpoint_every=1),
    "resnet18": dict(dataset="synthetic", epochs=2, device="cpu", model="resnet18", init="default",
                     train_subset=128),
    "probe_data": dict(dataset="synthetic", device="cpu", model="cnn", depth=6, width=8, task="probe",
                       init_batch=64),
    "probe_gaussian": dict(dataset="synthetic", device="cpu", model="mlp", depth=5, width=16, task="probe",
                           probe_input="gaussian", init="normal", init_batch=32),
}
PACK = [dict(SMALL, model="cnn", depth=3, seed=s, init=i) for s, i in ((0, "he_normal"), (1, "xavier_normal"))]


def data():
    return make_synthetic(384, 128)


def clean(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    if "layers" in out:
        out["layers"] = [{k: v for k, v in row.items() if k not in ADDED_LAYER_KEYS} for row in out["layers"]]
    return out


def run_case(config: dict) -> dict:
    from trainables.tasks import run_task
    epochs, states = [], []

    def report(metrics, state):
        epochs.append(clean(metrics))
        states.append(None if state is None else sorted(state))

    final = run_task(config, data(), report)
    return dict(epochs=epochs, states=states, final=clean(final))


def run_pack() -> list[dict]:
    from trainables.packed import train_packed
    reported = [[] for _ in PACK]
    reports = [(lambda m, s, k=k: reported[k].append(clean(m))) for k in range(len(PACK))]
    finals = train_packed(PACK, data(), reports)
    return [dict(epochs=r, final=clean(f)) for r, f in zip(reported, finals)]


def capture() -> dict:
    return {**{name: run_case(config) for name, config in CASES.items()}, "packed": run_pack()}


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN and floats compared exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference was written with one thread: reduction order is part of the bits
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", [*CASES, "packed"])
def test_metrics_equal_pre_refactor_reference(name):
    reference = json.loads(REFERENCE.read_text())[name]
    got = json.loads(json.dumps(run_pack() if name == "packed" else run_case(CASES[name])))
    assert same(got, reference), f"{name}: metrics differ from the pre-refactor reference"


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit("usage: python -m tests.test_refactor_reference --write   (overwrites the reference)")
    torch.set_num_threads(1)
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(capture(), indent=1))
    print(f"wrote {REFERENCE}")
