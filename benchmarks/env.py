"""What every benchmark prints first: the device and software it measured, so a table can be reproduced."""
from __future__ import annotations

import platform
import subprocess
import sys
import time

import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except (OSError, subprocess.SubprocessError):
        model = platform.processor()
    return f"{model or 'unknown CPU'}, {torch.get_num_threads()} torch threads"


def describe(device: torch.device) -> str:
    import torchvision
    parts = [f"date {time.strftime('%Y-%m-%d %H:%M')}", f"device {device.type}: {device_name(device)}",
             f"python {platform.python_version()}", f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    try:
        import ray
        parts.append(f"ray {ray.__version__}")
    except ImportError:
        pass
    return "# " + " | ".join(parts) + f"\n# command: python {' '.join(sys.argv)}"


def pick(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
