"""One driver per sweep: a lease on the sweep folder, local or on a URI (no Ray, no torch).

A driver holds the lease from its checks until it ends. The lease is a small JSON file in the sweep folder,

    <sweep>/lease-<seq>.json    {"driver": uuid, "host", "pid", "started", "heartbeat", "beat", ...}

renewed by a daemon thread every HEARTBEAT_S (2 s): `heartbeat` is the holder's wall-clock time of its last
renewal, `beat` counts renewals. A lease whose heartbeat is STALE_S old (6 s: 3 missed heartbeats) is stale:
its driver is taken to be dead.

Generations. `seq` numbers the holders: taking the lease over from generation N means creating
`lease-<N+1>.json`, the highest generation is the holder, and a holder never writes any file but its own.
So a takeover never races the old holder's renewals: the old holder's next renewal sees a higher
generation (or its own file gone) and marks the lease lost, and `check()` raises LeaseLost from then on.

Acquiring (Lease.acquire):
  - no lease: create generation 1 (or the next one), exclusively;
  - a live lease (its heartbeat moves): refused with LeaseHeld (a ConfigError: one line, exit 2), naming
    the holder's host, pid and heartbeat age. Telling live from dead takes watching: a driver killed a
    moment ago has a fresh heartbeat too. The lease is watched for up to one heartbeat (WATCH_S); a live
    holder renews within it, so a refusal comes within about HEARTBEAT_S. The runner takes its first look
    (sight()) before its checks, which take seconds (torch's import), so that a second driver is refused
    before them, and a dead driver's lease is watched while they run;
  - a stale lease, with --resume: taken over once it has not moved for WATCH_S and its heartbeat is
    STALE_S old (by the holder's clock, or by ours while watching: a skewed clock alone never makes a live
    lease stale, or keeps a dead one live for longer than STALE_S); one line says so;
  - --resume --force: a live lease is taken over at once, after a warning line on stderr. The old holder
    stops writing at its next renewal, within HEARTBEAT_S: that much overlap remains, by design of --force.

Racing takeovers. Two drivers racing for a free or stale lease create the same generation, and only one
may win:
  - local disk: the file is written under a private temporary name and hard-linked to its final name
    (os.link fails if the name exists: an exclusive create that also never shows a half-written file;
    O_CREAT|O_EXCL where the filesystem has no hard links). Exactly one racer wins; the others read the
    winner's fresh lease and are refused. No window remains.
  - object stores (S3, GCS through pyarrow) and other remote filesystems: write-then-verify. S3 itself has
    conditional writes (PUT with If-None-Match: *), but pyarrow's filesystem API does not expose them, so
    a racer checks that the generation does not exist, writes its claim, waits SETTLE_S (1 s), reads the
    file back, and owns the lease only if the driver id read back is its own. Every racer reads back the
    same last write (S3 is strongly consistent), so one wins, unless a racer stalls for more than SETTLE_S
    between its existence check and its write: that racer and the first both believe they hold the lease
    until the next renewal of either, which reads the file, finds the other's id and stops (within
    HEARTBEAT_S). That is the window that remains on object stores. The renewal itself is a read and a
    write, not atomic either: a same-generation holder paused between the two can overwrite the other's
    file, and then the other's next renewal finds it lost. Within a heartbeat, one holder remains.

Checks are cheap: `check()` reads the heartbeat thread's in-memory state, not storage (the Recorder calls it
before every write; `check(strict=True)`, before a fold or the sweep's close, renews first when the
thread has not confirmed the lease for 1.5 heartbeats). The runner registers the lease it holds by the
store's URI (`held`), so the Recorder, which Ray pickles with the experiment, finds it without holding it.

What a lease cannot stop: a holder that cannot renew for STALE_S (a process paused that long, storage
unreachable) looks dead and may be taken over; it finds out at its next renewal and stops writing then. A
lost driver's Ray workers may still write a checkpoint into Ray's folder (tune/) before the driver stops
them. The clocks of the hosts are assumed to agree to within a few seconds (watching covers a larger skew,
at the cost of waiting up to STALE_S).
"""
from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow.fs as pafs

