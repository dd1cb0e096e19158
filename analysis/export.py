"""Write a finished sweep's runs to TensorBoard, MLflow or W&B from its Parquet, as `--log` would have live.

    python -m analysis.export results/depth_grid --to tensorboard      # -> results/depth_grid/tensorboard/
    python -m analysis.export results/depth_grid --to mlflow           # -> MLFLOW_TRACKING_URI, else .../mlflow.db
    python -m analysis.export s3://bucket/sweeps/depth_grid --to tensorboard --out ./depth_grid

For a sweep that ran without --log, or one stored on s3:// (whose tracker files go to a local folder:
--out, default ./tracking/<name>/). The runs are written by the same code as the live export
(sweeps.engine.trackers.replay and its writers), so names, scalars, params and statuses are the same.
Mistakes (no such sweep, a tracker package missing, runs already there) are one line and exit code 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from analysis.results import load
from sweeps.results.store import Store
from sweeps.engine.trackers import WRITERS, check, sweep_info, writer_class
from sweeps.engine.trackers.mlflow import sqlite_uri
from sweeps.engine.trackers.replay import replay
from trainables.errors import ConfigError

EXIT_USAGE = 2


def export(path: str, to: str, out: str | None = None) -> tuple[int, str]:
    """Write the sweep at `path` to tracker `to`; returns (trials written, where). Raises ConfigError."""
    check([to])
    store = Store.at(path)
    if not store.exists():
        raise ConfigError(f"no sweep results at {path}")
    try:
        record = store.read_json("sweep.json")
    except (OSError, ValueError):
        raise ConfigError(f"{path}: no readable sweep.json (is this a sweep folder?)") from None
    tables = load(path)
    if not len(tables["trials"]):
        raise ConfigError(f"{path}: the sweep has no trials yet")
    sweep = sweep_info(store, record, root=os.path.abspath(out) if out else None)
    if to == "mlflow":
        # --out names a folder for a SQLite store; without it MLFLOW_TRACKING_URI (or <sweep>/mlflow.db) applies
        writer = writer_class(to)(sweep, uri=sqlite_uri(sweep.root) if out else None)
        where = writer.uri
        if writer.exported():
            raise ConfigError(f"sweep {store.name!r} already has MLflow runs at {where}; "
                              "pass --out DIR for a new store")
    else:
        writer = writer_class(to)(sweep)
        where = os.path.join(sweep.root, "tensorboard" if to == "tensorboard" else "wandb")
        if to == "tensorboard" and os.path.isdir(where) and os.listdir(where):
            raise ConfigError(f"{where} already holds TensorBoard runs (logged live or exported before); "
                              "pass --out DIR to write elsewhere")
    return replay(writer, sweep, tables["trials"], tables["epochs"], tables["layers"]), where


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep", help="<storage>/<name>: a local folder or a URI (s3://...)")
    p.add_argument("--to", required=True, metavar="TRACKER", help=f"one of {', '.join(WRITERS)}")
    p.add_argument("--out", help="local folder for the tracker files (default: the sweep folder, or "
                                 "./tracking/<name>/ for a URI)")
    args = p.parse_args(argv)
    try:
        count, where = export(args.sweep, args.to.strip().lower(), args.out)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"exported {count} trials to {args.to}: {where}")
    if args.to == "tensorboard":
        print(f"view:  tensorboard --logdir {where}")
    elif args.to == "mlflow" and where.startswith("sqlite:"):
        print(f"view:  mlflow ui --backend-store-uri {where}")
    elif args.to == "mlflow" and where.startswith("file:"):  # the user's MLFLOW_TRACKING_URI: MLflow 3 asks for this
        print(f"view:  MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
