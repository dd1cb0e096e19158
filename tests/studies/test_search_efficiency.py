"""benchmarks/search_efficiency.py (issues 14 and 23): the full lr grid under FIFO vs joint and per-cell ASHA
on the same cells.

The run test drives the benchmark end to end (three sweeps through a real Ray) at its smallest scale on
synthetic data: 2 cells x 4 lrs x 3 epochs, 245 training images. It checks the output's shape and what
each sweep recorded, never the values' quality: at this size the agreement is noise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "benchmarks/search_efficiency.py"
TINY = ["--synthetic", "--scale", "0.005", "--val-size", "100", "--epochs", "3", "--lrs", "1e-3:1", "--per-decade", "1",
        "--cell", "init=he_normal", "--cell", "opt=sgd", "--cell", "depth=2,10"]


def bench(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([sys.executable, SCRIPT, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**env, "PYTHONPATH": str(REPO), "RAY_AIR_NEW_OUTPUT": "0"})


def last_lines(stdout: str) -> dict[str, float]:
    """The last four lines: the joint scope's figures, then the per-cell scope's under the names that stay."""
    lines = stdout.strip().splitlines()[-4:]
    parsed = dict(line.split(": ") for line in lines)
    assert list(parsed) == ["joint_asha_epoch_fraction", "joint_asha_best_lr_agreement",
                            "asha_epoch_fraction", "asha_best_lr_agreement"], lines
    return {k: float(v) for k, v in parsed.items()}


@pytest.mark.slow
def test_tiny_run_reports_epochs_and_agreement_for_every_cell_at_both_scopes(tmp_path):
    out = bench(*TINY, "--storage", str(tmp_path), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    values = last_lines(out.stdout)
    assert 0 < values["joint_asha_epoch_fraction"] < 1  # joint ASHA stopped something
    assert 0 < values["asha_epoch_fraction"] <= 1
    for key in ("joint_asha_best_lr_agreement", "asha_best_lr_agreement"):
        assert 0 <= values[key] <= 1
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert {"he_normal/d2/nobn/sgd", "he_normal/d10/nobn/sgd", "total"} <= set(rows)
    assert len([r for r in rows if r not in ("cell", "total")]) == 2
    assert "per-cell asha pick" in rows["cell"] and "joint asha pick" in rows["cell"]
    fifo_total, joint_total, cell_total = (int(v) for v in rows["total"].strip(" |").split("|")[-3:])
    assert cell_total / fifo_total == pytest.approx(values["asha_epoch_fraction"], abs=1e-3)
    assert joint_total / fifo_total == pytest.approx(values["joint_asha_epoch_fraction"], abs=1e-3)
    agreed = [v.strip().split("/") for v in rows["total"].strip(" |").split("|") if "/" in v]
    assert [int(k) / int(n) for k, n in agreed] == [values["joint_asha_best_lr_agreement"],
                                                    values["asha_best_lr_agreement"]]
    assert "# rerun: python benchmarks/search_efficiency.py" in out.stdout and "--asha-scope" not in out.stdout
    wall = next(line for line in out.stdout.splitlines() if line.startswith("# wall: "))
    assert "fifo sweep" in wall and "joint asha sweep" in wall and "per-cell asha sweep" in wall
    check = next(line for line in out.stdout.splitlines() if line.startswith("same-trajectory check: "))
    assert "joint asha" in check and "per-cell asha" in check
    # the three sweeps are kept under --storage, with lr a grid (never sampled) in each, and each ASHA sweep
    # recorded the scope it ran with
    search = {}
    for name in ("lr_window_fifo", "lr_window_asha", "lr_window_asha_cell"):
        assert (tmp_path / name / "sweep.json").exists(), name
        search[name] = json.loads((tmp_path / name / "sweep.json").read_text())["search"]
        assert search[name]["sampled"] == {}, name
    assert search["lr_window_fifo"]["scheduler"] == "fifo"
    assert search["lr_window_asha"]["scheduler"] == search["lr_window_asha_cell"]["scheduler"] == "asha"
    assert search["lr_window_asha"]["search_scope"] == "sweep"
    assert search["lr_window_asha_cell"]["search_scope"] == "cell"
    assert search["lr_window_asha_cell"]["search_axes"] == ["lr"] and search["lr_window_asha_cell"]["cells"] == 2

    # --report-only reads those sweeps back and reports the same figures, training nothing; --replay re-runs
    # both ASHA scopes' schedulers on fifo's recorded epochs, and with each sweep's own timing must land on
    # (near) that sweep's own figures
    again = bench(*TINY, "--storage", str(tmp_path), "--report-only", "--replay", "3", "--replay-asha", "2:2",
                  timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert last_lines(again.stdout) == values and "# wall: fifo sweep n/a (--report-only)" in again.stdout
    replayed = [line for line in again.stdout.splitlines() if line.startswith("replay, ")]
    assert [line.split(":")[0] for line in replayed] == ["replay, joint asha", "replay, per-cell asha",
                                                         "replay, per-cell asha, grace 2, reduction factor 2"]
    assert "the sweep itself" not in replayed[2] and "of the orders" in replayed[2]  # a setting that never ran
    assert "3 random orders (seed 0)" in again.stdout and "of the orders" in replayed[1]
    assert f"the sweep itself {values['asha_epoch_fraction']:.3f} of the epochs" in replayed[1]
    assert "replay" not in out.stdout  # off unless asked for
    other = bench(*TINY, "--reduction-factor", "2", "--storage", str(tmp_path), "--report-only", timeout=300)
    assert other.returncode == 2 and other.stdout == "" and "ran other trials or search settings" in other.stderr


BAD = {
    "scale zero": (["--scale", "0"], "--scale 0: must be in (0, 1]"),
    "unknown init": (["--cell", "init=he_nromal"], "the study has no init 'he_nromal'"),
    "depth not in the study": (["--cell", "depth=3"], "the study has no depth '3'"),
    "unknown dimension": (["--cell", "width=8"], "DIM one of init, depth, bn, opt"),
    "one lr": (["--lrs", "0.1"], "at least 2"),
    "grace beyond the epochs": (["--epochs", "2", "--grace-period", "3"], "--grace-period 3"),
    "unknown flag": (["--scheduler", "asha"], "unrecognized arguments"),
    "the old scope option": (["--asha-scope", "cell"], "unrecognized arguments"),
    "negative trials per GPU": (["--trials-per-gpu", "-1"], "--trials-per-gpu -1: must be >= 0"),
    "negative replays": (["--replay", "-1"], "--replay -1 / --replay-concurrency 0: must be >= 0"),
    "report on nothing": (["--report-only"], "holds no lr_window_fifo, lr_window_asha, lr_window_asha_cell sweep"),
    "a replayed setting without a factor": (["--replay-asha", "1"], "--replay-asha 1: expected GRACE:RF"),
    "a replayed grace beyond the epochs": (["--epochs", "3", "--replay-asha", "4:3"], "--replay-asha 4:3: the grace"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_flags_exit_2_with_one_line_before_anything_runs(case, tmp_path):
    flags, expected = BAD[case]
    out = bench("--synthetic", "--storage", str(tmp_path / "res"), *flags, timeout=120)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], out.stderr
    assert out.stdout == "" and not (tmp_path / "res").exists()


def test_the_gpu_asked_for_on_a_machine_without_one_is_refused(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so --trials-per-gpu is accepted here")
    out = bench("--synthetic", "--trials-per-gpu", "4", "--storage", str(tmp_path / "res"), timeout=120)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and "torch sees no CUDA GPU" in err[0], out.stderr
    assert out.stdout == "" and not (tmp_path / "res").exists()


def test_a_missing_data_folder_is_refused():
    out = bench("--data-dir", "/nonexistent/cifar", timeout=120)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: --data-dir") and out.stdout == ""


def test_dry_run_on_the_subset_plans_what_fits_it(subset_dir):
    out = bench("--data-dir", str(subset_dir), "--scale", "0.01", "--dry-run", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "8 cells x 10 lrs (0.0001 .. 3.16) x 10 epochs = 80 trials per sweep" in out.stdout
    assert "490 training + 500 validation images" in out.stdout  # 990 of the subset's 5,085
    assert "rungs 1, 3, 9" in out.stdout and out.stdout.strip().endswith("nothing trained")
    assert "3 sweeps: lr_window_fifo, lr_window_asha, lr_window_asha_cell" in out.stdout
    assert "(--search-scope sweep)" in out.stdout and "(--search-scope cell --search-axis lr)" in out.stdout
