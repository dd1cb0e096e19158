"""Shared storage for real: a smoke sweep writes to s3:// on a local S3-protocol server (moto's standalone
`moto_server`, its own process on 127.0.0.1 and a free port: tests/conftest.py's `s3_env`), and the report is
built from the same URI.

The server comes from the test extra (`moto[server]`); pyarrow and Ray reach it through the standard AWS
endpoint variables, as they would reach a real bucket.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from analysis.results import load
from tests.conftest import BUCKET, REPO

pytestmark = pytest.mark.slow


def test_smoke_sweep_and_its_report_on_s3(s3_env, tmp_path, monkeypatch):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **s3_env, "RAY_AIR_NEW_OUTPUT": "0"}
    uri = f"s3://{BUCKET}/results/s3smoke"
    sweep = subprocess.run([sys.executable, "sweeps/depth_grid.py", "--smoke", "--set", "dataset=synthetic",
                            "--storage", f"s3://{BUCKET}/results", "--name", "s3smoke"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "Could not fetch metrics" not in sweep.stdout + sweep.stderr
    assert f"python -m analysis.report {uri}" in sweep.stdout

    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    tables = load(uri)
    assert len(tables["trials"]) == 4 and set(tables["trials"]["status"]) == {"completed"}
    assert len(tables["epochs"]) == 4 and not tables["epochs"].duplicated(["trial_id", "epoch"]).any()

    out = tmp_path / "report"
    report = subprocess.run([sys.executable, "-m", "analysis.report", uri, "--out", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (out / "report.html").stat().st_size > 0 and (out / "final_test_acc.csv").exists()
    assert "| he_normal | relu |" in report.stdout


def test_sigkilled_driver_resumes_on_s3(s3_env, tmp_path, monkeypatch):
    """The kill-and-resume of tests/engine/test_resume.py with every result and Ray's own state on S3."""
    from tests.conftest import write_cifar10
    from tests.engine.test_resume import (LONG, RESUMABLE, assert_one_row_each, env, kill_driver_when,
                                          one_done_one_running, ray_statuses)
    for key, value in s3_env.items():  # the driver subprocesses inherit them through env()
        monkeypatch.setenv(key, value)
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    data = write_cifar10(tmp_path / "c10", per_file=200)
    argv = [sys.executable, str(script), "--data-dir", str(data), "--storage", f"s3://{BUCKET}/resume"]
    sweep = f"s3://{BUCKET}/resume/resumable"

    def ready(tables):  # ... and Ray's state on the bucket has caught up with our rows (see ray_statuses)
        found = one_done_one_running(tables)
        done = [] if found is None else found.loc[found["status"] == "completed", "trial_id"]
        return found if found is not None and all(ray_statuses(sweep).get(t) == "TERMINATED" for t in done) else None

    before = kill_driver_when(argv, sweep, tmp_path, ready)
    again = subprocess.run([*argv, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=400, start_new_session=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = load(sweep)
    assert_one_row_each(final, 4)
    trials = final["trials"]
    assert set(trials["status"]) == {"completed"} and sorted(trials["epochs_completed"]) == [1, 1, LONG, LONG]
    done = before[before["status"] == "completed"].set_index("trial_id")
    assert (trials.set_index("trial_id").loc[done.index, "finished_at"] == done["finished_at"]).all()


