"""Storage faults for real: sweeps in their own processes write to s3:// on moto_server through a TCP proxy
(tests/s3/proxy.py) that drops every connection and refuses new ones for 60 s mid-sweep, or to a local folder
on a 2 MiB tmpfs that fills up mid-sweep. Nothing of the storage path is mocked.

- an outage shorter than --storage-timeout is waited out: training goes on, results queue (and spill past
  the memory bound), the console says when the storage went and came back, exit 0, every row once;
- past --storage-timeout, a clean stop: exit 1, one error line with the --resume command, and that command
  (once the proxy is back) completes the sweep with every row once;
- a full disk: the same clean stop, and the resume after space is freed;
- a missing bucket or denied access: one line, exit 2, before anything starts.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from analysis.results import load
from sweeps.engine.grid import Sweep, axis
from sweeps.engine.runner import main
from tests.conftest import BUCKET, write_cifar10
from tests.engine.test_resume import assert_one_row_each, env, kill_group
from tests.fixtures import free_port, moto_s3
from tests.s3.proxy import Proxy

EPOCHS, TRIALS, OUTAGE = 8, 4, 60.0
FIXED = dict(model="cnn", depth=2, width=8, batch_size=32, augment=False, train_subset=320, test_subset=32,
             epochs=EPOCHS, checkpoint_every=0)
SCRIPT = f'''
from sweeps.engine.grid import Sweep, axis
from sweeps.engine.runner import main
SWEEP = Sweep(study="outage", description="storage fault test", fixed={FIXED!r},
              grid=axis("seed", {list(range(TRIALS))!r}))
if __name__ == "__main__":
    raise SystemExit(main(SWEEP, __file__))
'''
DOWN = re.compile(r"^storage unreachable since \d\d:\d\d:\d\d, \d+ results? waiting, retrying$", re.M)
BACK = re.compile(r"^storage back after (\d+) s, (\d+) results? written$", re.M)
STOP = re.compile(r"^error: (.*); nothing reported is lost: (.*); continue with  python (.*)$", re.M)


@pytest.fixture
def sweep_dir(tmp_path):
    (tmp_path / "outage.py").write_text(SCRIPT)
    write_cifar10(tmp_path / "c10", per_file=200)
    return tmp_path


def start(cwd: Path, storage: str, extra: dict, *flags: str) -> tuple[subprocess.Popen, Path]:
    log = cwd / f"driver-{time.monotonic_ns()}.log"
    proc = subprocess.Popen([sys.executable, "outage.py", "--data-dir", "c10", "--storage", storage, *flags],
                            cwd=cwd, env={**env(), **extra}, start_new_session=True, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    return proc, log


def when_rows(sweep: str, proc: subprocess.Popen, at_least: int, timeout: float = 300) -> float:
    """Wait until the sweep has `at_least` epoch rows on storage; returns when (time.time())."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the sweep ended before the fault"
        try:
            if len(load(sweep)["epochs"]) >= at_least:
                return time.time()
        except Exception:  # not there yet
            pass
        time.sleep(0.5)
    raise AssertionError("the sweep wrote no rows")


def finish(proc: subprocess.Popen, log: Path, timeout: float = 400) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        kill_group(proc)
    return log.read_text()


def resume_command(output: str) -> list[str]:
    stop = STOP.search(output)
    assert stop, output[-3000:]
    return [sys.executable, *shlex.split(stop.group(3))]


def s3_extra(s3_env: dict, proxy: Proxy, tmp_path: Path) -> dict:
    # a small memory bound: results that wait through the outage also go through the spill folder
    return {**s3_env, "AWS_ENDPOINT_URL": proxy.url, "SWEEPS_SPILL_DIR": str(tmp_path / "spill"),
            "SWEEPS_QUEUE_MEMORY": "20000", "TUNE_GLOBAL_CHECKPOINT_S": "0"}


