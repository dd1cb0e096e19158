"""sweeps/results/bulk_delete.py: S3's DeleteObjects, with errors worded so that the retry loop reads them as
it reads pyarrow's. The requests themselves are counted against moto_server in tests/s3/test_requests.py."""
from __future__ import annotations

import botocore.exceptions
import pyarrow.fs as pafs
import pytest

from sweeps.results import bulk_delete, retry
from tests.fixtures import free_port


class Answers:
    """A stand-in for a boto3 client's delete_objects: raises, or answers, as S3 would."""

    def __init__(self, answer=None, error=None):
        self.answer, self.error, self.batches = answer or {}, error, []

    def delete_objects(self, Bucket, Delete):
        self.batches.append((Bucket, [o["Key"] for o in Delete["Objects"]]))
        if self.error is not None:
            raise self.error
        return self.answer


def client_error(code: str, status: int):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "m"},
                                            "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteObjects")


@pytest.mark.parametrize("code, status, kind", [
    ("SlowDown", 503, retry.TRANSIENT), ("ServiceUnavailable", 503, retry.TRANSIENT),
    ("InternalError", 500, retry.TRANSIENT), ("AccessDenied", 403, retry.REFUSED),
    ("NoSuchBucket", 404, retry.REFUSED), ("InvalidAccessKeyId", 403, retry.REFUSED),
    ("MalformedXML", 400, None)])
def test_service_errors_read_as_pyarrows_do(code, status, kind):
    with pytest.raises(OSError) as raised:
        bulk_delete._delete_batch(Answers(error=client_error(code, status)), "b", ["k"])
    assert retry.classify(raised.value) == kind
    assert "\n" not in retry.describe(raised.value)


def test_an_error_on_one_key_in_a_200_answer_is_not_swallowed():
    answers = Answers(answer={"Errors": [{"Key": "k2", "Code": "InternalError", "Message": "try again"}]})
    with pytest.raises(OSError, match="1 of 2 keys not deleted, e.g. k2") as raised:
        bulk_delete._delete_batch(answers, "b", ["k1", "k2"])
    assert retry.classify(raised.value) == retry.TRANSIENT


def test_an_unreachable_endpoint_is_transient_and_fails_at_once():
    """botocore's own retries are off (the retry loop waits with backoff and keeps the outage clock)."""
    fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{free_port()}", scheme="http", access_key="a",
                           secret_key="b", region="us-east-1")
    with pytest.raises(ConnectionError) as raised:
        bulk_delete.deleter(fs)(["bucket/sweep/epochs.parquet/t1/e0001.parquet"])
    assert retry.classify(raised.value) == retry.TRANSIENT


def test_keys_go_in_batches_of_a_thousand_per_bucket(monkeypatch):
    answers = Answers()
    monkeypatch.setattr(bulk_delete, "_client", lambda key: answers)
    fs = pafs.S3FileSystem(endpoint_override="127.0.0.1:1", scheme="http", access_key="a", secret_key="b",
                           region="us-east-1")
    bulk_delete.deleter(fs)([f"b1/k{i}" for i in range(2001)] + ["b2/x/y"])
    assert [(bucket, len(keys)) for bucket, keys in answers.batches] == [("b1", 1000), ("b1", 1000), ("b1", 1),
                                                                         ("b2", 1)]
    assert answers.batches[-1] == ("b2", ["x/y"])


class S3FileSystem:
    """Options as pyarrow's S3FileSystem pickles them (a real one with role_arn asks STS for credentials)."""
    region = "us-east-1"

    def __init__(self, **options):
        self.options = options

    def __reduce__(self):
        return S3FileSystem, (self.options,)


@pytest.mark.parametrize("options", [{"role_arn": "arn:aws:iam::123456789012:role/r"},
                                     {"proxy_options": {"host": "proxy", "port": 3128}},
                                     {"tls_ca_file_path": "/etc/ca.pem"}])
def test_pyarrow_deletes_where_boto3_would_not_be_given_the_same_options(options):
    assert bulk_delete.deleter(S3FileSystem(**options)) is None
    assert bulk_delete.deleter(S3FileSystem(endpoint_override="127.0.0.1:1")) is not None


def test_pyarrow_deletes_on_other_filesystems():
    assert bulk_delete.deleter(pafs.LocalFileSystem()) is None
