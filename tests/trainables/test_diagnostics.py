"""Per-layer diagnostics of every epoch (issue 14): update_ratio and dead_fraction."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sweeps.results.store import LAYER_COLUMNS
from trainables.data import make_synthetic
from trainables.loop import dead_fractions
from benchmarks.packed import train_packed
from trainables.train import train

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default

TINY = dict(dataset="synthetic", model="cnn", depth=3, width=8, batch_size=32, augment=False, epochs=2,
            device="cpu")


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_train=256, num_test=64)


def test_update_ratio_is_the_relative_change_of_each_weight_over_the_epoch(data):
    reports = []
    train({**TINY, "weight_snapshots": True, "checkpoint_every": 1}, data,
          lambda metrics, state: reports.append((metrics, state)))
    (first, state1), (second, state2) = reports
    names = [k for k in state1["init_model"] if k.endswith("weight") and state1["init_model"][k].dim() > 1]
    assert len(names) == len(first["layers"]) == 4  # 3 convs + the classifier
    for row, name in zip(first["layers"], names):  # epoch 1: from the weights at init
        w0, w1 = state1["init_model"][name], state1["model"][name]
        assert row["update_ratio"] == pytest.approx(((w1 - w0).norm() / w0.norm()).item(), rel=1e-5)
    for row, name in zip(second["layers"], names):  # epoch 2: from the end of epoch 1
        w1, w2 = state1["model"][name], state2["model"][name]
        assert row["update_ratio"] == pytest.approx(((w2 - w1).norm() / w1.norm()).item(), rel=1e-5)
    assert all(0 < row["update_ratio"] < 1 for row in first["layers"])


def test_dead_fraction_counts_units_a_relu_silences_on_every_input():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.bias[:3] = -1e4  # channels 0..2 can never fire
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    layers = [conv, model[3]]
    dead = dead_fractions(model, layers, torch.randn(16, 3, 32, 32))
    assert dead[0] == pytest.approx(3 / 8) and math.isnan(dead[1])  # no rectifier after the classifier
    smooth = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    assert all(math.isnan(d) for d in dead_fractions(smooth, [smooth[0], smooth[3]], torch.randn(4, 3, 32, 32)))
    assert model.training  # measured in eval mode, then put back


def test_training_reports_both_every_epoch_and_a_huge_lr_kills_units(data):
    def last_layers(**overrides):
        rows = []
        train({**TINY, "bn": False, "optimizer": "sgd", **overrides}, data, lambda m, s: rows.append(m["layers"]))
        return rows[-1]

    calm, wild = last_layers(lr=1e-3), last_layers(lr=3.0)  # 3.0: large, still finite
    for rows in (calm, wild):
        assert math.isnan(rows[-1]["dead_fraction"]) and all(0 <= r["dead_fraction"] <= 1 for r in rows[:-1])
    assert wild[0]["update_ratio"] > 10 * calm[0]["update_ratio"]  # the upper edge: updates swamp the weights
    assert sum(r["dead_fraction"] for r in wild[:-1]) >= sum(r["dead_fraction"] for r in calm[:-1])


def test_packs_report_the_same_diagnostics(data):
    configs = [{**TINY, "seed": s, "memory_format": "contiguous"} for s in (0, 1)]
    alone = []
    for c in configs:
        rows = []
        train(c, data, lambda m, s, rows=rows: rows.append(m["layers"]))
        alone.append(rows)
    packed = [[] for _ in configs]
    train_packed(configs, data, [lambda m, s, rows=rows: rows.append(m["layers"]) for rows in packed])
    for a, p in zip(alone, packed):
        for la, lp in zip(a[-1], p[-1]):
            assert lp["update_ratio"] == pytest.approx(la["update_ratio"], rel=5e-3, abs=1e-6)
            assert lp["dead_fraction"] == pytest.approx(la["dead_fraction"], abs=1 / 8) or (
                math.isnan(lp["dead_fraction"]) and math.isnan(la["dead_fraction"]))


def test_diagnostics_off_leaves_the_columns_nan_and_the_rest_unchanged(data):
    on, off = [], []
    train({**TINY, "diagnostics": True}, data, lambda m, s: on.append(m))
    train({**TINY, "diagnostics": False}, data, lambda m, s: off.append(m))
    for a, b in zip(on[-1]["layers"], off[-1]["layers"]):
        assert math.isnan(b["update_ratio"]) and math.isnan(b["dead_fraction"])
        assert a["weight_std"] == b["weight_std"] and a["grad_abs_mean"] == b["grad_abs_mean"]
    assert on[-1]["test_acc"] == off[-1]["test_acc"] and on[-1]["train_loss"] == off[-1]["train_loss"]


def test_layer_table_has_the_columns():
    assert {"update_ratio", "dead_fraction"} <= set(LAYER_COLUMNS)
