"""Study 002: the VGG builder and presets, lr_scale, the three sweep files, retry from a checkpoint."""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from analysis.results import load
from sweeps.engine.grid import Sweep, variants
from sweeps.engine.runner import main
from trainables.config import ConfigError, resolve
from trainables.inits import weight_layers
from trainables.models import build_model, count_params
from trainables.models.vgg import PRESETS, ProcessingBlock, weight_layer_count
from trainables.loop import make_optimizer, make_scheduler

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default

# The study's table (../shared/DESIGN.md): parameters at 100 classes, to the parameter.
REPORTED_PARAMS = {"vgg08": 59_716, "vgg38": 336_196, "vgg38_bn": 338_500, "vgg38_res": 338_500,
                   "vgg38_res_sigmoid": 338_500, "vgg68": 616_900, "vgg72": 654_148, "vgg106": 1_210_948}


@pytest.mark.parametrize("name", sorted(REPORTED_PARAMS))
def test_parameter_counts_match_the_study(name):
    assert count_params(build_model(resolve(dict(model=name)), 100)) == REPORTED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_the_layers_they_promise(name):
    config = resolve(dict(model=name))
    model = build_model(config, 100)
    layers = [m for _, m in weight_layers(model)]
    assert len(layers) == weight_layer_count(config) == 2 + 2 * config["stages"] * (config["blocks"] + 1)
    assert isinstance(layers[0], nn.Conv2d) and layers[0].in_channels == 3 and layers[0].bias is None
    assert isinstance(layers[-1], nn.Linear) and layers[-1].out_features == 100
    model.eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_presets_resolve_into_the_true_keys():
    config = resolve(dict(model="vgg38"))
    assert (config["stages"], config["blocks"], config["bn"], config["residual"], config["activation"]) == \
        (3, 5, False, False, "leaky_relu")
    sig = resolve(dict(model="vgg38_res_sigmoid"))
    assert (sig["bn"], sig["residual"], sig["activation"]) == (True, True, "sigmoid")
    assert resolve(dict(model="vgg106"))["stages"] == 5
    # restating a preset's own value is fine; contradicting it is a named error
    assert resolve(dict(model="vgg38_bn", bn=True))["bn"] is True
    with pytest.raises(ConfigError, match='bn=False contradicts model="vgg38_bn"'):
        resolve(dict(model="vgg38_bn", bn=False))


def test_generic_vgg_takes_explicit_keys_and_rejects_too_many_stages():
    config = resolve(dict(model="vgg", stages=2, blocks=1, bn=False, residual=True, width=8))
    model = build_model(config, 10)
    assert len(weight_layers(model)) == 2 + 2 * 2 * 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model[3:].modules())  # only the entry BN
    with pytest.raises(ConfigError, match="stages=6"):
        resolve(dict(model="vgg", stages=6))
    with pytest.raises(ConfigError, match="blocks"):
        resolve(dict(model="vgg", blocks=-1))


@pytest.mark.parametrize("residual", [False, True])
def test_residual_adds_the_identity_before_the_last_activation(residual):
    config = resolve(dict(model="vgg", residual=residual, bn=True, activation="leaky_relu"))
    block = ProcessingBlock(config, 4).eval()
    for m in block.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)  # the conv path contributes nothing...
    x = torch.randn(2, 4, 8, 8)
    expected = nn.functional.leaky_relu(x, 0.01) if residual else torch.zeros_like(x)
    torch.testing.assert_close(block(x), expected)  # ...so only the skip (if any) is left


def test_lr_scale_multiplies_both_ends_of_the_cosine_schedule():
    config = resolve(dict(model="vgg", stages=1, blocks=0, width=4, schedule="cosine", lr=1e-3, lr_min=2e-5,
                          lr_scale=30.0, epochs=4))
    model = build_model(config, 10)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-2)
    for _ in range(4):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(6e-4)


@pytest.mark.parametrize("study, counts, n", [
    ("vgg_depth", [59_716, 336_196, 338_500, 338_500, 338_500], 5),
    ("vgg_regularization", [338_500] * 9, 9),
    ("vgg_deeper", [338_500, 616_900, 654_148, 1_210_948], 4),
])
def test_dry_run_lists_the_trials_with_the_study_parameter_counts(study, counts, n, capsys):
    module = importlib.import_module(f"sweeps.{study}")
    assert main(module.SWEEP, module.__file__, ["--dry-run"]) == 0
    out = capsys.readouterr().out
    listed = [int(line.rsplit("params=", 1)[1].replace(",", "")) for line in out.splitlines() if "params=" in line]
    assert listed == counts and f"{n} trials" in out


