"""The driver's queue of writes (sweeps/results/outbox.py), on a local Store: order per key with one job in
flight, a put that never waits, the memory bound and the spill folder, and what a stopped queue keeps for
the --resume that adopts it. The failures here are raised by the jobs' own steps; the real outages (a TCP
proxy before moto_server, a full tmpfs) are tests/s3/test_outage.py's."""
from __future__ import annotations

import errno
import threading
import time

import pyarrow as pa
import pytest

from sweeps.results import retry
from sweeps.results.outbox import Job, Outbox, kept_in
from sweeps.results.retry import StorageRefused
from sweeps.results.store import Store

GATES: dict[str, threading.Event] = {}
LOG: list = []
FLIGHT: dict[str, int] = {}
FAILS: dict[str, int] = {}


def note(store, key, i):
    """A step that checks that no other job of its key is in flight, and logs its place."""
    FLIGHT[key] = FLIGHT.get(key, 0) + 1
    assert FLIGHT[key] == 1, f"two jobs of {key} in flight"
    time.sleep(0.002)
    LOG.append((key, i))
    FLIGHT[key] -= 1


def hold(store, name):
    assert GATES[name].wait(20)


def flaky(store, name, error_errno):
    """A storage operation (in the Store's retry loop) that fails FAILS[name] times with this errno."""
    def attempt():
        if FAILS.get(name, 0) > 0:
            FAILS[name] -= 1
            raise OSError(error_errno, "injected")
    store._io(attempt, what="a flaky write")


@pytest.fixture(autouse=True)
def clean():
    GATES.clear(), LOG.clear(), FLIGHT.clear(), FAILS.clear()
    retry.configure()
    yield
    for gate in GATES.values():
        gate.set()
    retry.configure()


def table(i: int, n: int = 1) -> pa.Table:
    return pa.table({"trial_id": ["t"] * n, "epoch": [i] * n, "val_acc": [float(i)] * n})


def outbox(tmp_path, **kw) -> tuple[Outbox, Store, list]:
    store = Store(str(tmp_path / "res"), "s")
    lines = []
    return Outbox(store, kw.pop("threads", 2), folder=tmp_path / "spill", say=lines.extend, **kw), store, lines


def test_each_keys_jobs_run_in_order_one_at_a_time(tmp_path):
    box, store, _ = outbox(tmp_path, threads=4)
    for i in range(30):
        for key in ("a", "b", "c"):
            box.put(key, Job([(note, (key, i))]))
    assert box.drain() is None
    box.close()
    for key in ("a", "b", "c"):
        assert [i for k, i in LOG if k == key] == list(range(30))


def test_a_put_never_waits_for_storage(tmp_path):
    GATES["a"] = threading.Event()
    box, store, _ = outbox(tmp_path)
    box.put("a", Job([(hold, ("a",))]))
    started = time.perf_counter()
    for i in range(1, 200):  # Tune's thread: each result returns at once while the trial's first write hangs
        box.put("a", Job([("write_epoch", ("epochs", "a", i, table(i)))], results=1))
    assert time.perf_counter() - started < 1.0
    GATES["a"].set()
    assert box.drain() is None and box.written == 199
    box.close()
    assert len(store.read_table("epochs")) == 199


def test_past_the_memory_bound_jobs_wait_on_disk_and_come_back_in_order(tmp_path):
    GATES["a"] = threading.Event()
    box, store, _ = outbox(tmp_path, memory=table(1, 50).nbytes * 3)
    box.put("a", Job([(hold, ("a",))]))
    for i in range(1, 21):
        box.put("a", Job([("write_epoch", ("epochs", "a", 1, table(i, 50)))], results=1))  # the same file, rewritten
    spilled = sorted((tmp_path / "spill").glob("*.job"))
    assert 16 <= len(spilled) <= 18 and kept_in(tmp_path / "spill") == (len(spilled), 0)  # 2 or 3 stay in memory
    GATES["a"].set()
    assert box.drain() is None
    box.close()
    assert not (tmp_path / "spill").exists()  # emptied, then removed
    assert set(store.read_table("epochs")["val_acc"]) == {20.0}  # the last one put is the one left


