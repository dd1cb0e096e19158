"""analysis.status: the text summary of a sweep from its Parquet alone, on sweep folders written directly (no Ray)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import status
from sweeps.results.store import Store
from trainables.config import resolve

ROOT = Path(__file__).resolve().parents[2]
PLAN = 10  # trials in sweep.json's plan; 8 have rows, so 2 are pending
SEARCH = {"searcher": "grid", "scheduler": "fifo", "metric": "val_acc", "mode": "max", "search_seed": 0}


def write_trial(store: Store, tid: str, cfg: dict, status_: str, accs: list[float], seconds: float = 10.0) -> None:
    """A trials row (final metrics NaN while running, as the Recorder writes it) and one epochs row per acc."""
    cfg = resolve({"train_subset": 500, "epochs": 5, **cfg})
    final = math.nan if status_ in ("running", "diverged") or not accs else accs[-1]
    store.write_rows("trials", tid, [dict(cfg, trial_id=tid, sweep=store.name, study="depth_grid", status=status_,
                                          error="boom" if status_ == "error" else "", val_acc=final, test_acc=final,
                                          epochs_completed=len(accs))])
    for epoch, acc in enumerate(accs, start=1):
        store.write_rows("epochs", f"{tid}-e{epoch:04d}", [dict(trial_id=tid, sweep=store.name, epoch=epoch,
                                                                val_acc=acc, test_acc=acc - 0.01, seconds=seconds)])


def fake_sweep(storage: Path, name: str = "mixed") -> Path:
    """10 planned trials: 3 completed, 1 running at epoch 2 of 5, 1 early_stopped, 1 diverged, 1 error,
    1 stopped, 2 not started. Every epoch took 10 s."""
    store = Store(str(storage), name)
    store.write_json("sweep.json", {"sweep": name, "study": "depth_grid", "search": SEARCH, "trials": PLAN,
                                    "data": {"cifar10": "cifar10 (subset): 500 train / 10000 test images, 10 classes"},
                                    "plan": [{"config": {"lr": 0.001}, "labels": {}} for _ in range(PLAN)]})
    write_trial(store, "t0", dict(init="he_normal", depth=2, lr=1e-3), "completed", [0.30, 0.40, 0.45, 0.50, 0.52])
    write_trial(store, "t1", dict(init="he_normal", depth=5, lr=1e-3), "completed", [0.30, 0.40, 0.50, 0.55, 0.61])
    write_trial(store, "t2", dict(init="normal", depth=2, lr=1e-3), "completed", [0.20, 0.25, 0.30, 0.33, 0.35])
    write_trial(store, "t3", dict(init="normal", depth=5, lr=1e-2), "running", [0.25, 0.41])
    write_trial(store, "t4", dict(init="normal", depth=5, lr=1e-3), "early_stopped", [0.12])
    write_trial(store, "t5", dict(init="he_normal", depth=2, lr=10.0), "diverged", [0.10, math.nan])
    write_trial(store, "t6", dict(init="he_normal", depth=5, lr=1e-2), "error", [0.20])
    write_trial(store, "t7", dict(init="normal", depth=2, lr=1e-2), "stopped", [0.22, 0.30, 0.31])
    return storage / name


def test_summary_counts_running_best_and_eta(tmp_path):
    lines = status.summary_lines(str(fake_sweep(tmp_path)))
    text = "\n".join(lines)
    assert lines[0] == "sweep mixed (study depth_grid): 10 trials planned"
    assert "data: cifar10 (subset): 500 train / 10000 test images, 10 classes" in lines
    assert f"results: {tmp_path.resolve()}/mixed" in lines
    assert ("trials: 3 completed, 1 running, 2 pending, 1 early_stopped, 1 diverged, 1 error, 1 stopped"
            in lines)
    # the running trial, titled by the keys that vary (in DEFAULTS order, as the tables), at its last epoch
    running = [line for line in lines if line.startswith("running:")]
    assert running == ["running: depth=5 init=normal lr=0.01  epoch 2/5  val_acc 0.410"]
    assert "best so far (val_acc, max): depth=5 init=he_normal lr=0.001  val_acc 0.610" in lines
    # 3 epochs left on the running trial + 2 pending x 5 epochs = 13 epochs x 10 s median / 1 running
    assert "ETA: ~2m 10s (estimate: 13 epochs left x 10.0 s median epoch / 1 running)" in lines
    assert all(len(line) < 120 and line.isascii() and "\x1b" not in line for line in lines), text


def test_best_follows_search_mode_and_tolerates_no_sweep_json(tmp_path):
    path = fake_sweep(tmp_path)
    store = Store(str(tmp_path), "mixed")
    store.write_json("sweep.json", {"search": {**SEARCH, "metric": "val_acc", "mode": "min"},
                                    "plan": [{} for _ in range(PLAN)]})
    assert "best so far (val_acc, min): depth=5 init=normal lr=0.001  val_acc 0.120 (early_stopped)" \
        in status.summary_lines(str(path))
    # no sweep.json at all: planned unknown, no pending, best by val_acc max
    os.remove(tmp_path / "mixed" / "sweep.json")
    lines = status.summary_lines(str(path))
    assert lines[0] == "sweep mixed (study depth_grid): ? trials planned" and "data: ?" in lines
    assert "trials: 3 completed, 1 running, 0 pending, 1 early_stopped, 1 diverged, 1 error, 1 stopped" in lines
    assert any(line.startswith("best so far (val_acc, max): depth=5 init=he_normal lr=0.001") for line in lines)


def test_running_trials_several_divide_the_eta(tmp_path):
    store = Store(str(tmp_path), "two")
    store.write_json("sweep.json", {"study": "depth_grid", "plan": [{} for _ in range(4)]})
    write_trial(store, "a", dict(init="he_normal", lr=1e-3), "running", [0.3, 0.4], seconds=20.0)
    write_trial(store, "b", dict(init="normal", lr=1e-3), "running", [0.2], seconds=40.0)
    lines = status.summary_lines(str(tmp_path / "two"))
    assert "running: init=he_normal  epoch 2/5  val_acc 0.400" in lines
    assert "running: init=normal  epoch 1/5  val_acc 0.200" in lines
    # (3 + 4) running + 2 pending x 5 = 17 epochs x 20 s median / 2 running = 170 s
    assert "ETA: ~2m 50s (estimate: 17 epochs left x 20.0 s median epoch / 2 running)" in lines


def test_finished_and_empty_sweeps(tmp_path):
    store = Store(str(tmp_path), "done")
    store.write_json("sweep.json", {"study": "depth_grid", "plan": [{}]})
    write_trial(store, "a", dict(init="he_normal"), "completed", [0.3, 0.4, 0.5, 0.55, 0.6])
    assert "ETA: done (nothing running or pending)" in status.summary_lines(str(tmp_path / "done"))

    Store(str(tmp_path), "empty").write_json("sweep.json", {"study": "depth_grid", "plan": []})
    lines = status.summary_lines(str(tmp_path / "empty"))  # no val_acc anywhere: best by test_acc
    assert "trials: 0 completed, 0 running, 0 pending, 0 early_stopped, 0 diverged, 0 error, 0 stopped" in lines
    assert "best so far (test_acc, max): none yet" in lines and "ETA: done (nothing running or pending)" in lines
    assert status.main([str(tmp_path / "empty")]) == 0


def test_no_sweep_is_one_error_line_and_exit_2(tmp_path, capsys):
    assert status.main([str(tmp_path / "missing")]) == 2
    (tmp_path / "not_a_sweep").mkdir()
    assert status.main([str(tmp_path / "not_a_sweep")]) == 2
    assert status.main([str(tmp_path / "bad..name")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and [line.split(" ")[0] for line in out.err.splitlines()] == ["error:"] * 3


def test_command_line_prints_the_same(tmp_path):
    path = fake_sweep(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "analysis.status", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == status.summary_lines(str(path))
    missing = subprocess.run([sys.executable, "-m", "analysis.status", str(tmp_path / "missing")], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", ["a" * 150])
def test_long_lines_are_cut_below_120(tmp_path, name):
    store = Store(str(tmp_path), name)
    store.write_json("sweep.json", {"study": "depth_grid", "plan": [{}], "data": {"x": "y" * 300}})
    lines = status.summary_lines(str(tmp_path / name))
    assert all(len(line) < 120 for line in lines) and any("..." in line for line in lines)
