"""One driver per sweep (sweeps/results/lease.py): the lease on a local folder and on an s3:// store
(moto_server), held, refused, taken over when stale or forced, lost; racing processes; and real sweeps: a
second driver refused while the first runs, and a SIGKILLed driver's stale lease taken over by --resume.

The unit tests shrink the lease's timings (FAST) so that they take seconds; the real defaults
(HEARTBEAT_S 2 s, STALE_S 6 s = 3 missed heartbeats) are what the sweeps below run with.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeps.results import lease
from sweeps.results.lease import Lease, LeaseHeld, LeaseLost
from sweeps.results.retry import StorageError
from sweeps.results.store import Store
from trainables.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
# small timings for the unit tests: the ratios of the defaults (stale after 3 missed heartbeats)
FAST = dict(HEARTBEAT_S=0.5, STALE_S=1.5, WATCH_S=0.625, POLL_S=0.05, SETTLE_S=0.3)

# A driver in its own process: holds the sweep's lease until killed, and says when it lost it.
HOLDER = '''
import json, os, sys, time
from sweeps.results import lease
from sweeps.results.store import Store
storage, name, timings, mode = sys.argv[1:5]
for key, value in json.loads(timings).items():
    setattr(lease, key, value)
held = lease.Lease.acquire(Store(storage, name), resume=mode != "new", force=mode == "force")
print(json.dumps(dict(driver=held.id, pid=os.getpid(), seq=held.seq)), flush=True)
while not held.lost:
    time.sleep(0.05)
print("lost", flush=True)
'''


@pytest.fixture
def fast(monkeypatch):
    for key, value in FAST.items():
        monkeypatch.setattr(lease, key, value)
    return FAST


def start_holder(storage: str, name: str, mode: str = "new", env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, storage, name, json.dumps(FAST), mode], cwd=REPO,
                            env={**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, json.loads(line)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def names(store: Store) -> list[str]:
    return sorted(os.listdir(store.root)) if os.path.isdir(store.root) else []


def said(lines: list) -> callable:
    return lines.append


# --- the lease on a local folder ---

def test_a_held_lease_records_its_driver_heartbeats_and_is_released(tmp_path, fast):
    store = Store(str(tmp_path), "sw")
    held = Lease.acquire(store)
    try:
        record = json.loads((tmp_path / "sw" / "lease-000001.json").read_text())
        assert record["driver"] == held.id and record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert {"started", "heartbeat", "beat"} <= set(record)
        holder = lease.read(store)
        assert (holder.host, holder.pid, holder.stale) == (socket.gethostname(), os.getpid(), False)
        assert lease.held(store.uri) is held
        time.sleep(3 * fast["HEARTBEAT_S"])
        again = lease.read(store)
        assert again.beat >= 2 and again.heartbeat > holder.heartbeat and again.age < fast["HEARTBEAT_S"] * 1.5
        held.check(strict=True)  # still ours: nothing raised
    finally:
        held.release()
    assert lease.read(store) is None and lease.held(store.uri) is None
    assert not (tmp_path / "sw").exists()  # a new sweep that wrote nothing else leaves no folder behind
    # a resumed sweep's folder stays; only the lease goes
    store.write_json("sweep.json", {})
    Lease.acquire(store, resume=True).release()
    assert names(store) == ["sweep.json"]


def test_a_live_lease_refuses_a_second_driver_naming_it_and_writing_nothing(tmp_path, fast):
    first, info = start_holder(str(tmp_path), "sw")
    try:
        store = Store(str(tmp_path), "sw")
        before = names(store)
        for resume in (True, False):  # a --resume watches for a heartbeat; a new driver is refused at once
            started = time.perf_counter()
            with pytest.raises(LeaseHeld) as refused:
                Lease.acquire(store, resume=resume)
            took = time.perf_counter() - started
            assert took < (2 * fast["HEARTBEAT_S"] if resume else 0.5), took
            message = str(refused.value)
            assert isinstance(refused.value, ConfigError) and "\n" not in message
            assert f"sweep 'sw' is being run by another driver (host {socket.gethostname()}, pid {info['pid']}, " \
                   "last heartbeat " in message
            assert "--resume takes over after 1.5 s without a heartbeat (--resume --force takes over now)" in message
        assert names(store) == before == ["lease-000001.json"] and lease.read(store).driver == info["driver"]
        assert first.poll() is None
    finally:
        kill(first)


def test_a_dead_drivers_lease_goes_stale_and_resume_takes_it_over(tmp_path, fast):
    first, info = start_holder(str(tmp_path), "sw")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    killed = time.monotonic()
    store = Store(str(tmp_path), "sw")
    with pytest.raises(LeaseHeld):  # only --resume takes a lease over
        Lease.acquire(store, resume=False)
    lines = []
    held = Lease.acquire(store, resume=True, say=said(lines))
    try:
        assert time.monotonic() - killed >= fast["STALE_S"] - fast["HEARTBEAT_S"]  # not before it went stale
        assert len(lines) == 1 and lines[0].startswith(
            f"note: took over the lease of a driver that stopped (host {socket.gethostname()}, pid {info['pid']}, "
            "last heartbeat ")
        assert held.seq == 2 and names(store) == ["lease-000002.json"]  # the dead driver's file is gone
        assert lease.read(store).driver == held.id
    finally:
        held.release()


def test_force_takes_over_a_live_lease_and_the_old_driver_stops_writing(tmp_path, fast):
    store = Store(str(tmp_path), "sw")
    with pytest.raises(ConfigError, match="use it with --resume"):
        Lease.acquire(store, force=True)
    assert not (tmp_path / "sw").exists()
    mine = Lease.acquire(store)
    try:
        second, info = start_holder(str(tmp_path), "sw", mode="force")
        try:
            assert "warning: --force: taking over the lease of sweep 'sw' from a driver that is still running " \
                   f"(host {socket.gethostname()}, pid {os.getpid()}, " in second.stderr.readline()
            deadline = time.monotonic() + 2 * fast["HEARTBEAT_S"] + 1
            while not mine.lost and time.monotonic() < deadline:
                time.sleep(0.02)
            assert mine.lost and lease.lost(store.uri)
            with pytest.raises(LeaseLost, match=f"another driver \\(host {socket.gethostname()}, pid {info['pid']}\\) "
                                                "took over this sweep's lease"):
                lease.check(store.uri)
            mine.release()  # the other driver's lease stays
            assert lease.read(store).driver == info["driver"] and second.poll() is None
        finally:
            kill(second)
    finally:
        mine.release()


def wipe_and_renew(held: Lease, wipe, store: Store, fast) -> None:
    """Storage wiped under a held lease (lease file and sweep.json gone) is an outage, not a takeover: renew
    raises, the heartbeat only warns, and the lease stays this driver's, so the driver keeps what it could
    not write. A successor that ran the sweep and released its lease would have left sweep.json: lost."""
    wipe()
    with pytest.raises(StorageError, match="its lease and sweep.json are gone"):
        held.renew()
    time.sleep(2 * fast["HEARTBEAT_S"])  # the heartbeat meets the same
    assert not held.lost and not lease.lost(store.uri, strict=True)
    held.check(strict=True)  # nothing raised
    store.write_json("sweep.json", {})
    assert held.renew() is False and held.lost and held.taken_by is None


def test_storage_wiped_under_a_held_lease_is_an_outage_not_a_takeover(tmp_path, fast, capsys):
    store = Store(str(tmp_path), "sw")
    held = Lease.acquire(store)
    try:
        wipe_and_renew(held, lambda: shutil.rmtree(tmp_path / "sw"), store, fast)
    finally:
        held.release()
    assert "could not renew the lease of sweep 'sw'" in capsys.readouterr().err


def test_a_lost_lease_stops_the_recorder_before_it_folds_or_deletes(tmp_path, fast):
    """The Recorder and the runner's summary ask the lease before any write, fold or delete: once another driver
    holds the sweep, a trial's result, Tune's next step, the experiment's end and the close write nothing."""
    from sweeps.engine.recorder import Recorder, reconcile
    from sweeps.engine.runner import summarize
    from tests.results.test_store import epoch_rows, fake_trial
    spec = dict(config=dict(epochs=3, task="train", lr=0.1), labels={}, facts={}, title="t", overrides={})
    meta = dict(sweep="sw", study="x", code_version="v", trials=2)
    store = Store(str(tmp_path), "sw")
    mine = Lease.acquire(store)
    recorder = Recorder(str(tmp_path), "sw", meta, [spec])
    done, running = fake_trial("t1"), fake_trial("t2")
    for trial, epochs in ((done, (1, 2, 3)), (running, (1,))):
        recorder.on_trial_start(0, [], trial)
        for epoch in epochs:
            result = dict(epoch_rows(trial.trial_id, epoch, 0.1 * epoch), epoch=epoch)
            trial.last_result = result
            recorder.on_trial_result(0, [], trial, result)
    recorder.on_trial_complete(0, [], done)  # compacted, waiting to be folded at the experiment's end
    recorder.flush()
    before = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "sw").rglob("*.parquet"))
    assert "sw/epochs.parquet/t1.parquet" in before and "sw/epochs.parquet/t2/e0001.parquet" in before
    second, _ = start_holder(str(tmp_path), "sw", mode="force")
    try:
        while not mine.lost:
            time.sleep(0.02)
        result = dict(epoch_rows("t2", 2, 0.2), epoch=2)
        # a trial's callbacks write nothing and raise nothing: Ray would wrap LeaseLost in a TuneError with a
        # traceback (CI saw it), or log it and error the trial; the step callbacks, which Ray lets through, raise
        recorder.on_trial_result(0, [], running, result)
        recorder.on_trial_complete(0, [], running)
        for step_callback in (recorder.on_step_begin, recorder.on_step_end):
            with pytest.raises(LeaseLost):
                step_callback(0, [])
        recorder.on_experiment_end([done, running])  # no fold, no Tune files: the other driver writes them
        with pytest.raises(LeaseLost):
            reconcile(store, [], None, meta)
        with pytest.raises(LeaseLost):
            summarize(store, 0.0)  # close_sweep would mark t2 stopped and fold t1
        after = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "sw").rglob("*.parquet"))
        assert after == before
        assert list(store.read_table("trials").sort_values("trial_id")["status"]) == ["completed", "running"]
    finally:
        kill(second)
        mine.release()


