"""Which storage errors are retried, and the retry loop's timing (sweeps/results/retry.py), with a fake clock:
nothing here sleeps. The messages are pyarrow's own, provoked against moto_server (stopped, behind a proxy
that refuses connections, with a missing bucket, and with IAM auth on) and against a full tmpfs."""
from __future__ import annotations

import errno

import pyarrow as pa
import pytest

from sweeps.results import retry
from sweeps.results.retry import (REFUSED, TRANSIENT, Backoff, Health, StorageRefused, StorageUnavailable, call,
                                  classify)

TRANSIENT_ERRORS = [
    OSError("When initiating multiple part upload for key 'x/b.txt' in bucket 'sweeps': AWS Error NETWORK_CONNECTION "
            "during CreateMultipartUpload operation: curlCode: 7, Could not connect to server; Details: Failed to "
            "connect to 127.0.0.1:59943 after 0 ms: Could not connect to server"),
    OSError("When getting information for key 'x/a.txt' in bucket 'sweeps': AWS Error NETWORK_CONNECTION during "
            "HeadObject operation: curlCode: 28, Timeout was reached; Details: Operation too slow. Less than 1 "
            "bytes/sec transferred the last 3 seconds"),
    OSError("When listing objects under key 'x/' in bucket 'sweeps': AWS Error SLOW_DOWN during ListObjectsV2 "
            "operation: Please reduce your request rate."),
    OSError("When uploading part for key 'k' in bucket 'b': AWS Error UNKNOWN (HTTP status 503) during UploadPart "
            "operation: Service Unavailable"),
    OSError("AWS Error SERVICE_UNAVAILABLE during PutObject operation: Service Unavailable"),
    OSError("AWS Error THROTTLING during PutObject operation: Rate exceeded"),
    OSError("Couldn't connect to server"),
    OSError("google::cloud::Status(UNAVAILABLE: Retry policy exhausted)"),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    OSError(errno.ETIMEDOUT, "Connection timed out"),
    TimeoutError("timed out"),
]
REFUSED_ERRORS = [
    OSError("When initiating multiple part upload for key 'x/b.txt' in bucket 'nobucket': AWS Error NO_SUCH_BUCKET "
            "during CreateMultipartUpload operation: The specified bucket does not exist (Request ID: xieB2K)"),
    OSError("When getting information for bucket 'sweeps': AWS Error ACCESS_DENIED during HeadBucket operation: "
            "No response body."),
    OSError("When creating bucket 'sweeps': AWS Error INVALID_ACCESS_KEY_ID during CreateBucket operation: The AWS "
            "Access Key Id you provided does not exist in our records. (Request ID: tES97Z5XD5i3)"),
    OSError("AWS Error UNKNOWN (HTTP status 403) during PutObject operation: Forbidden"),
    OSError("Bucket 'nobucket' not found. To create buckets, enable the allow_bucket_creation option."),
    OSError(errno.ENOSPC, "No space left on device"),
    OSError("Cannot create directory '/r/s'. Detail: [errno 28] No space left on device"),
    OSError(errno.EROFS, "Read-only file system"),
    PermissionError(errno.EACCES, "Permission denied"),
]
NOT_STORAGE = [
    FileNotFoundError(errno.ENOENT, "Path does not exist 'sweeps/x/a.txt'"),
    OSError("When reading 'k' in bucket 'b': AWS Error NO_SUCH_KEY during GetObject operation: no such key"),
    pa.ArrowInvalid("Parquet magic bytes not found in footer"),
    ValueError("bad json"),
    OSError("something else entirely"),
]


@pytest.mark.parametrize("exc", TRANSIENT_ERRORS, ids=lambda e: str(e)[:40])
def test_outages_and_throttling_are_transient(exc):
    assert classify(exc) == TRANSIENT


@pytest.mark.parametrize("exc", REFUSED_ERRORS, ids=lambda e: str(e)[:40])
def test_denied_access_missing_buckets_and_full_disks_are_refused(exc):
    assert classify(exc) == REFUSED


@pytest.mark.parametrize("exc", NOT_STORAGE, ids=lambda e: str(e)[:40])
def test_missing_files_and_bad_data_are_left_to_the_caller(exc):
    assert classify(exc) is None


def test_one_line_descriptions_drop_the_request_id():
    assert retry.describe(REFUSED_ERRORS[0]) == ("AWS Error NO_SUCH_BUCKET during CreateMultipartUpload operation: "
                                                 "The specified bucket does not exist")
    assert retry.describe(TRANSIENT_ERRORS[0]) == ("AWS Error NETWORK_CONNECTION during CreateMultipartUpload "
                                                   "operation: curlCode: 7, Could not connect to server")
    assert retry.describe(OSError(errno.ENOSPC, "No space left on device")) == "[Errno 28] No space left on device"
    assert retry.describe(ValueError("a\nb")) == "ValueError: a"
    full = StorageRefused.of(OSError(errno.ENOSPC, "No space left on device"))
    assert str(full).startswith("the disk under the results is full")
    assert "storage refused a write of x" in str(StorageRefused.of(REFUSED_ERRORS[1], "a write of x"))


