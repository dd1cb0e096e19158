"""Shared fixtures: the real CIFAR-10 subset (skipped when absent), tiny generated CIFAR folders, and a
local S3-protocol server (`s3_env`, for tests/s3/test_s3.py and tests/s3/test_cluster.py)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import free_port, moto_s3, write_cifar10  # noqa: F401  (tests import them from here)

REPO = Path(__file__).resolve().parents[1]
SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset"


@pytest.fixture(scope="session")
def subset_dir() -> Path:
    if not (SUBSET / "cifar-10-batches-py" / "batches.meta").exists():
        pytest.skip(f"real CIFAR-10 subset not found at {SUBSET} (present in CI, absent in a fresh clone)")
    return SUBSET


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


@pytest.fixture(scope="module")
def ray_local():
    """A private Ray of 2 CPUs for the tests of one module that drive Tune directly (not through the runner)."""
    import ray
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # as the runner: no Tune loggers, faster trials
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
        yield
        ray.shutdown()


@pytest.fixture(scope="module")
def s3_env():
    """moto_server in its own process (tests/fixtures.py) with the bucket BUCKET; yields the AWS
    variables. Set them in every process that reads or writes s3://."""
    try:
        with moto_s3(BUCKET) as env:
            yield env
    except RuntimeError as exc:  # not installed, or it would not start: a failure, never a skip
        pytest.fail(str(exc))


def pytest_collection_modifyitems(items):
    """Markers from what a test needs, so they cannot drift from it: `s3` for every test that starts the
    local S3 server, `browser` for the ones that drive Chromium (`-m "not s3 and not browser"` leaves out both)."""
    for item in items:
        if "s3_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.s3)
        if "chromium" in item.name:
            item.add_marker(pytest.mark.browser)
