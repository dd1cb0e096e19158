"""Storage faults: which errors are worth retrying, and the retry loop every Store operation runs in.

    classify(exc)   TRANSIENT  the storage did not answer, or asked us to slow down: retry
                    REFUSED    it answered no, and asking again will not change that: stop (access denied,
                               no such bucket, bad credentials, a full or read-only disk)
                    None       not a storage fault (a missing file, a bad Parquet file): the caller's to handle

Errors are told apart by type and errno first, then by message, since pyarrow raises a plain OSError whose
text carries the AWS SDK's error name: "AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7,
Could not connect to server" (moto_server stopped, or behind a proxy that refuses connections: the AWS SDK has
already retried for about 6 s inside pyarrow), "... curlCode: 28, Timeout was reached" (a server that accepts
and never answers: about 100 s), "AWS Error NO_SUCH_BUCKET ...", "AWS Error ACCESS_DENIED during HeadBucket
operation: No response body.", "AWS Error INVALID_ACCESS_KEY_ID ...", "AWS Error UNKNOWN (HTTP status 503) ...".
A full local disk is OSError errno 28 (ENOSPC): refused, not transient (see sweeps/results/outbox.py for what
the driver does then).

`call(fn)` runs fn, retrying transient errors with exponential backoff (0.5 s doubling to 15 s, each wait drawn
between half and all of that) until the storage has been unreachable for `timeout` seconds (--storage-timeout,
default 600), then raises StorageUnavailable; a refused one raises StorageRefused at once; anything else goes
up unchanged. The outage clock is per storage location and shared by every Store on it in this process
(`Health`): it starts at the first failed attempt and stops at the first success, so a long outage is timed
once, not per operation, and the console gets one line when it starts and one when it ends.

Ray-free and torch-free: sweeps.results imports neither.
"""
from __future__ import annotations

import errno
import random
import re
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_TIMEOUT = 600.0  # seconds of unreachable storage before a sweep stops (--storage-timeout)
FIRST_WAIT, MAX_WAIT = 0.5, 15.0  # seconds: the backoff's first wait and its cap
TRANSIENT, REFUSED = "transient", "refused"

_AWS = re.compile(r"AWS Error (\w+)(?: \(HTTP status (\d+)\))?")
_AWS_TRANSIENT = {"NETWORK_CONNECTION", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "THROTTLING", "REQUEST_TIMEOUT",
                  "INTERNAL_FAILURE"}
_AWS_REFUSED = {"ACCESS_DENIED", "NO_SUCH_BUCKET", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH",
                "INVALID_SIGNATURE", "INCOMPLETE_SIGNATURE", "MISSING_AUTHENTICATION_TOKEN", "UNRECOGNIZED_CLIENT",
                "INVALID_CLIENT_TOKEN_ID", "REQUEST_TIME_TOO_SKEWED", "REQUEST_EXPIRED", "OPT_IN_REQUIRED"}
AWS_NAMED = _AWS_TRANSIENT | _AWS_REFUSED  # the error names classify reads (sweeps/results/bulk_delete.py words errors so)
_ERRNO_TRANSIENT = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
                    errno.EHOSTDOWN, errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.EPIPE, errno.EAGAIN}
_ERRNO_REFUSED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# lower-case message fragments, for errors without a usable type or errno (GCS, HDFS, pyarrow's local errors)
_TEXT_REFUSED = ("access denied", "accessdenied", "forbidden", "permission denied", "permission_denied",
                 "unauthenticated", "nosuchbucket", "no such bucket", "bucket does not exist", "not found. to create",
                 "invalidaccesskeyid", "signaturedoesnotmatch", "no space left on device", "disk quota exceeded",
                 "read-only file system")
_TEXT_TRANSIENT = ("couldn't connect to server", "could not connect to server", "curlcode: 6,", "curlcode: 7,",
                   "curlcode: 28,", "curlcode: 35,", "curlcode: 52,", "curlcode: 55,", "curlcode: 56,",
                   "connection reset", "connection refused", "connection aborted", "broken pipe", "timed out",
                   "timeout was reached", "temporarily unavailable", "service unavailable", "slowdown", "slow down",
                   "throttl", "too many requests", "internalerror", "deadline_exceeded", "unavailable",
                   "resource_exhausted", "http status 5", "network is unreachable", "no route to host")