def test_backoff_doubles_from_half_a_second_to_fifteen_with_jitter():
    top = Backoff(rng=lambda: 0.999999)
    assert [round(top(), 2) for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    low = Backoff(rng=lambda: 0.0)
    assert [low() for _ in range(3)] == [0.25, 0.5, 1.0]  # each wait between half and all of its step


class Clock:
    """time.monotonic and time.sleep for the retry loop, with no sleeping; `cost` is what each attempt takes."""

    def __init__(self, cost: float = 0.0):
        self.now, self.cost, self.slept = 1000.0, cost, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(clock: Clock, errors: list):
    """A storage operation that raises errors[0], errors[1], ... then returns "ok"; each attempt costs clock.cost."""
    calls = []

    def op():
        calls.append(clock.now)
        clock.now += clock.cost
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"
    op.calls = calls
    return op


def run(op, clock, health, **kw):
    return call(op, health=health, clock=clock, wall=lambda: 1_700_000_000 + clock.now, sleep=clock.sleep,
                rng=lambda: 0.999999, **kw)


def test_transient_errors_are_retried_and_the_outage_gets_two_lines():
    clock, lines = Clock(cost=6.0), []  # pyarrow's S3 client spends about 6 s on a refused connection
    health = Health("s3://b", say=lines.extend)
    op = failing(clock, TRANSIENT_ERRORS[:3])
    assert run(op, clock, health, limit=600) == "ok"
    assert [round(s, 2) for s in clock.slept] == [0.5, 1.0, 2.0] and len(op.calls) == 4
    assert lines[0].startswith("storage unreachable since ") and "retrying" in lines[0]
    assert lines[1] == "storage back after 27 s"  # 3 failed attempts and the good one, 6 s each; 3.5 s of waits
    assert health.since is None


def test_past_the_timeout_it_gives_up_with_storage_unavailable():
    clock = Clock(cost=6.0)
    health = Health("s3://b", say=lambda lines: None)
    op = failing(clock, [TRANSIENT_ERRORS[0]] * 1000)
    with pytest.raises(StorageUnavailable, match=r"storage unreachable for 60 s \(.*NETWORK_CONNECTION"):
        run(op, clock, health, limit=60)
    assert 60 <= clock.now - 1000 <= 60 + 6  # no wait runs past the deadline; the last attempt may
    assert all(s <= 15.0 for s in clock.slept)


def test_the_outage_clock_is_shared_by_every_operation_on_that_storage():
    clock = Clock(cost=5.0)
    health = Health("s3://b", say=lambda lines: None)
    with pytest.raises(StorageUnavailable):
        run(failing(clock, [TRANSIENT_ERRORS[0]] * 1000), clock, health, limit=30)
    started = clock.now
    with pytest.raises(StorageUnavailable):  # the storage has been away for 30 s already: one attempt
        run(failing(clock, [TRANSIENT_ERRORS[0]] * 1000), clock, health, limit=30)
    assert clock.now - started == 5.0 and health.since is not None


def test_refusals_are_not_retried_and_other_errors_pass_through():
    clock = Clock()
    health = Health("s3://b", say=lambda lines: None)
    with pytest.raises(StorageRefused, match="storage refused a listing .*NO_SUCH_BUCKET"):
        run(failing(clock, [REFUSED_ERRORS[0]]), clock, health, what="a listing of x")
    with pytest.raises(FileNotFoundError):
        run(failing(clock, [NOT_STORAGE[0]]), clock, health)
    assert clock.slept == [] and health.since is None


def test_a_retried_delete_that_finds_nothing_was_done_by_the_failed_attempt():
    clock = Clock()
    health = Health("s3://b", say=lambda lines: None)
    gone = FileNotFoundError(errno.ENOENT, "gone")
    assert run(failing(clock, [TRANSIENT_ERRORS[0], gone]), clock, health, gone_ok=True) is None
    with pytest.raises(FileNotFoundError):  # not after a success: then it was never there
        run(failing(clock, [gone]), clock, health, gone_ok=True)


def test_once_the_sweep_is_stopped_every_operation_fails_at_once():
    clock = Clock()
    health = Health("s3://b", say=lambda lines: None)
    stop = StorageUnavailable("storage unreachable for 10 s (x)")
    health.stop(stop)
    op = failing(clock, [])
    with pytest.raises(StorageUnavailable) as raised:
        run(op, clock, health)
    assert raised.value is stop and op.calls == []
    health.reset()
    assert run(op, clock, health) == "ok"


def test_health_is_per_storage_location_and_configure_resets_it(tmp_path):
    assert retry.where("s3://bucket/a/b") == retry.where("s3://bucket/c") == "s3://bucket"
    assert retry.where(str(tmp_path / "a")) != retry.where(str(tmp_path / "b"))
    health = retry.health_of(str(tmp_path))
    health.stop(StorageUnavailable("x"))
    assert retry.stopped() is health.stopped
    retry.configure(42)
    assert retry.timeout() == 42 and retry.stopped() is None and health.stopped is None
    retry.configure()
    assert retry.timeout() == retry.DEFAULT_TIMEOUT
