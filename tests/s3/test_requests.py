"""What a sweep's writes cost in requests on S3 (moto_server, its own process): every file written while a
sweep runs is small, and pyarrow sends it as one PutObject, not as a multipart upload of three requests
(sweeps/results/store.py, `one_request_per_small_write`). A failure that now comes at the write's close
is still one clean error."""
from __future__ import annotations

import boto3
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
