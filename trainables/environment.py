"""What a process computes with: library versions, CPU and GPU, and a short id for that set.

Numbers from two sweeps can differ because torch, cuDNN or the CPU's vector unit did, not the code; the
git SHA alone cannot tell. The driver records its environment in sweep.json, and every trial reports the
env_id of the worker that ran it, since on a cluster that can be another node with another GPU. This module
sits in `trainables` because Ray workers call it, and trainables may not import the engine (`sweeps`).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata

# Read from package metadata: a version should not cost importing pyarrow or pandas into a worker, and a module's
# __version__ would make the record depend on what the process happened to import (torchvision's says
# 0.29.1+cu130, its metadata 0.29.1), so driver and workers would disagree.
PACKAGES = ("torchvision", "ray", "numpy", "pandas", "pyarrow")
FIELDS = ("python", "torch", "cuda", "cudnn", *PACKAGES, "cpu", "cpu_capability", "aten_cpu_capability", "gpus",
          "os")


def collect() -> dict:
    """This process's environment: FIELDS plus its env_id. Computed once per process (a reused Ray actor
    pays for it once); a copy, so callers may change it."""
    env = _collect()
    return {**env, "gpus": list(env["gpus"])}


@functools.lru_cache(maxsize=1)
def _collect() -> dict:
    import torch
    env = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=_cudnn(torch), **{name: _version(name) for name in PACKAGES}, cpu=_cpu_model(),
               cpu_capability=_cpu_capability(torch), aten_cpu_capability=os.environ.get("ATEN_CPU_CAPABILITY"),
               gpus=_gpus(torch), os=platform.platform())
    return {**env, "env_id": env_id(env)}


def env_id(env: dict) -> str:
    """10 hex digits of the SHA-256 of FIELDS as canonical JSON: equal environments share it, and a trials row
    carries it instead of the whole record."""
    canonical = json.dumps({k: env.get(k) for k in FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def device_name(env: dict, device_type: str) -> str:
    """What a trial on `device_type` ("cuda" or "cpu") computes with. Ray hides the GPUs a trial was not given,
    so a trial's cuda device is the first it sees."""
    return env["gpus"][0] if device_type == "cuda" and env["gpus"] else env["cpu"]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cudnn(torch) -> str | None:
    number = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if not number:
        return None
    # cuDNN 9 packs major*10000 + minor*100 + patch; cuDNN 8 and older major*1000 + minor*100 + patch
    major, rest = divmod(number, 10000 if number >= 90000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_capability(torch) -> str | None:
    """The vector instruction set torch's CPU kernels dispatch to (AVX2, AVX512, ...): it changes low-order
    bits of CPU results, and ATEN_CPU_CAPABILITY can force it down."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


def _gpus(torch) -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
