"""The driver's queue of storage writes: results wait here, in order, while the storage is slow or away.

The Recorder (sweeps/engine/recorder.py) puts every write here as a `Job` under a key (a trial id, or
"sweep.json", "fold") and returns at once, so Tune's event loop never waits on storage. A small thread
pool drains the queues: one job in flight per key, in the order put, so a trial's epoch files, its
compaction and its trials row land in order, and a trial's next result never overtakes its last.

While the storage is unreachable, each job's Store operations retry (sweeps/results/retry.py) and the queues
grow; the console gets one line when the outage starts ("storage unreachable since 12:03:10, 3 results
waiting, retrying") and one when the results that waited are written ("storage back after 47 s, 40
results written").

Memory is bounded: past QUEUE_MEMORY bytes of queued jobs (64 MiB, about 6,000 results of a 16-layer
VGG; env SWEEPS_QUEUE_MEMORY), each new job is pickled to the spill folder instead and read back when its
turn comes. The spill folder is local to the driver: `$SWEEPS_SPILL_DIR/<sweep>-<hash of its URI>/`,
SWEEPS_SPILL_DIR defaulting to `~/.cache/cnn-sweeps/spill` ($XDG_CACHE_HOME if set); one file per job,
named by its place in the order.

When the storage has been unreachable for --storage-timeout, or refuses (access denied, no bucket, a full
disk), the queue stops taking jobs off, `failed` says why, and `keep()` writes everything still queued to
the spill folder. A later `--resume` of the same sweep, on the same machine, puts those jobs first in their
queues (`adopt`), so nothing already reported is lost; each job only writes or deletes named files, so
writing one twice (one that was in flight at the stop) leaves the same files. If the spill folder cannot be
written either (its disk is full too), the jobs stay in memory until the driver exits, their count is
reported as lost in the error line, and the resumed trials report those epochs again only where Ray
restarts them from an earlier checkpoint. A job given as a plain callable (the Recorder's fold of finished
trials into part files) is not kept: it only reorganizes files already written, and the sweep's end folds
again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from sweeps.results import retry
from sweeps.results.progress import emit
from sweeps.results.retry import StorageError, StorageRefused

QUEUE_MEMORY = 64 << 20  # bytes of queued jobs kept in memory before new ones are spilled to disk


def queue_memory() -> int:
    return int(os.environ.get("SWEEPS_QUEUE_MEMORY", QUEUE_MEMORY))


def spill_root() -> Path:
    if os.environ.get("SWEEPS_SPILL_DIR"):
        return Path(os.environ["SWEEPS_SPILL_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cnn-sweeps" / "spill"


def spill_folder(store) -> Path:
    """Where this sweep's queued writes are kept on the driver's disk (see the module's docstring)."""
    return spill_root() / f"{store.name}-{hashlib.sha1(store.uri.encode()).hexdigest()[:10]}"


def kept_in(folder: Path) -> tuple[int, int]:
    """(results, other writes) a stopped run left in a spill folder."""
    results = others = 0
    for path in sorted(Path(folder).glob("*.job")) if Path(folder).is_dir() else []:
        try:
            n = int(_header(path).get("results", 0))
        except (OSError, ValueError):
            continue
        results, others = results + n, others + (not n)
    return results, others


class Job:
    """One unit of storage work. `steps`: (step, args) pairs run in order, a step being a Store method's name
    or a module-level function called as step(store, *args), so that the job can be pickled to the spill
    folder. `fn`: a plain callable instead (never spilled or kept). `results`: how many reported results it
    writes (for the console's counts). `after(outputs)`: called in the writer thread once the job is done,
    with each step's return value; not kept either."""

    __slots__ = ("steps", "fn", "results", "after", "seq", "size", "path")

    def __init__(self, steps=(), results: int = 0, after=None, fn=None):
        self.steps, self.fn, self.results, self.after = list(steps), fn, results, after
        self.seq, self.size, self.path = 0, 0, None

    @property
    def keepable(self) -> bool:
        return self.fn is None

    def run(self, store) -> list:
        if self.fn is not None:
            return [self.fn()]
        return [(getattr(store, step) if isinstance(step, str) else functools.partial(step, store))(*args)
                for step, args in self.steps]


class _Spilled:
    """A queued job that waits on disk (its `after` stays in memory: a resumed run has none)."""
    __slots__ = ("path", "results", "seq", "size", "after")

    def __init__(self, path: Path, results: int, seq: int, after=None):
        self.path, self.results, self.seq, self.size, self.after = path, results, seq, 0, after

    def load(self) -> Job:
        data = self.path.read_bytes()
        job = Job(pickle.loads(data[data.index(b"\n") + 1:]), results=self.results, after=self.after)
        job.seq, job.path = self.seq, self.path
        return job


class Outbox:
    """Per-key FIFO queues of Jobs drained by `threads` writer threads, one job in flight per key."""

    def __init__(self, store, threads: int, folder: Path | None = None, memory: int | None = None, say=emit):
        self.store, self.say = store, say
        self.folder = Path(folder) if folder is not None else spill_folder(store)
        self.limit = queue_memory() if memory is None else memory
        self.failed: StorageError | None = None
        self.written = 0  # results written
        self._cond = threading.Condition()
        self._queues: dict[str, deque] = {}
        self._busy: set[str] = set()  # keys with a job handed to the pool
        self._memory = 0  # bytes of queued jobs held in memory
        self._waiting = 0  # results queued or in flight
        self._seq = 0
        self._spill_error = ""  # why the spill folder could not be written, once it could not
        self._outage: dict | None = None
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="recorder")
        self.health = retry.health_of(store.storage)
        self.health.listener = self

    # --- the Recorder's side ---
    def put(self, key: str, job: Job) -> None:
        """Queue `job` after the key's earlier ones; never waits on storage."""
        with self._cond:
            job.seq, self._seq = self._seq, self._seq + 1
            entry = job
            if job.keepable:
                job.size = _size(job.steps)
                if self._memory + job.size > self.limit and not self._spill_error:
                    entry = self._spill(key, job) or job
            if entry is job:
                self._memory += job.size
            self._queues.setdefault(key, deque()).append(entry)
            self._waiting += job.results
            self._kick(key)

    def keep_pace(self, key: str) -> None:
        """While the storage answers, until the key's earlier jobs are written: a trial's next result waits
        for its last one, so results reach storage as fast as they come or the trials slow to the storage's
        pace (on a slow storage the queue would otherwise grow for the whole sweep, and with it the lag and
        what a killed driver loses). During an outage, or once the queue has stopped, it returns at once:
        the queue takes the results and training goes on."""
        with self._cond:
            while (self.failed is None and self.health.since is None
                   and (key in self._busy or self._queues.get(key))):
                self._cond.wait(0.5)  # an outage's start does not notify: looked at twice a second

    def wait(self, key: str) -> StorageError | None:
        """Until the key's queue is written (or the queue has stopped)."""
        with self._cond:
            while self.failed is None and (key in self._busy or self._queues.get(key)):
                self._cond.wait(1.0)
            return self.failed

    def drain(self) -> StorageError | None:
        """Until every queue is written, or the queue has stopped (the retries' timeout bounds the wait)."""
        with self._cond:
            while self.failed is None and (self._busy or any(self._queues.values())):
                self._cond.wait(1.0)
            return self.failed

    def adopt(self) -> tuple[int, int]:
        """Queue first what a stopped run kept in the spill folder; returns (results, other writes)."""
        paths = sorted(self.folder.glob("*.job")) if self.folder.is_dir() else []
        results = others = 0
        with self._cond:
            for path in paths:
                try:
                    header = _header(path)
                    seq = int(path.stem)
                except (OSError, ValueError):
                    continue
                n = int(header.get("results", 0))
                self._queues.setdefault(str(header["key"]), deque()).append(_Spilled(path, n, seq))
                self._seq = max(self._seq, seq + 1)
                self._waiting += n
                results, others = results + n, others + (not n)
            for key in list(self._queues):
                self._kick(key)
        return results, others

    def keep(self) -> tuple[int, int, int]:
        """After a stop: every queued job into the spill folder, in order. Returns (results kept, other writes
        kept, results lost); a job that cannot be written there is counted lost, and the reason is in
        `failed.lost`."""
        results = others = lost = 0
        with self._cond:
            for key, queue in self._queues.items():
                for entry in queue:
                    if isinstance(entry, Job):
                        if not entry.keepable:
                            continue  # a fold: redone at the sweep's end
                        if entry.path is None:
                            entry.path = self._write(entry.steps, entry.results, entry.seq, key)
                            if entry.path is None:
                                lost += entry.results
                                continue
                    results, others = results + entry.results, others + (not entry.results)
            if lost and self.failed is not None:
                self.failed.lost = f"{count(lost, 'result')} could not be kept ({self._spill_error})"
        return results, others, lost

    def close(self) -> None:
        """After drain() or keep(): stop the threads (a stopped queue does not wait for the ones still retrying)."""
        self._pool.shutdown(wait=self.failed is None, cancel_futures=self.failed is not None)
        if self.health.listener is self:
            self.health.listener = None
        try:  # a spill folder left empty goes
            if self.folder.is_dir() and not any(self.folder.glob("*.job")):
                for path in self.folder.iterdir():
                    path.unlink()
                self.folder.rmdir()
        except OSError:
            pass

    # --- the writer threads ---
    def _kick(self, key: str) -> None:
        """(Under the lock.) Hand the key's next job to the pool unless one is in flight."""
        if key not in self._busy and self.failed is None and self._queues.get(key):
            try:
                self._pool.submit(self._step, key)
            except RuntimeError:  # closed: the job stays queued, and keep() would find it
                return
            self._busy.add(key)

    def _step(self, key: str) -> None:
        with self._cond:
            queue = self._queues.get(key)
            if self.failed is not None or not queue:
                self._busy.discard(key)
                self._cond.notify_all()
                return
            entry = queue[0]  # taken off only once it is written: a stop keeps it
        try:
            job = entry.load() if isinstance(entry, _Spilled) else entry
            outputs = job.run(self.store)
        except BaseException as exc:  # noqa: BLE001 -- every failure stops the queue with one line, no traceback
            self._fail(StorageRefused.of(exc) if not isinstance(exc, StorageError) else exc)
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()
            return
        if job.after is not None:
            try:  # the Recorder's bookkeeping (latencies, trials to fold): never a reason to stop
                job.after(outputs)
            except Exception:  # noqa: BLE001
                pass
        with self._cond:
            if queue and queue[0] is entry:
                queue.popleft()
            if isinstance(entry, Job):
                self._memory -= entry.size
            self._waiting -= entry.results
            self.written += entry.results
            if job.path is not None:
                _unlink(job.path)
            line = self._maybe_back()
            self._busy.discard(key)
            if not queue:
                self._queues.pop(key, None)
            self._kick(key)
            self._cond.notify_all()
        if line:
            self.say([line])

    def _fail(self, error: StorageError) -> None:
        with self._cond:
            if self.failed is None:
                self.failed = error
            self._cond.notify_all()
        self.health.stop(self.failed)

    # --- the outage's two lines (retry.Health calls these) ---
    def storage_down(self, since_wall: float, exc: BaseException) -> None:
        with self._cond:
            earlier = self._outage
            if earlier is None:
                self._outage = dict(since=since_wall, written=self.written, back=None)
            else:  # down again before the earlier backlog was written: one outage, one pair of lines
                earlier["back"] = None
            waiting = self._waiting
        if earlier is None:
            self.say([f"storage unreachable since {time.strftime('%H:%M:%S', time.localtime(since_wall))}, "
                      f"{count(waiting, 'result')} waiting, retrying"])

    def storage_back(self, seconds: float) -> None:
        with self._cond:
            if self._outage is None:
                self._outage = dict(since=time.time() - seconds, written=self.written)
            self._outage.update(back=time.time() - self._outage["since"], target=self.written + self._waiting)
            line = self._maybe_back()
        if line:
            self.say([line])

    def _maybe_back(self) -> str | None:
        """(Under the lock.) The "back" line, once the results that waited through the outage are written."""
        outage = self._outage
        if outage is None or outage["back"] is None or (self.written < outage["target"] and self._waiting):
            return None
        self._outage = None
        return (f"storage back after {outage['back']:.0f} s, "
                f"{count(self.written - outage['written'], 'result')} written")

    # --- the spill folder ---
    def _spill(self, key: str, job: Job) -> _Spilled | None:
        path = self._write(job.steps, job.results, job.seq, key)
        return None if path is None else _Spilled(path, job.results, job.seq, job.after)

    def _write(self, steps, results: int, seq: int, key: str) -> Path | None:
        """One job as `<seq>.job`: a JSON header line, then the pickled steps. None where it cannot be written."""
        path = self.folder / f"{seq:012d}.job"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            about = self.folder / "about.json"
            if not about.exists():
                about.write_text(json.dumps(dict(sweep=self.store.name, uri=self.store.uri)) + "\n")
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as out:
                out.write(json.dumps(dict(key=key, results=results)).encode() + b"\n")
                pickle.dump(steps, out, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError as exc:
            if not self._spill_error:
                self._spill_error = f"{self.folder}: {retry.describe(exc, 80)}"
                self.say([f"warning: cannot spill queued results to {self._spill_error}; keeping them in memory"])
            _unlink(path.with_suffix(".tmp"))
            return None
        return path


def count(n: int, noun: str) -> str:
    """"1 result", "3 results"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _header(path: Path) -> dict:
    with open(path, "rb") as f:
        return json.loads(f.readline())


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _size(obj, depth: int = 0) -> int:
    """Roughly the bytes a job holds: its Arrow tables and byte strings (the rest is small)."""
    if isinstance(obj, pa.Table):
        return obj.nbytes
    if isinstance(obj, (bytes, str)):
        return len(obj)
    if depth > 5:
        return 64
    if isinstance(obj, dict):
        return 64 + sum(_size(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return 16 + sum(_size(v, depth + 1) for v in obj)
    return 16
