"""The environment a sweep ran in, as its sweep.json records it, in words.

sweep.json's `environment` is the driver's (trainables/environment.py collects it); each trials row's
`env_id` names the worker's, whose full record is under `environments`. A sweep from before these were
recorded says so rather than guessing. Plain dicts in, text out: reading results needs no torch.
"""
from __future__ import annotations

import pandas as pd

from trainables.environment import FIELDS, PACKAGES  # the names only: that module imports torch inside its functions

NOT_RECORDED = "environment not recorded"


def describe(env: dict | None) -> str:
    """One line: versions; CPU (vector unit); GPU; OS; env_id."""
    if not env:
        return NOT_RECORDED
    cuda = ", ".join(f"{name} {env[key]}" for name, key in (("CUDA", "cuda"), ("cuDNN", "cudnn")) if env.get(key))
    versions = [f"python {env.get('python')}", f"torch {env.get('torch')}" + (f" ({cuda})" if cuda else "")]
    versions += [f"{k} {env[k]}" for k in PACKAGES if env.get(k)]
    vector = [v for v in (env.get("cpu_capability"),) if v]
    if env.get("aten_cpu_capability"):
        vector.append(f"ATEN_CPU_CAPABILITY={env['aten_cpu_capability']}")
    cpu = f"CPU {env.get('cpu', 'unknown')}" + (f" ({', '.join(vector)})" if vector else "")
    tail = f"; {env['os']}" if env.get("os") else ""
    return (f"{', '.join(versions)}; {cpu}; GPU {gpus(env.get('gpus'))}{tail}"
            + (f"; env_id {env['env_id']}" if env.get("env_id") else ""))


def gpus(names) -> str:
    if not names:
        return "none"
    counts = {name: list(names).count(name) for name in dict.fromkeys(names)}
    return ", ".join(f"{n}x {name}" if n > 1 else name for name, n in counts.items())


def differences(a: dict, b: dict) -> list[str]:
    """`key: a vs b` for each field that differs (env_id, a digest of the rest, is left out)."""
    keys = [k for k in FIELDS if k in a or k in b] + sorted((set(a) | set(b)) - set(FIELDS) - {"env_id"})
    return [f"{k}: {show(a.get(k), k)} vs {show(b.get(k), k)}" for k in keys if a.get(k) != b.get(k)]


def show(value, key: str = "") -> str:
    if key == "gpus":
        return gpus(value)
    return "none" if value is None else str(value)


def trial_environments(info: dict, trials: pd.DataFrame) -> str | None:
    """Where the trials' workers differ from the driver (another node, a GPU the driver does not see),
    e.g. `driver vs trials: 4 trial(s) in 1a2b3c4d5e: gpus: 2x NVIDIA H200 vs NVIDIA H200`; None when they all
    match it or carry no env_id (a sweep from before trials reported one)."""
    driver = info.get("environment") or {}
    if "env_id" not in trials or not trials["env_id"].notna().any():
        return None
    known = info.get("environments") or {}
    parts = []
    for env_id, n in trials["env_id"].dropna().astype(str).value_counts().sort_index().items():
        if env_id == driver.get("env_id"):
            continue
        if env_id not in known:
            parts.append(f"{n} trial(s) in {env_id}: {NOT_RECORDED}")
        elif not driver:
            parts.append(f"{n} trial(s) in {env_id}: {describe(known[env_id])}")
        else:
            parts.append(f"{n} trial(s) in {env_id}: " + "; ".join(differences(driver, known[env_id]) or ["same"]))
    if not parts:
        return None
    return ("driver vs trials: " if driver else "") + " | ".join(parts)


def compare_environments(info_a: dict, info_b: dict, trials_a: pd.DataFrame, trials_b: pd.DataFrame) -> str:
    """What differs between two sweeps' environments: the drivers' records, and the devices the trials ran on."""
    env_a, env_b = info_a.get("environment"), info_b.get("environment")
    missing = [label for label, env in (("A", env_a), ("B", env_b)) if not env]
    found = differences(env_a, env_b) if not missing else []
    devices = [sorted(t["device_name"].dropna().astype(str).unique()) if "device_name" in t else []
               for t in (trials_a, trials_b)]
    if all(devices) and devices[0] != devices[1]:
        found.append(f"trials' devices: {', '.join(devices[0])} vs {', '.join(devices[1])}")
    if missing:
        note = f"{NOT_RECORDED} for {' and '.join(missing)}"
        return note + (f"; {'; '.join(found)}" if found else "")
    return "; ".join(found) + " (A vs B)" if found else "same environment"