def test_status_shows_who_runs_the_sweep(tmp_path, fast):
    from analysis import status
    store = Store(str(tmp_path), "sw")
    store.write_json("sweep.json", {"sweep": "sw", "study": "x", "plan": [{}]})
    assert not any(line.startswith("driver:") for line in status.summary_lines(str(tmp_path / "sw")))
    first, info = start_holder(str(tmp_path), "sw", mode="resume")
    try:
        line = next(line for line in status.summary_lines(str(tmp_path / "sw")) if line.startswith("driver:"))
        assert line.startswith(f"driver: running on host {socket.gethostname()}, pid {info['pid']} since ")
        assert ", last heartbeat " in line and line.endswith(" s ago")
    finally:
        kill(first)
    time.sleep(fast["STALE_S"])
    line = next(line for line in status.summary_lines(str(tmp_path / "sw")) if line.startswith("driver:"))
    assert line.startswith(f"driver: none heartbeating; the lease of host {socket.gethostname()}, pid {info['pid']} "
                           "is stale (last heartbeat ") and line.endswith("--resume takes it over")


# --- racing: N processes, one winner ---

def race(storage: str, name: str, timings: dict, resume: bool, ready, decided, results) -> None:
    """One racer (a multiprocessing target): once all are ready, acquire; report; the winner holds the lease
    until every racer has decided, then releases it."""
    for key, value in timings.items():
        setattr(lease, key, value)
    store = Store(storage, name)
    ready.wait()
    if resume is None:  # the bare exclusive step, all at once: claim generation 2 (after a dead generation 1)
        me = Lease(store, new=False)
        results.put(("won" if me._claim(2) else "held", os.getpid(), me.id))
        return
    try:
        held = Lease.acquire(store, resume=resume, say=lambda line: None)
    except LeaseHeld:
        results.put(("held", os.getpid(), None))
        return
    results.put(("won", os.getpid(), held.id))
    decided.wait(timeout=60)
    held.release()


