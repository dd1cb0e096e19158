"""The fast trial path: the device, precision, memory format, cuDNN autotuning and compiled models.

`train` calls these helpers; each one is a no-op where it cannot help, so the
defaults stay correct on a CPU-only laptop and fast on a GPU:

- `precision`: "auto" is bf16 autocast on CUDA and fp32 on CPU (CPU bf16 is
  usually slower than fp32 for these small convs); "bf16" / "fp32" force it.
  Weights, optimizer state and the loss stay fp32; only the forward pass runs
  in bf16, so there is no loss scaling to tune.
- `memory_format`: "auto" is channels_last on every device. Tensor cores want
  NHWC on CUDA, and on the 2-core CPU oneDNN's NHWC kernels gave 1.01-1.30x the
  train-step speed of NCHW across all model families, never less
  (benchmarks/memory_format.py, docs/benchmarks.md). "contiguous" forces NCHW.
- cuDNN autotuning (`cudnn.benchmark`) is switched on for CUDA trials: every
  step of a trial has the same shapes, so the one-off search pays for itself.
- `compile`: opt-in `torch.compile` of the training forward/backward. Compiling
  costs tens of seconds, so compiled models are cached per process, keyed by
  architecture. When Ray reuses a trial's actor (the runner's default;
  `--fresh-actors` turns it off), the next trial of the same architecture loads its fresh weights
  into the cached module and skips compilation.

Limits of the compile cache (documented in docs/benchmarks.md too):
- it lives in one process: trials in fresh actors (`--fresh-actors`) compile again;
- the key is the module's printed structure plus device and memory format, so
  two models that print the same but differ in a non-printed attribute would
  share a graph (every layer type used here prints its hyperparameters);
- evaluation runs eager (its batch sizes differ), and a trial whose training set
  is not a multiple of the batch size compiles once more for the last batch;
- dynamo keys guards on `Sequential.forward`, shared by all architectures, so the
  recompile limit is raised to `CACHE_SIZE` for sweeps over many depths.
"""
from __future__ import annotations

import contextlib
import os
from collections import OrderedDict

import torch

CACHE_SIZE = 16  # architectures kept compiled per process (LRU)
_compiled: "OrderedDict[tuple, tuple[torch.nn.Module, torch.nn.Module]]" = OrderedDict()
cache_stats = dict(hits=0, misses=0)


def pick_device(config: dict) -> torch.device:
    """cuda when the config asks for it, or says auto and the trial was given a GPU; else the CPU."""
    if config["device"] == "cuda" or (config["device"] == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def use_bf16(config: dict, device: torch.device) -> bool:
    return config["precision"] == "bf16" or (config["precision"] == "auto" and device.type == "cuda")


def autocast(config: dict, device: torch.device):
    """Context manager for the forward pass: bf16 autocast or nothing."""
    if use_bf16(config, device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(config: dict) -> torch.memory_format:
    if config["memory_format"] == "contiguous":
        return torch.contiguous_format
    return torch.channels_last


def setup_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls (the fp32 option) on tensor cores
        torch.backends.cudnn.allow_tf32 = True


def separate_inductor_cache_per_capability() -> None:
    """Under ATEN_CPU_CAPABILITY, give Inductor its own on-disk cache. torch 2.14.1 reuses precompiled
    headers across processes: after an avx2 process has compiled, a `default` process finds its header,
    compiles kernels that use at::vec without it, and fails with "'at::vec' has not been declared"
    (reproduced here with one Linear+ReLU). Importing torch._dynamo already writes the default into
    TORCHINDUCTOR_CACHE_DIR, so a value equal to the default counts as unset; a folder the user chose stays."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    if capability and os.environ.get("TORCHINDUCTOR_CACHE_DIR", default_cache_dir()) == default_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{default_cache_dir()}_{capability}"


def prepare_model(model: torch.nn.Module, config: dict, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(model, step_model): the module that holds the weights, and what the training step calls.

    Without `compile` both are the same eager module. With it, `model` may be a
    cached module of the same architecture that now holds `model`'s fresh weights
    and buffers, and `step_model` its compiled wrapper.
    """
    fmt = memory_format(config)
    model = model.to(device=device, memory_format=fmt)
    if not config["compile"]:
        return model, model
    key = (str(model), str(device), str(fmt))
    if key in _compiled:
        cached, compiled = _compiled[key]
        _compiled.move_to_end(key)
        with torch.no_grad():  # copy in place: the compiled graph keeps pointing at these tensors
            cached.load_state_dict(model.state_dict())
        cache_stats["hits"] += 1
        return cached, compiled
    cache_stats["misses"] += 1
    separate_inductor_cache_per_capability()
    dynamo = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), 4 * CACHE_SIZE))
    compiled = torch.compile(model)
    _compiled[key] = (model, compiled)
    while len(_compiled) > CACHE_SIZE:
        _compiled.popitem(last=False)
    return model, compiled


def to_format(x: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return x if fmt is torch.contiguous_format else x.contiguous(memory_format=fmt)
