"""Study 000 end to end through a real Ray: --smoke run, exact Parquet rows, then the report."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from tests.conftest import REPO
from trainables.environment import FIELDS, env_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    # The README's first command, offline: no CIFAR in --data-dir and no download possible, so the
    # smoke run falls back on synthetic images and says so.
    storage, nowhere = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("empty") / "data"
    cmd = [sys.executable, "sweeps/depth_grid.py", "--smoke", "--data-dir", str(nowhere),
           "--storage", str(storage), "--name", "smoke"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not nowhere.exists()  # the failed download leaves nothing behind
    return storage / "smoke", proc


def test_offline_smoke_runs_on_synthetic_data_and_says_so(smoke_sweep):
    path, proc = smoke_sweep
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING: --smoke without cifar10")]
    assert len(warnings) == 1 and "SYNTHETIC" in warnings[0]
    assert set(pd.read_parquet(path / "trials.parquet")["data_source"]) == {"synthetic"}
    # Tune's ResultGrid finds each trial's result.json (sweeps/engine/tune_state.py): no per-trial warning
    assert "Could not fetch metrics" not in proc.stdout + proc.stderr
    # the data line says what the trials trained on, not only what the (synthetic) files hold
    data_line = next(line for line in proc.stderr.splitlines() if line.startswith("data: "))
    assert "): trials use 384 train / 256 test of 50000 train / 10000 test images" in data_line, data_line
    assert json.loads((path / "sweep.json").read_text())["data"]["cifar10"] == data_line[len("data: "):]


def test_smoke_sweep_writes_exactly_the_expected_rows(smoke_sweep):
    path, proc = smoke_sweep
    trials = pd.read_parquet(path / "trials.parquet")
    epochs = pd.read_parquet(path / "epochs.parquet")
    layers = pd.read_parquet(path / "layers.parquet")
    # smoke slice: init {he_normal, normal} x activation {relu} x depth {2, 5}, 1 epoch each
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert sorted(zip(trials["init"], trials["depth"])) == [("he_normal", 2), ("he_normal", 5),
                                                            ("normal", 2), ("normal", 5)]
    assert set(trials["data_source"]) == {"synthetic"} and set(trials["epochs"]) == {1}
    assert trials["trial_id"].is_unique and (trials["params"] > 0).all()
    assert len(epochs) == 4 and set(epochs["epoch"]) == {1}
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    assert epochs["test_acc"].between(0, 1).all() and epochs["train_acc"].between(0, 1).all()
    # a depth-d CNN has d convs + 1 linear layer
    assert len(layers) == 2 * (3 + 6)
    convs = layers[layers["layer_name"].str.startswith("conv")]
    assert convs["update_ratio"].gt(0).all() and convs["dead_fraction"].between(0, 1).all()
    assert not layers.duplicated(["trial_id", "epoch", "layer"]).any()
    assert "sweep smoke: 4 completed" in proc.stdout


def test_report_builds_from_the_smoke_output(smoke_sweep):
    path, _ = smoke_sweep
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a 1-epoch smoke run is off the source's 10-epoch protocol: no source figure, and the caption says why
    assert "| he_normal | relu |" in proc.stdout and "[src" not in proc.stdout
    assert "only beside cells on its protocol (" in proc.stdout and "epochs=10" in proc.stdout
    report = path / "report"
    for name in ("final_test_acc.csv", "test_acc_vs_epoch.png", "avg_weight_vs_epoch.png", "gradient_flow.png"):
        assert (report / name).stat().st_size > 0
    table = pd.read_csv(report / "final_test_acc_long.csv")
    assert len(table) == 4 and set(table["n"]) == {1}
    assert f"torch {torch.__version__}" in (report / "report.html").read_text()  # the recorded environment


def test_the_sweep_records_the_drivers_environment_and_each_trials(smoke_sweep):
    path, _ = smoke_sweep
    record = json.loads((path / "sweep.json").read_text())
    driver = record["environment"]
    assert list(driver) == [*FIELDS, "env_id"] and driver["env_id"] == env_id(driver)
    assert driver["torch"] == torch.__version__
    trials = pd.read_parquet(path / "trials.parquet")
    # every row names its worker's environment, and sweep.json holds that environment's full record
    assert trials["env_id"].notna().all() and set(trials["env_id"]) == set(record["environments"])
    assert all(env_id(env) == key for key, env in record["environments"].items())
    assert set(trials["torch_version"]) == {torch.__version__}
    assert set(trials["device_name"]) <= {env["cpu"] for env in record["environments"].values()}  # CPU trials


def test_existing_sweep_name_is_refused(smoke_sweep):
    path, _ = smoke_sweep
    cmd = [sys.executable, "sweeps/depth_grid.py", "--smoke", "--set", "dataset=synthetic",
           "--storage", str(path.parent), "--name", "smoke"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "already exists" in proc.stderr