def classify(exc: BaseException) -> str | None:
    """TRANSIENT, REFUSED or None (not a storage fault) for an exception a storage operation raised."""
    if isinstance(exc, StorageError):
        return REFUSED if isinstance(exc, StorageRefused) else TRANSIENT
    text = str(exc)
    match = _AWS.search(text)
    if match:
        name, status = match.group(1), int(match.group(2) or 0)
        if name in _AWS_TRANSIENT or (name == "UNKNOWN" and (status >= 500 or status in (408, 429))):
            return TRANSIENT
        if name in _AWS_REFUSED or (name == "UNKNOWN" and status in (401, 403)):
            return REFUSED
        return None  # NO_SUCH_KEY, RESOURCE_NOT_FOUND, ...: the caller's
    code = getattr(exc, "errno", None)
    if code in _ERRNO_REFUSED or isinstance(exc, PermissionError):
        return REFUSED
    if code in _ERRNO_TRANSIENT or isinstance(exc, (ConnectionError, TimeoutError)):
        return TRANSIENT
    if isinstance(exc, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)):
        return None
    if not isinstance(exc, OSError):
        return None  # ArrowInvalid, ValueError, ...: data, not storage
    low = text.lower()
    if any(t in low for t in _TEXT_REFUSED):
        return REFUSED
    if any(t in low for t in _TEXT_TRANSIENT):
        return TRANSIENT
    return None


def describe(exc: BaseException, width: int = 160) -> str:
    """An exception as one short line: its first line; of an AWS error, the SDK's error name, operation and
    message, without pyarrow's prefix, the request id or curl's details."""
    if isinstance(exc, StorageError):
        return exc.reason
    text = " ".join(str(exc).split("\n")[0].split()) or type(exc).__name__
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    if "AWS Error " in text:  # the SDK's part says it all; pyarrow's "When ... in bucket ...: " and curl's details go
        text = text[text.index("AWS Error "):].split("; Details:")[0]
    if not isinstance(exc, OSError) or type(exc) is not OSError:
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= width else text[:width - 3] + "..."