def run_race(storage: str, name: str, resume: bool | None, n: int = 6) -> list[tuple]:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process with pyarrow's threads
    results, ready, decided = spawn.Queue(), spawn.Barrier(n, timeout=120), spawn.Event()
    racers = [spawn.Process(target=race, args=(storage, name, FAST, resume, ready, decided, results))
              for _ in range(n)]
    for p in racers:
        p.start()
    try:
        out = [results.get(timeout=180) for _ in racers]
    finally:
        decided.set()
        for p in racers:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    return out


def write_dead_lease(store: Store, age: float = 40.0) -> None:
    """The lease a driver left when it died `age` seconds ago."""
    store.write_json("lease-000001.json", dict(driver="dead", host="gone-host", pid=1, started="2025-01-01T00:00:00",
                                               heartbeat=time.time() - age, beat=7))


@pytest.mark.parametrize("case", ["free lease, new drivers", "stale lease, resuming drivers",
                                  "one generation claimed by all at once"])
def test_racing_drivers_exactly_one_wins(tmp_path, case):
    store = Store(str(tmp_path), "sw")
    resume = {"free": False, "stale": True, "one": None}[case.split()[0]]
    if resume is not False:
        write_dead_lease(store)
    out = run_race(str(tmp_path), "sw", resume)
    won = [r for r in out if r[0] == "won"]
    assert len(won) == 1 and sum(r[0] == "held" for r in out) == len(out) - 1, out
    if resume is None:  # every racer wrote its claim; the one file holds the winner's
        assert lease.read(store).driver == won[0][2]
    else:
        assert not [n for n in names(store) if n.startswith("lease-")]  # the winner released it


