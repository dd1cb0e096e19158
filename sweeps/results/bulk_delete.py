"""Deleting files whose names are known, on S3, in one request per thousand.

pyarrow deletes one S3 file with three requests (a HEAD, the DELETE, then a PUT of an empty marker for
the parent folder), and a folder only by listing it first (`delete_dir`). A sweep deletes known files all
the time: a trial's epoch files when it is compacted, 256 trials' compacted files at each fold. S3's
DeleteObjects takes up to 1,000 named keys in one request and leaves no marker. boto3 sends it, built
from the pyarrow filesystem's own options (endpoint, region, credentials), so both talk to the same place.

A listing also costs more than it looks: moto_server, the S3 server the tests and benchmarks run on,
answers one by walking every key in the bucket (docs/benchmarks.md), so a listing per trial made a
10,000-trial sweep slower per trial the longer it ran.

Errors come back as the exceptions sweeps/results/retry.py already classifies: an unreachable endpoint
as ConnectionError (waited out), a service error as an OSError worded like pyarrow's ("AWS Error
ACCESS_DENIED (HTTP status 403) ..."). botocore's own retries are off: the retry loop owns them.
"""
from __future__ import annotations

import re
import threading
from typing import Callable

from sweeps.results import retry

BATCH = 1000  # DeleteObjects' limit
_clients: dict[tuple, object] = {}
_lock = threading.Lock()


def deleter(fs) -> Callable[[list[str]], None] | None:
    """A function deleting "bucket/key" paths on this S3 filesystem in DeleteObjects batches, or None where
    pyarrow must do it itself: not S3, boto3 missing, or options boto3 is not given here (an assumed role,
    a proxy, a CA file)."""
    if type(fs).__name__ != "S3FileSystem":
        return None
    try:
        import boto3  # noqa: F401
    except ImportError:
        return None
    options = fs.__reduce__()[1][-1]
    if options.get("role_arn") or (options.get("proxy_options") or {}).get("host") or options.get("tls_ca_file_path"):
        return None
    key = (options.get("endpoint_override") or "", options.get("scheme") or "https", fs.region or "",
           options.get("access_key"), options.get("secret_key"), options.get("session_token"),
           bool(options.get("anonymous")), options.get("connect_timeout", -1), options.get("request_timeout", -1))

    def delete(paths: list[str]) -> None:
        by_bucket: dict[str, list[str]] = {}
        for path in paths:
            bucket, _, name = path.partition("/")
            by_bucket.setdefault(bucket, []).append(name)
        client = _client(key)
        for bucket, names in by_bucket.items():
            for start in range(0, len(names), BATCH):
                _delete_batch(client, bucket, names[start:start + BATCH])
    return delete


def _client(key: tuple):
    with _lock:  # a boto3 Session is not thread-safe; its clients are
        if key not in _clients:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            endpoint, scheme, region, access, secret, token, anonymous, connect, request = key
            if endpoint and "://" not in endpoint:
                endpoint = f"{scheme}://{endpoint}"
            config = Config(retries={"max_attempts": 1, "mode": "standard"},
                            connect_timeout=connect if connect > 0 else 5,
                            read_timeout=request if request > 0 else 30,
                            **({"signature_version": UNSIGNED} if anonymous else {}))
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=endpoint or None, region_name=region or None, aws_access_key_id=access,
                aws_secret_access_key=secret, aws_session_token=token, config=config)
        return _clients[key]


def _delete_batch(client, bucket: str, names: list[str]) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as Unreachable, HTTPClientError
    from botocore.exceptions import NoCredentialsError

    try:
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": n} for n in names], "Quiet": True})
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        raise aws_error(error.get("Code", ""), status, error.get("Message", str(exc))) from None
    except NoCredentialsError as exc:
        raise aws_error("AccessDenied", 403, str(exc)) from None
    except (Unreachable, HTTPClientError) as exc:  # could not connect, a timeout, a dropped connection
        raise ConnectionError(f"S3 DeleteObjects: {exc}") from None
    except BotoCoreError as exc:
        raise OSError(f"S3 DeleteObjects: {exc}") from None
    failed = answer.get("Errors") or []
    if failed:  # per key, in a 200 answer: e.g. AccessDenied on one, InternalError on another
        first = failed[0]
        raise aws_error(first.get("Code", ""), 0, f"{len(failed)} of {len(names)} keys not deleted, "
                        f"e.g. {first.get('Key')}: {first.get('Message', '')}")


def aws_error(code: str, status: int, message: str) -> OSError:
    """An S3 error worded as pyarrow words it, so that retry.classify reads it the same way. A code
    retry.py does not name is UNKNOWN with its HTTP status (5xx: waited out); a per-key error has no
    status of its own, and counts as a 500."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", code).upper()
    if name not in retry.AWS_NAMED:
        name, status = "UNKNOWN", status or 500
    return OSError(f"AWS Error {name} (HTTP status {status}) during DeleteObjects operation: {message}")
