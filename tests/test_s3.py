"""Shared storage for real: a smoke sweep writes to s3:// on a local S3-protocol server (moto's standalone
`moto_server`, its own process on 127.0.0.1 and a free port), and the report is built from the same URI.

The server comes from the test extra (`moto[server]`); pyarrow and Ray reach it through the standard AWS
endpoint variables, as they would reach a real bucket.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from analysis.results import load
from tests.conftest import REPO

pytestmark = pytest.mark.slow
BUCKET = "sweeps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    server = shutil.which("moto_server")
    if server is None:
        pytest.fail('moto_server is missing: pip install -e ".[test]" installs moto[server]')
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        env = dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        import pyarrow.fs as pafs
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", access_key="testing",
                          secret_key="testing", region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
    """The kill-and-resume of tests/test_resume.py with every result and Ray's own state on S3."""
    from tests.conftest import write_cifar10
    from tests.test_resume import (LONG, RESUMABLE, assert_one_row_each, env, kill_driver_when,
                                   one_done_one_running)
    for key, value in s3_env.items():  # the driver subprocesses inherit them through env()
        monkeypatch.setenv(key, value)
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    data = write_cifar10(tmp_path / "c10", per_file=200)
    argv = [sys.executable, str(script), "--data-dir", str(data), "--storage", f"s3://{BUCKET}/resume"]
    sweep = f"s3://{BUCKET}/resume/resumable"

    before = kill_driver_when(argv, sweep, tmp_path, one_done_one_running)
    again = subprocess.run([*argv, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=400, start_new_session=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    final = load(sweep)
    assert_one_row_each(final, 4)
    trials = final["trials"]
    assert set(trials["status"]) == {"completed"} and sorted(trials["epochs_completed"]) == [1, 1, LONG, LONG]
    done = before[before["status"] == "completed"].set_index("trial_id")
    assert (trials.set_index("trial_id").loc[done.index, "finished_at"] == done["finished_at"]).all()
