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


def listings(requests) -> list:
    return [r for r in requests if r[0] == "GET" and "list-type" in r[1]]


def test_a_compaction_deletes_its_epoch_files_by_name_in_one_request_with_no_listing(aws):
    """pyarrow deletes a folder by listing it, once per table; the Recorder knows which files it wrote, and
    S3's DeleteObjects takes them all at once and leaves no folder marker behind."""
    store = Store(f"s3://{BUCKET}/requests", "compact")
    written = {}
    for table in ("epochs", "layers"):
        for e in (1, 2):
            rows = pa.table({"trial_id": ["t3"], "epoch": [e], "loss": [1.0 / e]})
            store.write_epoch(table, "t3", e, rows)
            written.setdefault(table, {})[e] = rows
    requests = recorded(aws, lambda: store.compact_trial("t3", written))
    assert listings(requests) == []
    assert [r for r in requests if r[0] in ("POST", "DELETE")] == [("POST", f"{BUCKET}?delete")]
    assert store.files("epochs") == ["t3.parquet"] and store.files("layers") == ["t3.parquet"]
    s3 = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name=aws["AWS_DEFAULT_REGION"])
    left = s3.list_objects_v2(Bucket=BUCKET, Prefix="requests/compact/")
    assert sorted(k["Key"] for k in left.get("Contents", [])) == [
        "requests/compact/epochs.parquet/t3.parquet", "requests/compact/layers.parquet/t3.parquet"]
    assert store.read_trial("epochs", "t3")["epoch"].tolist() == [1, 2]


def test_a_fold_deletes_the_trials_files_in_one_request_per_table(aws):
    store = Store(f"s3://{BUCKET}/requests", "fold")
    ids = [f"t{i}" for i in range(5)]
    copies = {"trials": {}, "epochs": {}}
    for trial_id in ids:
        copies["trials"][trial_id] = pa.table({"trial_id": [trial_id], "status": ["completed"]})
        copies["epochs"][trial_id] = pa.table({"trial_id": [trial_id], "epoch": [1], "loss": [0.5]})
        for table in copies:
            store.write_table(table, trial_id, copies[table][trial_id])
    requests = recorded(aws, lambda: store.fold(ids, copies, refolds=False))
    assert listings(requests) == []
    assert [r for r in requests if r[0] in ("POST", "DELETE", "HEAD")] == [("POST", f"{BUCKET}?delete")] * 2
    assert [f.startswith("part-") for f in store.files("epochs")] == [True]
    assert sorted(store.read_table("trials")["trial_id"]) == ids
