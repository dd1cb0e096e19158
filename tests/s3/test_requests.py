"""What a sweep's writes cost in requests on S3 (moto_server, its own process): every file written while a
sweep runs is small, and pyarrow sends it as one PutObject, not as a multipart upload of three requests
(sweeps/results/store.py, `one_request_per_small_write`). A failure that now comes at the write's close
is still one clean error. A trial's start asks about its compacted file with one HEAD, not a listing.
Requests are counted by moto_server's own recorder (its /moto-api/recorder endpoints)."""
from __future__ import annotations

import json
import urllib.request

import boto3
import pyarrow as pa
import pytest

from sweeps.results.retry import StorageRefused
from sweeps.results.store import Store
from tests.conftest import BUCKET


@pytest.fixture
def aws(s3_env, monkeypatch):
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    return s3_env


def test_a_small_write_is_one_put_not_a_multipart_upload(aws):
    store = Store(f"s3://{BUCKET}/requests", "one-put")
    store.write_rows("trials", "t1", [{"trial_id": "t1", "status": "running"}])
    s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_DEFAULT_REGION"],
                      aws_access_key_id=aws["AWS_ACCESS_KEY_ID"], aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"])
    etag = s3.head_object(Bucket=BUCKET, Key="requests/one-put/trials.parquet/t1.parquet")["ETag"].strip('"')
    assert "-" not in etag, f"ETag {etag}: a multipart upload's ends in -<parts>"
    assert store.read_table("trials")["status"].tolist() == ["running"]


def test_a_write_to_a_missing_bucket_is_refused_in_one_line(aws):
    store = Store("s3://no-such-bucket-here/requests", "missing")
    with pytest.raises(StorageRefused) as refused:
        store.write_bytes("sweep.json", b"{}")
    assert "\n" not in str(refused.value) and "bucket" in str(refused.value).lower()


def recorded(aws, action) -> list[tuple[str, str]]:
    """(method, path and query) of each request `action()` sends, as moto_server's recorder saw them."""
    def call(what):
        with urllib.request.urlopen(urllib.request.Request(f"{aws['AWS_ENDPOINT_URL']}/moto-api/recorder/{what}",
                                                           method="POST" if what != "download-recording" else "GET")) as r:
            return r.read().decode()
    call("reset-recording")
    call("start-recording")
    try:
        action()
    finally:
        call("stop-recording")
    entries = [json.loads(line) for line in call("download-recording").splitlines() if line.strip()]
    return [(e["method"], e["url"].split("://", 1)[-1].split("/", 1)[-1]) for e in entries]


def test_a_trial_start_looks_for_its_compacted_file_with_one_head_and_no_listing(aws):
    """pyarrow's get_file_info follows a missing key's HEAD with a LIST, which moto_server answers by walking
    every key in the bucket (docs/benchmarks.md: 3 ms at no keys, 40 ms at 40,000), and every trial asks."""
    store = Store(f"s3://{BUCKET}/requests", "probe")
    assert recorded(aws, lambda: store.expand_trial("t1")) == [("HEAD", "sweeps/requests/probe/epochs.parquet/t1.parquet")]

    epoch = pa.table({"trial_id": ["t2", "t2"], "epoch": [1, 2], "loss": [0.5, 0.25]})
    for e in (1, 2):
        store.write_epoch("epochs", "t2", e, epoch.filter(pa.compute.equal(epoch["epoch"], e)))
    store.compact_trial("t2")
    assert store.files("epochs") == ["t2.parquet"]
    assert store.expand_trial("t2") is True  # found by the same HEAD, and back into epoch files
    assert store.files("epochs") == ["t2/e0001.parquet", "t2/e0002.parquet"]