def test_regularization_is_one_factor_at_a_time(capsys):
    from sweeps.vgg_regularization import SWEEP
    main(SWEEP, "vgg_regularization.py", ["--dry-run"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "params=" in line]
    off_baseline = [sum(("weight_decay=0.001" not in l, "lr_scale=1.0 " not in l, "batch_size=100 " not in l))
                    for l in lines]
    assert max(off_baseline) == 1 and off_baseline.count(0) == 1  # one shared baseline, one factor moved


def test_wrong_preset_override_is_a_usage_error(capsys):
    from sweeps.vgg_depth import SWEEP
    assert main(SWEEP, "vgg_depth.py", ["--dry-run", "--set", "residual=true"]) == 2
    assert "contradicts" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_sweep_through_ray_writes_every_row(tiny_cifar100, tmp_path):
    from sweeps.vgg_depth import SWEEP
    rc = main(SWEEP, "vgg_depth.py", ["--smoke", "--data-dir", str(tiny_cifar100), "--storage", str(tmp_path)])
    assert rc == 0
    tables = load(str(tmp_path / "vgg_depth"))
    trials = tables["trials"].set_index("model")
    assert sorted(trials.index) == ["vgg08", "vgg38_res"] and set(trials["status"]) == {"completed"}
    assert trials.loc["vgg08", "params"] == 59_716 and trials.loc["vgg38_res", "params"] == 338_500
    assert (trials.loc["vgg08", "bn"], trials.loc["vgg38_res", "residual"]) == (False, True)
    assert len(tables["epochs"]) == 2 and tables["epochs"]["val_acc"].notna().all()
    assert len(tables["layers"]) == 8 + 38 and tables["layers"]["grad_abs_mean"].gt(0).all()


@pytest.mark.slow
def test_a_crashed_trial_resumes_from_its_checkpoint_with_the_same_epochs(tmp_path):
    from tests.conftest import write_cifar10
    data = write_cifar10(tmp_path / "c10", per_file=60)  # 300 train / 60 test images
    sweep = Sweep(study="vgg_depth", fixed=dict(
        dataset="cifar10", model="vgg", stages=1, blocks=0, width=8, epochs=3, batch_size=50, val_size=50,
        schedule="cosine", checkpoint_every=1, seed=3),
        grid=variants("run", clean=dict(fail_at_epoch=0), crashed=dict(fail_at_epoch=2)))
    rc = main(sweep, "retry.py", ["--data-dir", str(data), "--storage", str(tmp_path), "--max-failures", "1"])
    assert rc == 0
    tables = load(str(tmp_path / "retry"))
    trials = tables["trials"].set_index("run")
    assert set(trials["status"]) == {"completed"}
    crashed_dir = list((tmp_path / "retry" / "tune").glob(f"*{trials.loc['crashed', 'trial_id']}*"))
    assert crashed_dir and list(crashed_dir[0].glob("error.*")), "the injected failure never happened"
    runs = {run: tables["epochs"][tables["epochs"]["trial_id"] == trials.loc[run, "trial_id"]] for run in trials.index}
    for frame in runs.values():
        assert frame["epoch"].tolist() == [1, 2, 3]  # every epoch exactly once
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "avg_weight", "lr"]
    np.testing.assert_array_equal(runs["crashed"][cols].to_numpy(), runs["clean"][cols].to_numpy())
    grads = {run: tables["layers"][tables["layers"]["trial_id"] == trials.loc[run, "trial_id"]]["grad_abs_mean"]
             for run in trials.index}
    np.testing.assert_array_equal(grads["crashed"].to_numpy(), grads["clean"].to_numpy())


def fabricated_tables(study: str) -> dict:
    """Parquet-shaped tables of a finished 2-epoch sweep of `study`, without training anything."""
    import pandas as pd
    module = importlib.import_module(f"sweeps.{study}")
    rows, epochs, layers = [], [], []
    for i, (point, labels) in enumerate(module.SWEEP.grid.points()):
        config = resolve({**module.SWEEP.fixed, **point})
        tid = f"t{i}"
        rows.append(dict(config, **labels, trial_id=tid, sweep=study, study=study, status="completed",
                         params=1, data_source="subset", n_train=100, code_version="x", train_acc=0.5,
                         val_acc=0.4, test_acc=0.4, train_loss=1.0, val_loss=1.2, test_loss=1.2))
        for e in (1, 2):
            epochs.append(dict(trial_id=tid, epoch=e, train_loss=1.0, train_acc=0.5, val_loss=1.2, val_acc=0.4,
                               it_per_s=2.0 + i))
            layers += [dict(trial_id=tid, epoch=e, layer=k, grad_abs_mean=10.0 ** -k)
                       for k in range(weight_layer_count(config))]
    return dict(trials=pd.DataFrame(rows), epochs=pd.DataFrame(epochs), layers=pd.DataFrame(layers))


@pytest.mark.parametrize("study", ["vgg_depth", "vgg_regularization", "vgg_deeper"])
def test_report_puts_the_study_figures_beside_ours(study, tmp_path):
    from analysis import vgg
    from analysis.report import Report
    tables = fabricated_tables(study)
    report = Report(tmp_path, tables, title=study)
    vgg.build(report, tables)
    assert {p.name for p in tmp_path.glob("*.png")} == {"loss_vs_epoch.png", "accuracy_vs_epoch.png",
                                                         "gradient_flow.png"}
    import pandas as pd
    main_table = pd.read_csv(tmp_path / ("weight_decay.csv" if study == "vgg_regularization" else "final_metrics.csv"))
    assert main_table["src val_loss"].notna().any() and (main_table["val_acc"] == 40.0).all()
    if study == "vgg_regularization":
        lr_batch = pd.read_csv(tmp_path / "lr_batch.csv")  # the shared baseline plus 3 LR and 2 batch settings
        assert len(main_table) == 4 and len(lr_batch) == 6
        assert lr_batch.set_index(["lr_scale", "batch_size"]).loc[(30.0, 100), "src train_loss"] == 3.16
    if study == "vgg_deeper":
        speeds = main_table.set_index("model")
        assert speeds.loc["vgg68", "src it_per_s"] == 8.6 and speeds.loc["vgg68", "it_per_s"] == 3.0
    flow = pd.read_csv(tmp_path / "gradient_summary.csv")
    assert (flow["entry_over_last_conv"] > 1).all()  # fabricated grads fall with depth: entry is the largest
    # the page leads with the answer: findings, the accuracy curves, the main table, then the rest
    (_, parts), = report.page()
    assert [p.place for p in parts[:3]] == ["findings", "findings", "main figure"]
    assert parts[2].name == "accuracy_vs_epoch" and parts[3].place == "main table"
    assert parts[0].body.startswith("Highest final val_acc: ") and "40.0%" in parts[0].body
    assert "times the last conv's" in parts[1].body