# --- on an object store: moto_server's S3 ---

@pytest.fixture
def s3_store(s3_env, monkeypatch, fast):
    from tests.conftest import BUCKET
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    storage = f"s3://{BUCKET}/lease-{time.time_ns()}"
    return storage, Store(storage, "sw")


def test_on_s3_a_live_lease_refuses_and_a_stale_one_is_taken_over_then_forced_away(s3_store, s3_env, fast):
    storage, store = s3_store
    first, info = start_holder(storage, "sw", env=s3_env)
    try:
        assert lease.read(store).driver == info["driver"] and store.exists()
        for resume in (True, False):
            with pytest.raises(LeaseHeld, match=f"is being run by another driver \\(host {socket.gethostname()}, "
                                                f"pid {info['pid']}, last heartbeat "):
                Lease.acquire(store, resume=resume)
        assert lease.read(store).driver == info["driver"] and first.poll() is None
    finally:
        kill(first)  # SIGKILL: its lease stays, and goes stale
    lines = []
    mine = Lease.acquire(store, resume=True, say=said(lines))
    try:
        assert len(lines) == 1 and f"note: took over the lease of a driver that stopped (host {socket.gethostname()}, " \
                                   f"pid {info['pid']}, " in lines[0]
        assert mine.seq == 2 and lease.read(store).driver == mine.id
        second, _ = start_holder(storage, "sw", mode="force", env=s3_env)
        try:
            deadline = time.monotonic() + 2 * fast["HEARTBEAT_S"] + 2
            while not mine.lost and time.monotonic() < deadline:
                time.sleep(0.02)
            with pytest.raises(LeaseLost):
                mine.check()
        finally:
            kill(second)
    finally:
        mine.release()


def test_on_s3_a_wiped_prefix_under_a_held_lease_is_an_outage_not_a_takeover(s3_store, fast):
    storage, store = s3_store
    held = Lease.acquire(store)
    try:
        wipe_and_renew(held, lambda: store.fs.delete_file(store.path(f"{lease.PREFIX}{held.seq:06d}.json")), store,
                       fast)
    finally:
        held.release()


def test_on_s3_a_new_sweep_that_wrote_nothing_leaves_nothing(s3_store):
    storage, store = s3_store
    held = Lease.acquire(store)
    assert store.exists() and lease.read(store).driver == held.id
    held.release()
    assert lease.read(store) is None and not store.exists()  # not even the "folder" marker S3 deletes leave