@pytest.mark.slow
def test_a_60_second_outage_is_waited_out(s3_env, sweep_dir, monkeypatch):
    for key, value in s3_env.items():  # this process reads moto directly, past the proxy
        monkeypatch.setenv(key, value)
    sweep = f"s3://{BUCKET}/outage/outage"
    with Proxy(int(s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])) as proxy:
        proc, log = start(sweep_dir, f"s3://{BUCKET}/outage", s3_extra(s3_env, proxy, sweep_dir))
        when_rows(sweep, proc, 2)
        proxy.down(OUTAGE)
        cut = time.time()
        output = finish(proc, log)
    assert proc.returncode == 0, output[-4000:]
    assert proxy.refused > 0  # the sweep did knock while the storage was away
    assert len(DOWN.findall(output)) == 1 and len(BACK.findall(output)) == 1, output[-4000:]
    seconds, written = map(int, BACK.search(output).groups())
    assert OUTAGE - 15 <= seconds <= OUTAGE + 30 and written >= 1
    assert "Traceback" not in output, output[-4000:]
    tables = load(sweep)
    assert_one_row_each(tables, TRIALS)
    trials = tables["trials"]
    assert set(trials["status"]) == {"completed"} and len(tables["epochs"]) == TRIALS * EPOCHS
    # training went on during the outage: trials ended while the storage was away
    ended = [time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%S")) for t in trials["finished_at"]]
    assert any(cut <= t < cut + OUTAGE - 5 for t in ended), (cut, ended)
    assert not (sweep_dir / "spill").exists() or not any((sweep_dir / "spill").rglob("*.job"))


@pytest.mark.slow
def test_past_the_storage_timeout_a_clean_stop_then_resume_completes(s3_env, sweep_dir, monkeypatch):
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    sweep = f"s3://{BUCKET}/stop/outage"
    with Proxy(int(s3_env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])) as proxy:
        extra = s3_extra(s3_env, proxy, sweep_dir)
        proc, log = start(sweep_dir, f"s3://{BUCKET}/stop", extra, "--storage-timeout", "10")
        when_rows(sweep, proc, 2)
        proxy.down(OUTAGE)
        cut = time.time()
        output = finish(proc, log, timeout=OUTAGE + 30)  # stops long before the storage is back
        stopped_after = time.time() - cut
        assert proc.returncode == 1, output[-4000:]
        assert stopped_after < OUTAGE, "the driver waited for the storage instead of stopping"
        last = output.rstrip().splitlines()[-1]
        assert STOP.match(last) and last.startswith("error: storage unreachable for 10 s ("), output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert str(sweep_dir / "spill") in last or "every result is on storage" in last
        proxy.up()
        again = subprocess.run(resume_command(output), cwd=sweep_dir, env={**env(), **extra}, capture_output=True,
                               text=True, timeout=400, start_new_session=True)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Traceback" not in again.stdout + again.stderr
    tables = load(sweep)
    assert_one_row_each(tables, TRIALS)
    assert set(tables["trials"]["status"]) == {"completed"} and len(tables["epochs"]) == TRIALS * EPOCHS
    assert not any((sweep_dir / "spill").rglob("*.job"))


def tmpfs(where: Path, size: str) -> None:
    """Mount a tmpfs of `size` at `where`, or skip saying why (not root, or the container forbids mounts)."""
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command to make a small filesystem for the full-disk test")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs for the full-disk test (needs root and a container that allows "
                    f"mounts): {done.stderr.strip() or done.returncode}")