from sweeps.results.retry import StorageError
from sweeps.results.store import Store
from trainables.errors import ConfigError

HEARTBEAT_S = 2.0  # the holder renews its lease this often
STALE_S = 3 * HEARTBEAT_S  # 6 s: a lease this long without a heartbeat is stale (3 missed heartbeats)
WATCH_S = 1.25 * HEARTBEAT_S  # how long acquire() watches a lease for a heartbeat before it may call it stale
POLL_S = 0.25  # how often acquire() reads a lease it watches
SETTLE_S = 1.0  # object stores: how long a claim settles before it is read back (write-then-verify)
PREFIX, NAME = "lease-", re.compile(r"^lease-(\d+)\.json$")

_HELD: dict[str, "Lease"] = {}  # store URI -> the lease this process holds on it (see held())


class LeaseHeld(ConfigError):
    """Another driver holds the sweep's lease: the runner prints this one line and exits 2."""


class LeaseLost(RuntimeError):
    """Another driver took the lease over (--resume --force, or after this one went silent): stop writing."""


@dataclass(frozen=True)
class Holder:
    """A lease as read from storage: who holds it, and how old its heartbeat is (by this host's clock)."""
    seq: int
    driver: str
    host: str
    pid: int | None
    started: str
    heartbeat: float
    beat: int
    age: float

    @property
    def stale(self) -> bool:
        return self.age >= STALE_S

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, last heartbeat {self.age:.1f} s ago"


def read(store: Store) -> Holder | None:
    """The sweep's current lease (the highest generation), or None where no driver holds one."""
    for _ in range(3):  # the newest file can go between the listing and the read (a release): list again
        seqs = _generations(store)
        if not seqs:
            return None
        holder = _read(store, seqs[-1])
        if holder is not None:
            return holder
    return None


def held(uri: str) -> "Lease | None":
    """The lease this process holds on the sweep at `uri` (Store.uri), if any."""
    return _HELD.get(uri)


def check(uri: str, strict: bool = False) -> None:
    """Raise LeaseLost where this process held the sweep's lease and lost it; nothing where it holds none."""
    lease = _HELD.get(uri)
    if lease is not None:
        lease.check(strict)


def lost(uri: str, strict: bool = False) -> bool:
    """Whether this process held the sweep's lease and lost it (`strict`: as Lease.check)."""
    lease = _HELD.get(uri)
    return lease is not None and lease.confirm_lost(strict)


class Sighting(NamedTuple):
    key: tuple  # (seq, driver, beat) of the lease seen
    at: float  # time.monotonic() when it was seen


def sight(storage: str, name: str, force: bool = False) -> Sighting | None:
    """A first look at the lease of the sweep `<storage>/<name>`, before the driver's checks (which take
    seconds: torch's import), for acquire(seen=...). A lease that looks live (a heartbeat younger than
    STALE_S) is watched for up to WATCH_S here: if it moves, its driver is alive and this one is refused at
    once (LeaseHeld), seconds sooner than after the checks. With `force`, or a stale-looking lease, nothing
    is watched here. None where there is no lease or it cannot be read (a bad name, storage unreachable: the
    checks that follow say so)."""
    try:
        store = Store(storage, name)
        holder = read(store)
    except Exception:
        return None
    if holder is None:
        return None
    seen = Sighting((holder.seq, holder.driver, holder.beat), time.monotonic())
    while not force and not holder.stale and time.monotonic() - seen.at < WATCH_S:
        time.sleep(POLL_S)
        try:
            now = read(store)
        except (OSError, StorageError):
            return seen
        if now is None:  # released: the sweep's driver ended
            return None
        if (now.seq, now.driver, now.beat) != seen.key:  # a heartbeat (or a new holder): a live driver
            raise LeaseHeld(_held_message(store, now))
    return seen


