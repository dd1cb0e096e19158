"""What every tracker is given and what it implements: the Writer protocol, the sweep's and each trial's
identity (SweepInfo, RunInfo), run names, and the epoch scalars and final metrics it logs.

Ray- and library-free: the live callback and the offline replay both build on it, and a writer module
imports its library only inside its methods, when a run is opened.
"""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from sweeps.results.naming import name_keys
from sweeps.results.store import EPOCH_COLUMNS, FINAL_METRICS, Store, plain

INSTALL = 'pip install -e ".[trackers]"'
EPOCH_SCALARS = tuple(c for c in EPOCH_COLUMNS if c not in ("trial_id", "sweep", "epoch"))
LAYER_SCALARS = ("grad_abs_mean", "update_ratio", "dead_fraction")  # per layer: "grad_abs_mean/00_conv1"


@dataclass
class SweepInfo:
    """What the writers need about the sweep: identity, where local files go, and how runs are named."""
    name: str
    study: str
    code_version: str
    root: str                      # local folder: <root>/tensorboard, <root>/mlflow.db, <root>/wandb
    label_keys: list[str]          # run_name's labels, then config keys
    name_keys: list[str]
    labels: list[str] = field(default_factory=list)  # every label column of the plan (varied or not)
    search_keys: list[str] = field(default_factory=list)  # hyperparameters in force per epoch (PBT, Optuna)
    key: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # tells this sweep's runs from others'


@dataclass
class RunInfo:
    trial_id: str
    name: str
    config: dict                   # the resolved config
    labels: dict
    tags: dict                     # sweep, study, code_version, trial_id


@runtime_checkable  # lets a test check that every registered writer has each member
class Writer(Protocol):
    """One tracker. The live callback and replay() drive every writer the same way, so a run looks the same
    whether it was logged live or exported from Parquet:

        open(run) once per trial -> log(...) once per epoch -> close(trial_id, status, final metrics)
        end() once, after the last trial: closes runs still open as "stopped" and lets the library go

    A writer imports its library inside these methods, never at module level: the registry and the export
    load writer classes without the library, and `check` reports a missing package as one line."""
    name: ClassVar[str]            # the --log name
    library: ClassVar[str]         # the module --log imports to prove the package is installed
    package: ClassVar[str]         # what pip installs it as, for the error message
    runs: dict                     # trial id -> its open run: the callback opens a run only for a trial without one

    def __init__(self, sweep: SweepInfo) -> None: ...

    @classmethod
    def check(cls) -> None:
        """ConfigError (one line) when the tracker would fail or hang once the sweep runs, found before Ray
        starts; the package import itself is already checked."""

    def open(self, run: RunInfo) -> None: ...

    def log(self, trial_id: str, epoch: int, scalars: dict[str, float]) -> None: ...

    def close(self, trial_id: str, status: str, final: dict[str, float]) -> None: ...

    def end(self) -> None: ...


# --- the sweep's identity and its trials' names ---------------------------------------------------

def local_root(store: Store) -> str:
    """The sweep folder itself for local storage. Trackers write local files, so for a URI (s3://...) they
    write under ./tracking/<name>/ in the working directory instead."""
    return store.local_path() or os.path.abspath(os.path.join("tracking", store.name))


def sweep_info(store: Store, record: dict, root: str | None = None) -> SweepInfo:
    """From sweep.json's contents (the runner's meta, plan and search settings; live: the same values)."""
    search = record.get("search") or {}
    always = sorted(set(search.get("sampled") or {}) | set(record.get("search_keys") or []))
    labels, keys = name_keys(record.get("plan") or [], always)
    return SweepInfo(name=store.name, study=str(record.get("study", "")),
                     code_version=str(record.get("code_version", "")), root=root or local_root(store),
                     label_keys=labels, name_keys=keys, search_keys=list(record.get("search_keys") or []),
                     labels=list(dict.fromkeys(k for e in record.get("plan") or [] for k in e["labels"])))


def fmt(value) -> str:
    value = plain(value)
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:.4g}"  # as the runner's titles show sampled values; 5.0 and 5 both read "5"
    return str(value)


def run_name(sweep: SweepInfo, trial_id: str, config: dict, labels: dict) -> str:
    """"depth=5,init=he_normal,lr=0.01_3f2a1_00003": the trial's varied keys, filesystem-safe, plus its id."""
    parts = [f"{k}={fmt(labels[k])}" for k in sweep.label_keys if not missing(labels.get(k))]
    parts += [f"{k}={fmt(config[k])}" for k in sweep.name_keys if k in config]
    title = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts))[:120] or "default"
    return f"{title}_{trial_id}"


def run_info(sweep: SweepInfo, trial_id: str, config: dict, labels: dict, code_version: str = "") -> RunInfo:
    config = {k: plain(v) for k, v in config.items()}
    labels = {k: plain(v) for k, v in labels.items() if not missing(v)}
    return RunInfo(trial_id, run_name(sweep, trial_id, config, labels), config, labels,
                   dict(sweep=sweep.name, study=sweep.study, code_version=code_version or sweep.code_version,
                        trial_id=trial_id))


# --- what a writer logs -------------------------------------------------------------------------

def epoch_scalars(values: dict, layers: list[dict], extra=()) -> dict[str, float]:
    """One epoch's scalars under epochs.parquet's names, plus "<diagnostic>/<NN>_<layer_name>" per layer
    (the index keeps layers in forward order where a UI sorts names: conv10 would come before conv2).
    NaN is Parquet's "no value" (no validation split, a layer without a rectifier): it is left out."""
    out = {k: number(values.get(k)) for k in (*EPOCH_SCALARS, *extra)}
    for layer in layers:
        label = f"{int(layer['layer']):02d}_{layer.get('layer_name') or 'layer'}"
        out.update({f"{k}/{label}": number(layer.get(k)) for k in LAYER_SCALARS})
    return {k: v for k, v in out.items() if v is not None}


def final_metrics(row: dict) -> dict[str, float]:
    """The trials.parquet row's last-epoch metrics and epochs_completed."""
    out = {k: number(row.get(k)) for k in (*FINAL_METRICS, "epochs_completed")}
    return {k: v for k, v in out.items() if v is not None}


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value) -> float | None:
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)
