"""Study 003: the mlp family, dropout, LSUV, the probe task and the init_variance / dropout_lsuv sweeps."""
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

from sweeps import dropout_lsuv, init_variance
from sweeps.engine.runner import parse_args, plan
from sweeps.results.store import LAYER_COLUMNS, PROBE_LAYER_COLUMNS, Store
from trainables.config import ConfigError, resolve
from trainables.data import load_dataset, make_synthetic
from trainables.inits import apply_init, weight_layers
from trainables.models import build_model
from trainables.probe import measure
from trainables.tasks import run_task
from trainables.train import train

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(num_train=96, num_test=32)


def probe_rows(config, data):
    seen = []
    summary = run_task(dict(task="probe", **config), data, lambda metrics, state: seen.append((metrics, state)))
    assert len(seen) == 1 and seen[0][1] is None  # one report, epoch 1, no checkpoint
    return summary, seen[0][0]


# --- models and config ---

def test_mlp_depth_counts_linear_layers_and_runs():
    model = build_model(resolve(dict(model="mlp", depth=4, width=16)), 10)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3072, 16), (16, 16), (16, 16), (16, 10)]
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    assert len(weight_layers(build_model(resolve(dict(model="mlp", depth=1)), 10))) == 1


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5])
def test_dropout_must_be_a_probability(bad):
    with pytest.raises(ConfigError, match=r"dropout=.*must be in \[0, 1\)"):
        resolve(dict(dropout=bad))


def test_dropout_placement_names_are_checked():
    with pytest.raises(ConfigError, match='did you mean "blocks"'):
        resolve(dict(dropout=0.3, dropout_at="block"))


@pytest.mark.parametrize("where, count", [("head", 1), ("blocks", 4), ("all", 5)])
def test_cnn_dropout_placement(where, count):
    model = build_model(resolve(dict(model="cnn", depth=4, width=8, dropout=0.3, dropout_at=where)), 10)
    drops = [i for i, m in enumerate(model) if isinstance(m, nn.Dropout)]
    assert len(drops) == count
    if where != "blocks":
        assert isinstance(model[drops[-1] - 1], nn.Flatten) and isinstance(model[drops[-1] + 1], nn.Linear)
    assert not any(isinstance(m, nn.Dropout) for m in build_model(resolve(dict(depth=4, width=8)), 10))


# --- LSUV ---

def test_lsuv_reaches_unit_variance_in_every_layer():
    config = resolve(dict(model="cnn", bn=False, depth=8, width=8, init="lsuv", init_targets="all", lsuv_tol=0.01))
    torch.manual_seed(0)
    batch = torch.randn(32, 3, 32, 32) * 3 + 1
    model = apply_init(build_model(config, 10), config, batch)
    _, rows = measure(model, batch, torch.zeros(32, dtype=torch.long), backward=False)
    assert len(rows) == 9
    for row in rows:
        assert abs(row["pre_act_var"] - 1) <= 0.011
    # the same net under plain orthogonal init is far from unit variance somewhere
    plain = apply_init(build_model(config, 10), dict(config, init="orthogonal"))
    _, rows = measure(plain, batch, torch.zeros(32, dtype=torch.long), backward=False)
    assert max(abs(r["pre_act_var"] - 1) for r in rows) > 0.2


