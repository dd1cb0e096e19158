"""Shared fixtures: the real CIFAR-10 subset (skipped when absent), tiny generated CIFAR folders, and a
local S3-protocol server (`s3_env`, for tests/test_s3.py and tests/test_cluster.py)."""
from __future__ import annotations

import pickle
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset"


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    if not (SUBSET / "cifar-10-batches-py" / "batches.meta").exists():
        pytest.skip(f"real CIFAR-10 subset not found at {SUBSET} (present in CI, absent in a fresh clone)")
    return SUBSET


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


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        batch = {b"fine_labels": [int(i % 100) for i in range(n)], b"coarse_labels": [int(i % 20) for i in range(n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


@pytest.fixture
def tiny_cifar10(tmp_path) -> Path:
    return write_cifar10(tmp_path / "c10")


@pytest.fixture
def tiny_cifar100(tmp_path) -> Path:
    return write_cifar100(tmp_path / "c100")


# --- a local S3-protocol server --------------------------------------------------------------------

BUCKET = "sweeps"  # created by s3_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """moto's standalone `moto_server` (the test extra's `moto[server]`), its own process on 127.0.0.1 and
    a free port, with the bucket BUCKET; yields the standard AWS variables through which pyarrow and Ray
    reach it, as they would reach a real bucket. Set them in every process that reads or writes s3://."""
    server = shutil.which("moto_server")
    if server is None:
        pytest.fail('moto_server is missing: pip install -e ".[test]" installs moto[server]')
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
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
                          secret_key="testing", region="us-east-1", allow_bucket_creation=True).create_dir(BUCKET)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