@pytest.mark.parametrize("resume", [True, None], ids=["stale lease, resuming drivers", "one generation at once"])
def test_on_s3_racing_drivers_exactly_one_wins(s3_store, resume):
    """Write-then-verify: every racer writes its claim, waits SETTLE_S and reads back the same last write."""
    storage, store = s3_store
    write_dead_lease(store)
    out = run_race(storage, "sw", resume=resume, n=4)
    won = [r for r in out if r[0] == "won"]
    assert len(won) == 1, out
    if resume is None:
        assert lease.read(store).driver == won[0][2]


# --- real sweeps, with the real timings ---

def sweep_argv(tmp_path: Path, storage: str | None = None) -> tuple[list[str], str]:
    """The kill-and-resume sweep of tests/engine/test_resume.py (2 short and 2 six-epoch trials), and its path."""
    from tests.conftest import write_cifar10
    from tests.engine.test_resume import RESUMABLE
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    data = write_cifar10(tmp_path / "c10", per_file=200)
    storage = storage or str(tmp_path / "res")
    return [sys.executable, str(script), "--data-dir", str(data), "--storage", storage], f"{storage}/resumable"


def second_driver_is_refused(tmp_path: Path, storage: str | None = None) -> None:
    """Start the sweep; once it runs (a trials row), the same command with --resume exits 2 in under 5 s with
    one line naming the first driver, and writes nothing; the first completes with every row once."""
    from analysis import status
    from analysis.results import load
    from tests.engine.test_resume import LONG, assert_one_row_each, env, kill_group
    argv, sweep = sweep_argv(tmp_path, storage)
    log = tmp_path / "first.log"
    first = subprocess.Popen(argv, env=env(), cwd=tmp_path, start_new_session=True, stdout=log.open("w"),
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:  # running: a trials row is on storage
            try:
                if len(load(sweep)["trials"]):
                    break
            except Exception:
                pass
            time.sleep(0.5)
        assert first.poll() is None, "the sweep ended before a second driver could try it"
        line = next(line for line in status.summary_lines(sweep) if line.startswith("driver:"))
        assert line.startswith(f"driver: running on host {socket.gethostname()}, pid {first.pid} since ")

        started = time.perf_counter()
        second = subprocess.run([*argv, "--resume"], env=env(), cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        took = time.perf_counter() - started
        assert second.returncode == 2, second.stdout + second.stderr
        assert took < 5.0, f"refused after {took:.1f} s"
        lines = second.stderr.splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(f"error: sweep 'resumable' is being run by another driver "
                                   f"(host {socket.gethostname()}, pid {first.pid}, last heartbeat "), lines[0]
        assert lines[0].endswith(" s ago); wait for it, or if it is dead, --resume takes over after 6 s without a "
                                 "heartbeat (--resume --force takes over now)"), lines[0]
        assert "resumed_at" not in Store.at(sweep).read_json("sweep.json")  # it wrote nothing
        print(f"second driver refused in {took:.2f} s")

        first.wait(timeout=600)
    finally:
        kill_group(first)
    assert first.returncode == 0, log.read_text()[-3000:]
    final = load(sweep)
    assert_one_row_each(final, 4)
    assert set(final["trials"]["status"]) == {"completed"}
    assert len(final["epochs"]) == 1 + 1 + LONG + LONG
    # a plain reader of the Parquet folders sees the same rows once each
    store = Store.at(sweep)
    plain = {} if store.local else dict(filesystem=store.fs)
    epochs = pd.read_parquet(store.path("epochs.parquet"), **plain)
    trials = pd.read_parquet(store.path("trials.parquet"), **plain)
    assert len(epochs) == 1 + 1 + LONG + LONG and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(trials) == 4 and trials["trial_id"].is_unique
    assert lease.read(store) is None  # released at the end


@pytest.mark.slow
def test_a_second_driver_is_refused_while_the_first_runs_and_every_row_is_written_once(tmp_path):
    second_driver_is_refused(tmp_path)


@pytest.mark.slow
def test_on_s3_a_second_driver_is_refused_while_the_first_runs(s3_env, tmp_path, monkeypatch):
    from tests.conftest import BUCKET
    for key, value in s3_env.items():  # the drivers inherit them through env(); the readers here need them too
        monkeypatch.setenv(key, value)
    second_driver_is_refused(tmp_path, f"s3://{BUCKET}/second")


@pytest.mark.slow
def test_a_killed_drivers_stale_lease_is_taken_over_by_resume(tmp_path):
    from analysis.results import load
    from tests.engine.test_resume import (LONG, assert_one_row_each, env, kill_driver_when, kill_group,
                                          one_done_one_running)
    argv, sweep = sweep_argv(tmp_path)
    kill_driver_when(argv, Path(sweep), tmp_path, one_done_one_running)
    dead = lease.read(Store.at(sweep))
    assert dead is not None and not dead.stale  # SIGKILL: the lease stays, its heartbeat just stopped

    started = time.perf_counter()
    again = subprocess.Popen([*argv, "--resume"], env=env(), cwd=tmp_path, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = again.communicate(timeout=400)
    finally:
        kill_group(again)
    assert again.returncode == 0, out[-2000:] + err[-3000:]
    notes = [line for line in err.splitlines() if line.startswith("note: took over the lease")]
    assert len(notes) == 1, err[-3000:]
    assert notes[0].startswith(f"note: took over the lease of a driver that stopped (host {dead.host}, "
                               f"pid {dead.pid}, last heartbeat "), notes[0]
    assert float(notes[0].split("last heartbeat ")[1].split(" s ago")[0]) >= lease.STALE_S
    print(f"resumed and completed in {time.perf_counter() - started:.0f} s; {notes[0]}")
    final = load(sweep)
    assert_one_row_each(final, 4)
    assert set(final["trials"]["status"]) == {"completed"}
    assert sorted(final["trials"]["epochs_completed"]) == [1, 1, LONG, LONG]
    assert lease.read(Store.at(sweep)) is None


@pytest.mark.slow
def test_force_takes_over_a_running_sweep_and_the_first_driver_stops_with_one_line(tmp_path):
    """--resume --force on a live sweep: a warning, then the first driver's heartbeat finds the lease lost and its
    Recorder ends Tune's loop: one error line, exit 1, nothing folded by it; the second completes the sweep."""
    from analysis.results import load
    from tests.engine.test_resume import LONG, assert_one_row_each, env, kill_group, one_done_one_running
    argv, sweep = sweep_argv(tmp_path)
    log = tmp_path / "first.log"
    # Ray snapshots its state at every step, so that the second driver restores what the first has done
    first = subprocess.Popen(argv, env={**env(), "TUNE_GLOBAL_CHECKPOINT_S": "0"}, cwd=tmp_path,
                             start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:
            try:
                if one_done_one_running(load(sweep)) is not None:
                    break
            except Exception:
                pass
            time.sleep(0.5)
        assert first.poll() is None, "the sweep ended before a second driver could take it over"
        second = subprocess.Popen([*argv, "--resume", "--force"], env=env(), cwd=tmp_path, start_new_session=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = second.communicate(timeout=400)
        finally:
            kill_group(second)
        first.wait(timeout=120)
    finally:
        kill_group(first)
    assert second.returncode == 0, out[-2000:] + err[-3000:]
    assert err.splitlines()[0].startswith("warning: --force: taking over the lease of sweep 'resumable' from a driver "
                                          f"that is still running (host {socket.gethostname()}, pid {first.pid}, ")
    first_out = log.read_text()
    assert first.returncode == 1, first_out[-3000:]
    assert first_out.rstrip().splitlines()[-1] == (
        f"error: sweep 'resumable': another driver (host {socket.gethostname()}, pid {second.pid}) took over this "
        "sweep's lease; this driver stopped without folding or deleting anything, and the other one continues "
        "the sweep")
    assert "Traceback" not in first_out and "sweep resumable: " not in first_out  # no summary, no close_sweep
    final = load(sweep)
    assert_one_row_each(final, 4)
    assert set(final["trials"]["status"]) == {"completed"}
    assert sorted(final["trials"]["epochs_completed"]) == [1, 1, LONG, LONG]
    assert lease.read(Store.at(sweep)) is None