def test_lsuv_needs_a_batch_and_leaves_bn_statistics_alone():
    config = resolve(dict(depth=3, width=8, init="lsuv"))
    with pytest.raises(ValueError, match="data-dependent"):
        apply_init(build_model(config, 10), config)
    model = build_model(config, 10)
    apply_init(model, config, torch.randn(16, 3, 32, 32))
    bn = next(m for m in model if isinstance(m, nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 0 and model.training


def test_training_with_lsuv_and_dropout(data):
    summary = train(dict(init="lsuv", dropout=0.5, dropout_at="all", depth=3, width=8, epochs=1, batch_size=32,
                         init_batch=32, augment=False), data)
    assert summary["status"] == "completed" and math.isfinite(summary["train_loss"])


# --- the probe ---

def test_probe_rows_match_a_direct_computation(data):
    config = dict(model="mlp", depth=3, width=16, init="he_normal", init_targets="all", init_bias="zero",
                  probe_input="gaussian", init_batch=64, seed=3)
    summary, metrics = probe_rows(config, data)
    rows = metrics["layers"]
    assert metrics["epoch"] == 1 and summary["status"] == "completed"
    assert [r["layer"] for r in rows] == [0, 1, 2] and [r["layer_name"] for r in rows] == ["fc1", "fc2", "fc3"]
    for r in rows:
        assert set(PROBE_LAYER_COLUMNS) <= set(r)
    assert all(math.isfinite(r[c]) for r in rows for c in PROBE_LAYER_COLUMNS if (r["layer"], c) != (2, "post_act_var"))
    assert math.isnan(rows[2]["post_act_var"])  # the classifier has no activation

    # recompute layer 0 by hand from the same seeded init and inputs
    cfg = resolve(dict(task="probe", **config))
    torch.manual_seed(cfg["seed"])
    model = apply_init(build_model(cfg, 10), cfg).double()
    g = torch.Generator().manual_seed(cfg["seed"])
    x = torch.randn(64, 3, 32, 32, generator=g).double().requires_grad_(True)
    y = torch.randint(0, 10, (64,), generator=g)
    z = model[1](model[0](x))
    assert rows[0]["pre_act_var"] == pytest.approx(z.var().item(), rel=1e-9)
    assert rows[0]["post_act_var"] == pytest.approx(torch.relu(z).var().item(), rel=1e-9)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert rows[0]["grad_input_var"] == pytest.approx(x.grad.var().item(), rel=1e-9)
    assert rows[0]["grad_weight_var"] == pytest.approx(model[1].weight.grad.var().item(), rel=1e-9)


def test_probe_he_flat_normal_explodes_xavier_decays(data):
    def first_last(init):
        _, m = probe_rows(dict(model="mlp", depth=12, width=128, init_targets="all", init_bias="zero",
                               probe_input="gaussian", init_batch=64, **init), data)
        return m["layers"][-2]["pre_act_var"] / m["layers"][0]["pre_act_var"]
    assert 0.3 < first_last(dict(init="he_normal")) < 3
    assert first_last(dict(init="normal", init_std=1.0)) > 1e15  # ~64 per layer over 10 layers
    assert first_last(dict(init="xavier_normal")) < 0.01         # ~1/2 per layer


def test_probe_on_real_images_with_a_cnn(subset_dir):
    data = load_dataset("cifar10", subset_dir)
    _, metrics = probe_rows(dict(model="cnn", bn=False, depth=4, width=8, init="lsuv", init_targets="all",
                                 init_bias="zero", init_batch=16), data)
    assert [r["layer_name"] for r in metrics["layers"]] == ["conv1", "conv2", "conv3", "conv4", "fc1"]
    assert all(abs(r["pre_act_var"] - 1) < 0.05 for r in metrics["layers"])


def test_training_rows_leave_probe_columns_nan(tmp_path):
    store = Store(str(tmp_path), "s")
    store.write_rows("layers", "t-e0001", [dict(trial_id="t", epoch=1, layer=0, layer_name="conv1",
                                                grad_abs_mean=0.1, weight_mean=0.0, weight_std=1.0)], LAYER_COLUMNS)
    frame = pd.read_parquet(tmp_path / "s" / "layers.parquet")
    assert frame[list(PROBE_LAYER_COLUMNS)].isna().all().all()
    assert all(frame[c].dtype == "float64" for c in PROBE_LAYER_COLUMNS)


# --- the sweep files ---

def test_init_variance_grid_covers_the_issue():
    specs = plan(init_variance.SWEEP, parse_args([], "", "x"))
    assert len(specs) == 7 * 5 * 2
    configs = [resolve(s.config) for s in specs]
    assert {c["task"] for c in configs} == {"probe"} and {c["depth"] for c in configs} == {50}
    assert {c["model"] for c in configs} == {"mlp", "cnn"} and not any(c["bn"] for c in configs if c["model"] == "cnn")
    assert {s.labels["scheme"] for s in specs} == set(init_variance.SCHEMES)
    assert {c["activation"] for c in configs} == {"relu", "prelu", "leaky_relu", "tanh", "sigmoid"}


@pytest.mark.parametrize("sweep", ["init_variance", "dropout_lsuv"])
def test_sweeps_dry_run(sweep):
    out = subprocess.run([sys.executable, f"sweeps/{sweep}.py", "--dry-run", "--smoke"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "trials" in out.stdout


def test_dropout_lsuv_grid():
    specs = plan(dropout_lsuv.SWEEP, parse_args([], "", "x"))
    configs = [resolve(s.config) for s in specs]
    assert {c["dropout"] for c in configs} == {0.0, 0.3, 0.5} and {c["init"] for c in configs} == {"he_normal", "lsuv"}


def test_a_probe_after_training_in_the_same_worker_sees_denormals(data):
    """Ray reuses worker processes between trials: training's flush-denormal setting must not leak
    into a probe, whose variances of vanishing signals (about 1e-40 deep in an N(0,1e-4) net) are real."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals, so there is nothing to leak")
    def denormal_survives():
        return (torch.tensor([1e-40]) * 1.0).item() != 0.0

    train(dict(depth=2, width=8, epochs=1, batch_size=32, augment=False), data)
    assert not denormal_survives()  # training flushes
    probe_rows(dict(model="mlp", depth=3, width=16, init="he_normal", activation="relu"), data)
    assert denormal_survives()  # the probe does not


# --- the report ---

def test_report_leads_with_the_ratios_and_takes_the_cnn_pooling_from_trainables(tmp_path):
    """Fabricated probe rows with known per-layer factors: the findings name the flattest scheme and the
    closed-form agreement first, and the CNN note's 1x1 layer comes from trainables.geometry."""
    from analysis import init_variance as report_module
    from analysis.document import Report
    from trainables.geometry import cnn_map_sides
    factors = {"he_fan_in": 1.0, "xavier": 0.5, "normal_1": 8.0}  # ReLU, width 16: N(0,1) gives n/2 = 8
    trials, layers = [], []
    for arch, depth in (("mlp", 6), ("cnn", 14)):
        for scheme, factor in factors.items():
            tid = f"{arch}_{scheme}"
            trials.append(dict(trial_id=tid, scheme=scheme, arch=arch, activation="relu", depth=depth, width=16,
                               init_batch=8))
            layers += [dict(trial_id=tid, epoch=1, layer=k, pre_act_var=factor ** k, post_act_var=factor ** k / 2,
                            grad_input_var=factor ** -k, grad_weight_var=factor ** -k) for k in range(depth)]
    tables = dict(trials=pd.DataFrame(trials), layers=pd.DataFrame(layers))
    report = Report(tmp_path, tables, title="init_variance")
    report_module.build(report, tables)
    (_, parts), = report.page()
    assert [p.place for p in parts[:4]] == ["findings", "findings", "main figure", "main table"]
    assert parts[0].body.splitlines()[-2:] == ["- cnn relu: closest to flat: he_fan_in (Var last / first = 1); "
                                               f"farthest: normal_1 ({8.0 ** 13:.3g}).",
                                               "- mlp relu: closest to flat: he_fan_in (Var last / first = 1); "
                                               f"farthest: normal_1 ({8.0 ** 5:.3g})."]
    assert parts[1].body.startswith("ReLU MLP: the measured per-layer factor is within 0.0% of the closed form")
    assert parts[2].name == "pre_act_var_cnn" and parts[3].name == "forward_ratio"
    note = next(p.body for p in parts if p.body.startswith("CNN note"))
    assert f"until the map is 1x1 (after {cnn_map_sides(14).index(1) + 1} convs)" in note and "11 convs" in note