def test_a_refusal_stops_the_queue_and_keep_then_adopt_loses_nothing(tmp_path):
    box, store, _ = outbox(tmp_path)
    FAILS["full"] = 1
    box.put("a", Job([("write_epoch", ("epochs", "a", 1, table(1)))], results=1))
    box.put("a", Job([(flaky, ("full", errno.ENOSPC)), ("write_epoch", ("epochs", "a", 2, table(2)))], results=1))
    for i in (3, 4):
        box.put("a", Job([("write_epoch", ("epochs", "a", i, table(i)))], results=1))
    failed = box.drain()
    assert isinstance(failed, StorageRefused) and "the disk under the results is full" in str(failed)
    box.put("a", Job([("write_epoch", ("epochs", "a", 5, table(5)))], results=1))  # after the stop: queued
    box.put("b", Job([("write_rows", ("trials", "b", [dict(trial_id="b", status="stopped")]))]))
    box.put("fold", Job(fn=lambda: LOG.append("folded")))  # a plain callable: not kept
    assert box.keep() == (4, 1, 0)
    box.close()
    assert kept_in(tmp_path / "spill") == (4, 1)
    retry.configure()  # a new driver: --resume
    again, store, _ = outbox(tmp_path)
    assert again.adopt() == (4, 1)
    assert again.drain() is None
    again.close()
    assert sorted(store.read_table("epochs")["epoch"]) == [1, 2, 3, 4, 5] and LOG == []
    assert list(store.read_table("trials")["status"]) == ["stopped"]
    assert not (tmp_path / "spill").exists()


def test_an_outage_gets_one_line_when_it_starts_and_one_when_its_backlog_is_written(tmp_path):
    box, store, lines = outbox(tmp_path)
    FAILS["net"] = 2  # two refused connections: about 0.25-1.5 s of backoff
    GATES["a"] = threading.Event()
    box.put("a", Job([(hold, ("a",))]))
    box.put("a", Job([(flaky, ("net", errno.ECONNREFUSED))], results=1))
    for i in range(2, 6):
        box.put("a", Job([("write_epoch", ("epochs", "a", i, table(i)))], results=1))
    GATES["a"].set()
    assert box.drain() is None
    box.close()
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage unreachable since ") and lines[0].endswith(", 5 results waiting, retrying")
    assert lines[1].startswith("storage back after ") and lines[1].endswith(" s, 5 results written")


def test_past_the_timeout_the_queue_stops_with_storage_unavailable(tmp_path):
    box, store, _ = outbox(tmp_path)
    retry.configure(timeout=0.3)
    FAILS["net"] = 1000
    box.put("a", Job([(flaky, ("net", errno.ETIMEDOUT))], results=1))
    failed = box.drain()
    assert isinstance(failed, retry.StorageUnavailable) and "storage unreachable for 0 s" in str(failed)
    with pytest.raises(retry.StorageUnavailable):  # and every operation of this process on that storage fails fast
        store.write_json("x.json", {})
    assert box.keep() == (1, 0, 0)
    box.close()


def test_when_the_spill_folder_cannot_be_written_jobs_stay_in_memory_and_the_loss_is_told(tmp_path):
    """The spill folder's disk full too (here: its path runs through a file): past the memory bound jobs stay
    in memory with one warning, and a stop counts what it could not keep, for the error line."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    store = Store(str(tmp_path / "res"), "s")
    lines = []
    box = Outbox(store, 2, folder=tmp_path / "blocked" / "spill", memory=1, say=lines.extend)
    FAILS["full"] = 1
    GATES["a"] = threading.Event()
    box.put("a", Job([(hold, ("a",))]))
    box.put("a", Job([(flaky, ("full", errno.ENOSPC))], results=1))
    for i in (2, 3):
        box.put("a", Job([("write_epoch", ("epochs", "a", i, table(i)))], results=1))
    assert len(lines) == 1 and lines[0].startswith("warning: cannot spill queued results to ")
    GATES["a"].set()
    failed = box.drain()
    assert box.keep() == (0, 0, 3)
    box.close()
    assert failed.lost.startswith("3 results could not be kept (") and "blocked/spill" in failed.lost


def pace_in_thread(box: Outbox, key: str) -> threading.Event:
    """keep_pace(key) on another thread (Tune's); the event is set once it returns."""
    returned = threading.Event()
    threading.Thread(target=lambda: (box.keep_pace(key), returned.set()), daemon=True).start()
    return returned


def test_while_the_storage_answers_a_trials_next_write_waits_for_its_last(tmp_path):
    GATES["a"] = threading.Event()
    box, store, _ = outbox(tmp_path)
    box.put("a", Job([(hold, ("a",))]))
    assert pace_in_thread(box, "b").wait(5)  # another trial's writes do not hold this one
    returned = pace_in_thread(box, "a")
    assert not returned.wait(0.5)  # the trial's last write is still in flight
    GATES["a"].set()
    assert returned.wait(10)
    assert box.drain() is None
    box.close()


def test_during_an_outage_nothing_waits_the_queue_takes_the_results(tmp_path):
    box, store, _ = outbox(tmp_path)
    retry.configure(timeout=8)
    FAILS["net"] = 10_000
    box.put("a", Job([(flaky, ("net", errno.ECONNREFUSED))], results=1))
    deadline = time.monotonic() + 10
    while store.health.since is None and time.monotonic() < deadline:  # the outage has begun
        time.sleep(0.05)
    assert store.health.since is not None
    assert pace_in_thread(box, "a").wait(5) and box.failed is None  # returned while the write still retries
    assert isinstance(box.drain(), retry.StorageUnavailable)
    box.close()