class StorageError(Exception):
    """The storage failed in a way this driver does not wait out. One line, ready for `error: ...`."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message
        self.lost = ""  # set where results could not be kept (sweeps/results/outbox.py)


class StorageUnavailable(StorageError):
    """Unreachable for longer than --storage-timeout."""


class StorageRefused(StorageError):
    """A permanent refusal (access denied, no bucket, a full disk), or an unexpected error in a write."""

    @classmethod
    def of(cls, exc: BaseException, what: str = "") -> "StorageRefused":
        if isinstance(exc, StorageRefused):
            return exc
        reason = describe(exc)
        if getattr(exc, "errno", None) == errno.ENOSPC or "no space left on device" in str(exc).lower():
            head = "the disk under the results is full"
        elif classify(exc) == REFUSED:
            head = "storage refused " + (what or "a request")
        else:
            head = "a storage write failed" + (f" ({what})" if what else "")
        return cls(f"{head} ({reason})", reason)


class Backoff:
    """Waits of FIRST_WAIT doubling to MAX_WAIT, each drawn between half and all of that (`rng`: [0, 1))."""

    def __init__(self, first: float = FIRST_WAIT, cap: float = MAX_WAIT, rng=random.random):
        self.next_wait, self.cap, self.rng = first, cap, rng

    def __call__(self) -> float:
        wait = self.next_wait * (0.5 + 0.5 * self.rng())
        self.next_wait = min(self.next_wait * 2, self.cap)
        return wait


class Health:
    """Whether one storage location answers, shared by every Store on it in this process.

    `since` (time.monotonic) is when the current outage began, None while the storage answers; `stopped` is
    the StorageError that stopped the sweep (Outbox), after which every operation fails at once. `listener`
    (the Recorder's Outbox while a sweep runs) prints the outage's lines with its queue counts; without one,
    `say` prints them plain."""

    def __init__(self, where: str, say=None):
        self.where = where
        self.since: float | None = None
        self.since_wall = 0.0
        self.error: BaseException | None = None
        self.stopped: StorageError | None = None
        self.listener = None
        self.say = say
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # wakes the retry loops' waits when the sweep stops

    def reset(self) -> None:
        with self._lock:
            self.since, self.error, self.stopped = None, None, None
            self._stopping.clear()

    def pause(self, seconds: float) -> None:
        """A backoff wait, cut short when the sweep stops."""
        self._stopping.wait(seconds)

    def failing(self, exc: BaseException, started: float, started_wall: float) -> float:
        """A transient failure of an attempt begun at `started`; returns when this outage began."""
        with self._lock:
            self.error = exc
            if self.since is not None:
                return self.since
            self.since, self.since_wall = started, started_wall
        listener = self.listener
        if listener is not None:
            listener.storage_down(started_wall, exc)
        else:
            self._say(f"storage unreachable since {time.strftime('%H:%M:%S', time.localtime(started_wall))}, "
                      f"retrying ({describe(exc, 100)})")
        return started

    def answered(self, now: float) -> None:
        """A success: ends the outage, if there was one."""
        with self._lock:
            since, self.since = self.since, None
        if since is None:
            return
        listener = self.listener
        if listener is not None:
            listener.storage_back(now - since)
        else:
            self._say(f"storage back after {now - since:.0f} s")

    def stop(self, error: StorageError) -> None:
        with self._lock:
            self.stopped = self.stopped or error
        self._stopping.set()

    def _say(self, line: str) -> None:
        if self.say is not None:
            self.say([line])
        else:
            from sweeps.results.progress import emit
            emit([line])


_health: dict[str, Health] = {}
_registry_lock = threading.Lock()
_settings = {"timeout": DEFAULT_TIMEOUT}


def where(storage: str) -> str:
    """The storage location an outage is about: scheme and bucket (or host) of a URI; a local --storage root
    as itself (a stop on one folder does not fail another process-wide: tests run many in one process)."""
    if "://" not in str(storage):
        return str(Path(storage).expanduser().resolve())
    url = urlparse(str(storage))
    return f"{url.scheme}://{url.netloc}"


def health_of(storage: str) -> Health:
    key = where(storage)
    with _registry_lock:
        if key not in _health:
            _health[key] = Health(key)
        return _health[key]


def configure(timeout: float = DEFAULT_TIMEOUT) -> None:
    """This process's --storage-timeout; forgets earlier outages and stops (the runner calls it once)."""
    _settings["timeout"] = float(timeout)
    with _registry_lock:
        for health in _health.values():
            health.reset()


def timeout() -> float:
    return _settings["timeout"]


def stopped() -> StorageError | None:
    """The error that stopped a sweep in this process, if one did (read by the engine's last callback)."""
    with _registry_lock:
        return next((h.stopped for h in _health.values() if h.stopped is not None), None)


def call(fn, *args, health: Health, what: str = "", gone_ok: bool = False, limit: float | None = None,
         clock=time.monotonic, wall=time.time, sleep=None, rng=random.random):
    """fn(*args), retrying transient storage errors (module docstring). `gone_ok`: a delete, for which a
    FileNotFoundError after a failed attempt means the failed attempt did delete it. `limit`: the timeout
    (default: configure's)."""
    if health.stopped is not None:
        raise health.stopped
    backoff = None
    while True:
        started = clock()
        try:
            result = fn(*args)
        except Exception as exc:
            if gone_ok and backoff is not None and isinstance(exc, FileNotFoundError):
                result = None
            else:
                kind = classify(exc)
                if kind is None:
                    raise
                if kind == REFUSED:
                    raise StorageRefused.of(exc, what) from None
                since = health.failing(exc, started, wall() - (clock() - started))
                now = clock()
                left = since + (timeout() if limit is None else limit) - now
                if left <= 0 or health.stopped is not None:
                    if health.stopped is not None:
                        raise health.stopped from None
                    waited = (timeout() if limit is None else limit)
                    raise StorageUnavailable(f"storage unreachable for {waited:.0f} s ({describe(exc)})",
                                             describe(exc)) from None
                backoff = backoff or Backoff(rng=rng)
                (sleep or health.pause)(max(0.0, min(backoff(), left)))
                if health.stopped is not None:
                    raise health.stopped from None
                continue
        if health.since is not None:
            health.answered(clock())
        return result
