"""What tests and benchmarks both set up: tiny CIFAR-format folders, and a local S3-protocol server
(moto's standalone `moto_server`, the test extra's `moto[server]`, its own process on 127.0.0.1 and a free
port, with one bucket), which yields the standard AWS variables through which pyarrow and Ray reach it,
as they would reach a real bucket. It lives with the tests, which own their fixtures; benchmarks import it
from here."""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def write_cifar10(root: Path, per_file: int = 20, num_classes: int = 10, seed: int = 0) -> Path:
    """A CIFAR-10-format folder with `per_file` random images in each of the six batch files."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"batch_label": name.encode(), b"labels": [int(i % num_classes) for i in range(per_file)],
                 b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_file)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"label_names": [f"class{i}".encode() for i in range(num_classes)], b"num_cases_per_batch": per_file}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str):
    server = shutil.which("moto_server")
    if server is None:
        raise RuntimeError('moto_server is missing: pip install -e ".[test]" installs moto[server]')
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="moto-")  # its request recorder's file (tests/s3/test_requests.py)
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "MOTO_RECORDER_FILEPATH": os.path.join(scratch.name, "recording")})
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        env = dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        import pyarrow.fs as pafs
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", access_key="testing",
                          secret_key="testing", region="us-east-1", allow_bucket_creation=True).create_dir(bucket)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a bucket of 30,000 keys held it past 30 s, and the caller's results with it
            proc.kill()
            proc.wait()
        scratch.cleanup()