def refuse_if_held(store: Store) -> None:
    """Raise LeaseHeld where a driver with a live heartbeat holds the sweep (one read, no watching): the
    runner asks this when a check fails, so that a sweep still starting up is named as running."""
    try:
        holder = read(store)
    except (OSError, StorageError):
        return
    if holder is not None and not holder.stale:
        raise LeaseHeld(_held_message(store, holder))


class Lease:
    """This driver's lease on one sweep. Lease.acquire() returns it held, with its heartbeat running."""

    def __init__(self, store: Store, new: bool):
        self.store, self.new = store, new  # new: acquired for a new sweep (release removes an empty folder)
        # the local folders above the sweep's that its lease will create: an empty one goes again at release
        self.made_parents = _missing_parents(store.root) if store.local else []
        self.id = uuid.uuid4().hex
        self.seq = 0
        self.beat = 0
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.lost = False
        self.taken_by: Holder | None = None  # who holds it after this driver lost it, where known
        self.confirmed = 0.0  # time.monotonic() of the last renewal that found the lease still ours
        self._lock = threading.Lock()  # renew() from the heartbeat thread and from check(strict=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    # --- acquiring ---
    @classmethod
    def acquire(cls, store: Store, force: bool = False, resume: bool = False, say=None,
                seen: "Sighting | None" = None) -> "Lease":
        """The sweep's lease for this driver, or LeaseHeld. `resume`: a --resume may take over a stale lease;
        `force` (only with resume): it takes over a live one too, after a warning. `say` prints a line
        (default: to stderr). `seen`: sight()'s look at the lease before the driver's checks, so that the
        watching for a heartbeat overlaps them (the runner's checks take seconds: torch's import)."""
        if force and not resume:
            raise ConfigError("--force takes over the lease of a sweep another driver runs: use it with --resume")
        say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        me = cls(store, new=not resume)
        # (seq, driver, beat) of the lease being watched, and since when (time.monotonic()) it has not moved
        watched, since = (seen.key, seen.at) if seen is not None else (None, 0.0)
        raced = False  # a claim of ours lost to another driver's
        warned = False
        for _ in range(int(10 * STALE_S / POLL_S) + 100):  # bounded: a lease unchanged for STALE_S is stale
            top = read(store)
            if top is None:
                if me._claim(1):
                    return me._start()
                raced = True
                continue
            key = (top.seq, top.driver, top.beat)
            now = time.monotonic()
            if raced or (watched is not None and watched[:2] != key[:2]):  # another driver claimed it first
                raise LeaseHeld(_held_message(store, top))
            if watched is None or watched != key:
                if watched is not None and not force:  # its heartbeat moved: the holder is alive
                    raise LeaseHeld(_held_message(store, top))
                watched, since = key, now
            if force:
                if not warned and not top.stale:
                    say(f"warning: --force: taking over the lease of sweep {store.name!r} from a driver that is "
                        f"still running ({top.describe()}); it stops writing at its next heartbeat, within "
                        f"{HEARTBEAT_S:g} s")
                    warned = True
                if me._claim(top.seq + 1):
                    if top.stale:
                        say(f"note: took over the lease of a driver that stopped ({top.describe()})")
                    return me._start()
                raced = True
                continue
            if not resume:
                raise LeaseHeld(_held_message(store, top))
            still = now - since
            if still >= WATCH_S and (top.stale or still >= STALE_S):
                if me._claim(top.seq + 1):
                    say(f"note: took over the lease of a driver that stopped ({top.describe()})")
                    return me._start()
                raced = True
                continue
            time.sleep(POLL_S)
        raise LeaseHeld(_held_message(store, top))

    def _record(self) -> bytes:
        return json.dumps(dict(driver=self.id, host=socket.gethostname(), pid=os.getpid(), started=self.started,
                               heartbeat=time.time(), beat=self.beat, sweep=self.store.name, seq=self.seq),
                          indent=2).encode()

    def _claim(self, seq: int) -> bool:
        """Create generation `seq` holding this driver's record, if no other driver does first."""
        self.seq, self.beat = seq, 0
        store, name = self.store, f"{PREFIX}{seq:06d}.json"
        if store.local:
            return _create_exclusive(store.root, name, self._record())
        if store.fs.get_file_info(store.path(name)).type != pafs.FileType.NotFound:
            return False
        store.write_bytes(name, self._record())  # write-then-verify: see the module's docstring
        time.sleep(SETTLE_S)
        back = _read(store, seq)
        return back is not None and back.driver == self.id

    def _start(self) -> "Lease":
        """Held: tidy older generations away, register it, start the heartbeat."""
        self.confirmed = time.monotonic()
        for seq in _generations(self.store):
            if seq < self.seq:
                _delete(self.store, seq)
        _HELD[self.store.uri] = self
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.store.name}", daemon=True)
        self._thread.start()
        return self

    # --- holding ---
    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self.renew():
                    return
                self._failing = False
            except (OSError, StorageError) as exc:  # storage unreachable: try again at the next beat
                if not self._failing:
                    print(f"warning: could not renew the lease of sweep {self.store.name!r} ({exc}); retrying",
                          file=sys.stderr, flush=True)
                self._failing = True

    def renew(self) -> bool:
        """One heartbeat: True while the lease is still this driver's; False (and `lost`) once another driver
        holds a higher generation, or this generation's file names another driver, or it is gone while the
        sweep's sweep.json is not. StorageError where both are gone: storage wiped, not a takeover."""
        with self._lock:
            if self.lost or self._stop.is_set():
                return not self.lost
            seqs = _generations(self.store)
            top = max(seqs) if seqs else None
            mine = _read(self.store, self.seq) if self.seq in seqs else None
            if top is not None and top > self.seq:
                return self._lose(_read(self.store, top))
            if top is None and self.store.read_bytes("sweep.json") is None:
                # Nothing of the sweep is left, not even its record: storage was deleted or reset under it (a
                # successor that ran the sweep would have left sweep.json). An outage, not a takeover: the
                # writes fail too, and the driver keeps what it could not write instead of stopping quietly.
                raise StorageError(f"sweep {self.store.name!r}: its lease and sweep.json are gone from "
                                   f"{self.store.uri} (storage deleted or reset?)")
            if mine is None or mine.driver != self.id:
                return self._lose(mine)
            self.beat += 1
            _write(self.store, f"{PREFIX}{self.seq:06d}.json", self._record())
            self.confirmed = time.monotonic()
            return True

    def _lose(self, holder: Holder | None) -> bool:
        self.lost, self.taken_by = True, holder
        return False

    def check(self, strict: bool = False) -> None:
        """Raise LeaseLost once another driver holds the lease (see confirm_lost)."""
        if self.confirm_lost(strict):
            raise LeaseLost(self.lost_message())

    def confirm_lost(self, strict: bool = False) -> bool:
        """Whether another driver holds the lease. In memory, unless `strict` and the heartbeat has not
        confirmed the lease for 1.5 heartbeats: then renew now (before a fold or the sweep's close)."""
        if strict and not self.lost and time.monotonic() - self.confirmed > 1.5 * HEARTBEAT_S:
            try:
                self.renew()
            except (OSError, StorageError):
                pass  # storage unreachable: the write that follows fails too
        return self.lost

    def lost_message(self) -> str:
        by = f" (host {self.taken_by.host}, pid {self.taken_by.pid})" if self.taken_by is not None else ""
        return (f"sweep {self.store.name!r}: another driver{by} took over this sweep's lease; this driver stopped "
                "without folding or deleting anything, and the other one continues the sweep")

    def release(self) -> None:
        """The end of the driver: stop the heartbeat and delete the lease file, if it is still ours. A new
        sweep that wrote nothing else leaves no folder behind (as before it had a lease)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if _HELD.get(self.store.uri) is self:
            del _HELD[self.store.uri]
        if self.lost or not self.seq:
            return
        store = self.store
        try:
            mine = _read(store, self.seq)
            if mine is not None and mine.driver == self.id:
                _delete(store, self.seq)
            if self.new and not _generations(store) and store.read_bytes("sweep.json") is None:
                _remove_if_empty(store, self.made_parents)
        except (OSError, StorageError):
            pass  # a lease left behind goes stale, and --resume takes it over


def _held_message(store: Store, holder: Holder) -> str:
    return (f"sweep {store.name!r} is being run by another driver ({holder.describe()}); wait for it, or if it is "
            f"dead, --resume takes over after {STALE_S:g} s without a heartbeat (--resume --force takes over now)")


# --- storage: local files through os (exclusive create), anything else through the Store's filesystem ---

def _generations(store: Store) -> list[int]:
    if store.local:
        try:
            names = os.listdir(store.root)
        except FileNotFoundError:
            return []
    else:
        infos = store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True))
        names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    return sorted(int(m.group(1)) for m in map(NAME.match, names) if m)


def _read(store: Store, seq: int) -> Holder | None:
    name = f"{PREFIX}{seq:06d}.json"
    for attempt in range(3):
        data = store.read_bytes(name)
        if data is None:
            return None
        try:
            record = json.loads(data)
            break
        except ValueError:  # a file being created without a hard link (O_EXCL, then written): read it again
            time.sleep(0.05)
    else:
        record = {}
    heartbeat = float(record.get("heartbeat", 0.0))
    return Holder(seq=seq, driver=str(record.get("driver", "")), host=str(record.get("host", "?")),
                  pid=record.get("pid"), started=str(record.get("started", "")), heartbeat=heartbeat,
                  beat=int(record.get("beat", 0)), age=max(0.0, time.time() - heartbeat))


def _create_exclusive(root: str, name: str, data: bytes) -> bool:
    """Local disk: `root/name` holding `data`, created only if it does not exist (see the module's docstring)."""
    os.makedirs(root, exist_ok=True)
    final, tmp = f"{root}/{name}", f"{root}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as out:
        out.write(data)
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except (OSError, StorageError):  # no hard links here (some network or FUSE filesystems): O_EXCL
        try:
            fd = os.open(final, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return True
    finally:
        os.unlink(tmp)


def _write(store: Store, name: str, data: bytes) -> None:
    if store.local:  # a temporary file renamed over the old one: readers see one or the other
        tmp = f"{store.root}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as out:
            out.write(data)
        os.replace(tmp, f"{store.root}/{name}")
    else:
        store.write_bytes(name, data)


def _delete(store: Store, seq: int) -> None:
    try:
        store.fs.delete_file(store.path(f"{PREFIX}{seq:06d}.json"))
    except FileNotFoundError:
        pass


def _missing_parents(root: str) -> list[str]:
    """The folders above `root` that do not exist yet, deepest first."""
    missing, folder = [], os.path.dirname(root)
    while folder and not os.path.exists(folder) and folder != os.path.dirname(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _remove_if_empty(store: Store, made_parents=()) -> None:
    """A new sweep's folder that holds nothing (its driver stopped before it wrote anything but the lease), and
    the empty folders above it that its lease made (--storage ./results on a first, refused run)."""
    if store.local:
        for folder in (store.root, *made_parents):
            try:
                os.rmdir(folder)
            except (OSError, StorageError):
                break  # not empty, or gone
        return
    # an object store: deleting the lease left an empty "folder" marker, which Store.exists() would see
    if not store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True, recursive=True)):
        store.fs.delete_dir(store.root)