def fill(folder: Path) -> Path:
    """A file that takes every free byte of the filesystem under `folder`."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left to flush into a full disk at close
        for block in (1 << 16, 512, 1):
            try:
                while out.write(b"\0" * block):
                    pass
            except OSError:
                pass
    return filler


@pytest.mark.slow
def test_a_full_disk_stops_cleanly_and_resume_completes_after_space_is_freed(sweep_dir):
    disk = sweep_dir / "disk"
    tmpfs(disk, "4m")
    try:
        extra = {"SWEEPS_SPILL_DIR": str(sweep_dir / "spill")}  # on the big disk
        sweep = str(disk / "outage")
        proc, log = start(sweep_dir, str(disk), extra)
        when_rows(sweep, proc, 2)
        filler = fill(disk)
        output = finish(proc, log)
        assert proc.returncode == 1, output[-4000:]
        last = output.rstrip().splitlines()[-1]
        assert STOP.match(last) and last.startswith("error: the disk under the results is full ("), output[-4000:]
        assert "No space left on device" in last and "Traceback" not in output, output[-4000:]
        filler.unlink()
        again = subprocess.run(resume_command(output), cwd=sweep_dir, env={**env(), **extra}, capture_output=True,
                               text=True, timeout=400, start_new_session=True)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        tables = load(sweep)
        assert_one_row_each(tables, TRIALS)
        assert set(tables["trials"]["status"]) == {"completed"} and len(tables["epochs"]) == TRIALS * EPOCHS
    finally:
        if "proc" in locals():
            kill_group(proc)
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


TINY = Sweep(study="outage", description="preflight", fixed=dict(FIXED, epochs=1), grid=axis("seed", [0]))


def test_a_missing_bucket_is_one_line_and_exit_2_before_anything_starts(s3_env, tmp_path, monkeypatch, capsys):
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    code = main(TINY, str(tmp_path / "outage.py"), ["--storage", "s3://no-such-bucket/results", "--data-dir",
                                                    str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == ("error: --storage s3://no-such-bucket/results: bucket 'no-such-bucket' does not exist "
                      "(create it first, or check the name and the credentials)")


@pytest.mark.s3
def test_denied_access_is_one_line_and_exit_2_before_anything_starts(tmp_path, monkeypatch, capsys):
    """moto_server with its IAM checks on (INITIAL_NO_AUTH_ACTION_COUNT=0): the test keys are unknown to it."""
    port = free_port()
    server = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        import socket
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        for key, value in dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1").items():
            monkeypatch.setenv(key, value)
        started = time.time()
        code = main(TINY, str(tmp_path / "outage.py"), ["--storage", f"s3://{BUCKET}/results"])
        err = capsys.readouterr().err.strip().splitlines()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert code == 2 and len(err) == 1 and time.time() - started < 30, err  # not retried
    assert err[0] == (f"error: --storage s3://{BUCKET}/results: storage refused access to bucket 'sweeps' "
                      "(AWS Error ACCESS_DENIED during HeadBucket operation: No response body.)"), err


@pytest.mark.slow
@pytest.mark.s3
def test_a_bucket_gone_mid_sweep_stops_without_retrying(sweep_dir, monkeypatch):
    """A refusal mid-sweep (moto's reset deletes the bucket): not retried; one line, exit 1."""
    import urllib.request
    with moto_s3(BUCKET) as s3:
        for key, value in s3.items():
            monkeypatch.setenv(key, value)
        extra = {**s3, "SWEEPS_SPILL_DIR": str(sweep_dir / "spill")}
        proc, log = start(sweep_dir, f"s3://{BUCKET}/gone", extra, "--storage-timeout", "300")
        when_rows(f"s3://{BUCKET}/gone/outage", proc, 2)
        urllib.request.urlopen(urllib.request.Request(f"{s3['AWS_ENDPOINT_URL']}/moto-api/reset", method="POST"),
                               timeout=30).read()
        cut = time.time()
        output = finish(proc, log, timeout=200)
    assert proc.returncode == 1 and time.time() - cut < 120, output[-4000:]
    last = output.rstrip().splitlines()[-1]
    assert STOP.match(last) and last.startswith("error: storage refused a "), output[-4000:]
    assert "NO_SUCH_BUCKET" in last and "Traceback" not in output, output[-4000:]
    # what could not be written is kept, whether a write or the lease's heartbeat met the empty storage first
    # (the heartbeat then sees no lease and no sweep.json: an outage, not another driver's takeover)
    assert str(sweep_dir / "spill") in last and any((sweep_dir / "spill").rglob("*.job")), output[-4000:]
