"""benchmarks/search_efficiency.py (issue 14): the full lr grid under FIFO vs ASHA on the same cells.

The run test drives the benchmark end to end (two sweeps through a real Ray) at its smallest scale on
synthetic data: 2 cells x 4 lrs x 3 epochs, 245 training images. It checks the output's shape, never
the values' quality: at this size the agreement is noise.
"""
from __future__ import annotations

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
    lines = stdout.strip().splitlines()[-2:]
    parsed = dict(line.split(": ") for line in lines)
    assert list(parsed) == ["asha_epoch_fraction", "asha_best_lr_agreement"], lines
    return {k: float(v) for k, v in parsed.items()}


@pytest.mark.slow
def test_tiny_run_reports_epochs_and_agreement_for_every_cell(tmp_path):
    out = bench(*TINY, "--storage", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    values = last_lines(out.stdout)
    assert 0 < values["asha_epoch_fraction"] < 1  # ASHA stopped something
    assert 0 <= values["asha_best_lr_agreement"] <= 1
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert {"he_normal/d2/nobn/sgd", "he_normal/d10/nobn/sgd", "total"} <= set(rows)
    assert len([r for r in rows if r not in ("cell", "total")]) == 2
    fifo_total, asha_total = (int(v) for v in rows["total"].strip(" |").split("|")[-2:])
    assert asha_total / fifo_total == pytest.approx(values["asha_epoch_fraction"], abs=1e-3)
    assert "# rerun: python benchmarks/search_efficiency.py" in out.stdout and "# wall: fifo sweep" in out.stdout
    assert "same-trajectory check" in out.stdout
    # both sweeps are kept under --storage, with lr as a grid (not sampled) in each
    assert (tmp_path / "lr_window_fifo" / "sweep.json").exists() and (tmp_path / "lr_window_asha" / "sweep.json").exists()


BAD = {
    "scale zero": (["--scale", "0"], "--scale 0: must be in (0, 1]"),
    "unknown init": (["--cell", "init=he_nromal"], "the study has no init 'he_nromal'"),
    "depth not in the study": (["--cell", "depth=3"], "the study has no depth '3'"),
    "unknown dimension": (["--cell", "width=8"], "DIM one of init, depth, bn, opt"),
    "one lr": (["--lrs", "0.1"], "at least 2"),
    "grace beyond the epochs": (["--epochs", "2", "--grace-period", "3"], "--grace-period 3"),
    "unknown flag": (["--scheduler", "asha"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_flags_exit_2_with_one_line_before_anything_runs(case, tmp_path):
    flags, expected = BAD[case]
    out = bench("--synthetic", "--storage", str(tmp_path / "res"), *flags, timeout=120)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], out.stderr
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
