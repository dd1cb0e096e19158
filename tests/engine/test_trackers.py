"""--log tensorboard|mlflow|wandb and `python -m analysis.export` (issue 16), offline, with the real libraries.

One three-trial sweep logs to all three trackers at once (a completed, a diverged and an errored trial);
each tracker's test reads its runs back with the library's own reader and compares them with the Parquet.
"""
from __future__ import annotations

import glob
import importlib
import json
import math
import os
import struct
import subprocess
import sys

import pandas as pd
import pyarrow.fs as pafs
import pytest

from analysis.export import main as export_main
from analysis.results import load
from sweeps.engine import trackers
from sweeps.engine.grid import Sweep, variants
from sweeps.engine.runner import main
from sweeps.engine.trackers.replay import replay
from sweeps.engine.trackers.tensorboard import TensorBoardWriter
from sweeps.results.store import EPOCH_COLUMNS, Store
from tests.conftest import BUCKET
from trainables.config import DEFAULTS

TINY = dict(dataset="synthetic", model="cnn", depth=2, width=8, batch_size=32, augment=False, train_subset=128,
            test_subset=64, epochs=2, optimizer="sgd", bn=False)
LOGGED = Sweep(study="trackers_test", description="trackers test", fixed=TINY,
               grid=variants("case", ok=dict(lr=0.01),
                             diverges=dict(lr=1e10),  # NaN loss in epoch 1
                             broken=dict(lr=0.02, fail_at_epoch=1, checkpoint_every=0)))  # error, no retry
STATUS = {"ok": "completed", "diverges": "diverged", "broken": "error"}
SCALARS = [c for c in EPOCH_COLUMNS if c not in ("trial_id", "sweep", "epoch")]


def sweep_argv(tmp, name, *flags):
    return ["--storage", str(tmp / "res"), "--name", name, "--max-failures", "0", *flags]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """The sweep, logged live to TensorBoard, MLflow (its default SQLite store) and W&B (offline)."""
    tmp = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        code = main(LOGGED, str(tmp / "trackers_test.py"),
                    sweep_argv(tmp, "logged", "--log", "tensorboard", "--log", "mlflow", "--log", "wandb"))
        file_store = os.environ.get("MLFLOW_ALLOW_FILE_STORE")  # what the sweep set for itself, if anything
    sweep = tmp / "res" / "logged"
    tables = load(sweep)
    return dict(code=code, tmp=tmp, sweep=sweep, tables=tables, file_store=file_store,
                trials=tables["trials"].set_index("trial_id"), epochs=tables["epochs"])


# --- TensorBoard -------------------------------------------------------------------------------

def read_tensorboard(folder) -> dict[str, dict]:
    """{run name: {"scalars": {tag: {step: value}}, "hparams": {...}}} with tensorboard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    runs = {}
    for name in sorted(os.listdir(folder)):
        acc = EventAccumulator(str(folder / name))
        acc.Reload()
        scalars = {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        runs[name] = dict(scalars=scalars, hparams=hparams)
    return runs


def by_trial(runs: dict, trial_ids) -> dict:
    """{trial id: run}: a run's name is its varied keys, "_", then its trial id (which may hold "_" itself)."""
    found = {tid: run for tid in trial_ids for name, run in runs.items() if name.endswith(f"_{tid}")}
    assert len(found) == len(runs), (sorted(runs), list(trial_ids))
    return found


def assert_scalars_match_parquet(runs: dict, epochs: pd.DataFrame) -> None:
    for trial_id, run in by_trial(runs, epochs["trial_id"].unique()).items():
        mine = epochs[epochs["trial_id"] == trial_id].set_index("epoch")
        assert len(mine), trial_id
        for column in SCALARS:
            logged = run["scalars"].get(column, {})
            for epoch, value in mine[column].items():
                if math.isnan(value):  # NaN is "no value" in Parquet: not written
                    assert epoch not in logged
                else:
                    assert logged[epoch] == pytest.approx(value, rel=1e-6, abs=1e-30), (trial_id, column, epoch)


@pytest.mark.slow
def test_tensorboard_scalars_equal_parquet_and_runs_are_named_by_their_varied_keys(logged):
    assert logged["code"] == 1  # the broken trial errors: the sweep says so, and the trackers too
    trials = logged["trials"]
    assert dict(zip(trials["case"], trials["status"])) == STATUS
    runs = read_tensorboard(logged["sweep"] / "tensorboard")
    assert sorted(runs) == sorted(f"case={case}_{tid}" for tid, case in trials["case"].items())
    assert_scalars_match_parquet(runs, logged["epochs"])
    for trial_id, run in by_trial(runs, trials.index).items():
        row = trials.loc[trial_id]
        assert run["hparams"]["status"] == row["status"] and run["hparams"]["lr"] == pytest.approx(row["lr"])
        assert run["hparams"]["case"] == row["case"] and run["hparams"]["bn"] == "False"
        # gradient flow per layer, grouped by diagnostic ("grad_abs_mean/00_conv1"), every epoch reported
        layers = logged["tables"]["layers"]
        mine = layers[layers["trial_id"] == trial_id]
        assert len(mine)
        for layer in mine.to_dict("records"):
            for diagnostic in trackers.LAYER_SCALARS:
                tag = f"{diagnostic}/{layer['layer']:02d}_{layer['layer_name']}"
                if not math.isnan(layer[diagnostic]):
                    assert run["scalars"][tag][layer["epoch"]] == pytest.approx(layer[diagnostic], rel=1e-6)
    ok = by_trial(runs, trials.index)[trials.index[trials["case"] == "ok"][0]]["scalars"]
    assert {"grad_abs_mean/00_conv1", "update_ratio/01_conv2", "dead_fraction/00_conv1"} <= set(ok)


# --- MLflow ------------------------------------------------------------------------------------

def read_mlflow(uri: str) -> tuple[pd.DataFrame, dict]:
    """(search_runs frame of every run, {run_id: {metric: {step: value}}})."""
    import mlflow
    from mlflow.tracking import MlflowClient
    with pytest.MonkeyPatch.context() as mp:  # MLflow 3 reads its deprecated file store only with this set
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        client = MlflowClient(uri)
        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(search_all_experiments=True)
        history = {}
        for _, run in runs.iterrows():
            keys = [c[len("metrics."):] for c in runs.columns if c.startswith("metrics.") and not pd.isna(run[c])]
            history[run["run_id"]] = {k: {m.step: m.value for m in client.get_metric_history(run["run_id"], k)}
                                      for k in keys}
    return runs, history


def mlflow_uri(folder) -> str:
    """The default store, <folder>/mlflow.db; fails if the runs went to a file: store (<folder>/mlruns) instead."""
    assert (folder / "mlflow.db").is_file() and not (folder / "mlruns").exists(), sorted(os.listdir(folder))
    return f"sqlite:///{folder.resolve()}/mlflow.db"


@pytest.mark.slow
def test_mlflow_has_a_parent_and_one_nested_run_per_trial_with_config_params_and_epoch_metrics(logged):
    assert logged["file_store"] is None  # the default store is SQLite: the sweep needs no file-store opt-in
    runs, history = read_mlflow(mlflow_uri(logged["sweep"]))
    trials = logged["trials"]
    parent = runs[runs["tags.trial_id"].isna()]
    children = runs[runs["tags.trial_id"].notna()].set_index("tags.trial_id")
    assert len(parent) == 1 and parent["tags.mlflow.runName"].item() == "logged"
    assert sorted(children.index) == sorted(trials.index)
    assert (children["tags.mlflow.parentRunId"] == parent["run_id"].item()).all()
    assert set(children["experiment_id"]) == set(parent["experiment_id"])
    for trial_id, child in children.iterrows():
        row = trials.loc[trial_id]
        assert child["tags.status"] == row["status"] and child["tags.sweep"] == "logged"
        assert child["tags.study"] == "trackers_test" and child["tags.code_version"] == row["code_version"]
        assert child["status"] == ("FAILED" if row["status"] == "error" else "FINISHED")
        params = {c[len("params."):]: child[c] for c in children.columns if c.startswith("params.")}
        config = {k: str(row[k]) for k in params}
        assert params == config and set(params) == set(DEFAULTS)  # every key of the resolved config
        assert child["tags.mlflow.runName"] == f"case={row['case']}_{trial_id}"
        mine = logged["epochs"][logged["epochs"]["trial_id"] == trial_id].set_index("epoch")
        for column in SCALARS:
            expected = {e: v for e, v in mine[column].items() if not math.isnan(v)}
            assert history[child["run_id"]].get(column, {}) == pytest.approx(expected), (trial_id, column)


# --- W&B (offline) -----------------------------------------------------------------------------

def read_wandb_log(path) -> list:
    """The records of an offline run's transaction log (run-<id>.wandb): W&B 0.19+ keeps config and summary
    there, not in files/config.yaml and files/wandb-summary.json, until `wandb sync`. The file is a
    7-byte header, then LevelDB-log blocks of 32 KiB holding length-prefixed protobuf Records."""
    from wandb.proto import wandb_internal_pb2
    data, pos, records, part = open(path, "rb").read(), 7, [], b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        part = (b"" if kind in (1, 2) else part) + data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of FIRST/MIDDLE/LAST
            records.append(wandb_internal_pb2.Record.FromString(part))
    return records


@pytest.mark.slow
def test_wandb_offline_runs_hold_config_group_and_final_metrics(logged):
    trials = logged["trials"]
    folders = glob.glob(str(logged["sweep"] / "wandb" / "offline-run-*"))
    assert len(folders) == len(trials)
    for folder in folders:
        records = read_wandb_log(glob.glob(os.path.join(folder, "run-*.wandb"))[0])
        run = [r.run for r in records if r.WhichOneof("record_type") == "run"][-1]
        config = {u.key: json.loads(u.value_json) for u in run.config.update if u.key != "_wandb"}
        summary, history = {}, []
        for r in records:
            if r.WhichOneof("record_type") == "summary":
                summary.update({(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in r.summary.update})
            if r.WhichOneof("record_type") == "history":
                history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
        trial_id = summary["trial_id"]
        row = trials.loc[trial_id]
        assert run.run_group == "logged" and run.project == "cnn-sweeps"
        assert run.display_name == f"case={row['case']}_{trial_id}"
        assert config["lr"] == pytest.approx(row["lr"]) and config["case"] == row["case"] and config["depth"] == 2
        assert summary["status"] == row["status"] and summary["epochs_completed"] == row["epochs_completed"]
        for metric in ("train_acc", "test_acc"):
            assert summary[metric] == pytest.approx(row[metric])
        assert [h["epoch"] for h in history] == list(range(1, int(row["epochs_completed"]) + 1))
        assert os.path.isfile(os.path.join(folder, "files", "requirements.txt"))


# --- the export after the fact -----------------------------------------------------------------

@pytest.mark.slow
def test_export_writes_the_same_runs_as_the_live_callback(logged, capsys):
    sweep, out = logged["sweep"], logged["tmp"] / "exported"
    assert export_main([str(sweep), "--to", "tensorboard", "--out", str(out)]) == 0
    assert f"tensorboard --logdir {out / 'tensorboard'}" in capsys.readouterr().out
    live, exported = read_tensorboard(sweep / "tensorboard"), read_tensorboard(out / "tensorboard")
    assert sorted(live) == sorted(exported)
    for name in live:
        assert exported[name]["hparams"] == live[name]["hparams"]
        assert exported[name]["scalars"].keys() == live[name]["scalars"].keys()
        for tag, points in live[name]["scalars"].items():
            assert exported[name]["scalars"][tag] == pytest.approx(points), (name, tag)

    assert export_main([str(sweep), "--to", "mlflow", "--out", str(out)]) == 0
    assert f"view:  mlflow ui --backend-store-uri {mlflow_uri(out)}\n" in capsys.readouterr().out
    (live_runs, live_history), (runs, history) = read_mlflow(mlflow_uri(sweep)), read_mlflow(mlflow_uri(out))
    columns = sorted(c for c in live_runs.columns if c.startswith(("params.", "metrics.", "tags.status",
                                                                   "tags.mlflow.runName", "tags.trial_id")))
    key = lambda frame: frame.sort_values("tags.mlflow.runName")[columns].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(runs), key(live_runs))
    name_of = lambda frame: dict(zip(frame["run_id"], frame["tags.mlflow.runName"]))  # noqa: E731
    assert ({name_of(runs)[r]: h for r, h in history.items()} ==
            {name_of(live_runs)[r]: h for r, h in live_history.items()})

    # the live runs are already there: exporting over them is refused, in one line
    for to in ("tensorboard", "mlflow"):
        assert export_main([str(sweep), "--to", to]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "already" in err[0] and "--out" in err[0], err


@pytest.mark.slow
def test_a_sweep_on_s3_gets_a_local_sqlite_store_under_tracking(logged, s3_env, tmp_path, monkeypatch, capsys):
    """With --storage s3://... and no MLFLOW_TRACKING_URI, MLflow goes where the other trackers' local files
    go: ./tracking/<name>/mlflow.db (sweep_info, shared by the live callback and the export)."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"s3://{BUCKET}/results/logged"
    fs, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(logged["sweep"]), path, destination_filesystem=fs)
    assert export_main([uri, "--to", "mlflow"]) == 0
    local = tmp_path / "tracking" / "logged"
    assert f"view:  mlflow ui --backend-store-uri {mlflow_uri(local)}\n" in capsys.readouterr().out
    (runs, history), (live_runs, _) = read_mlflow(mlflow_uri(local)), read_mlflow(mlflow_uri(logged["sweep"]))
    assert sorted(runs["tags.mlflow.runName"]) == sorted(live_runs["tags.mlflow.runName"])
    assert sum(len(h) > 0 for h in history.values()) == len(logged["trials"])


def test_export_of_a_missing_sweep_or_an_unknown_tracker_is_one_line_and_exit_2(tmp_path, capsys):
    for argv, expected in (([str(tmp_path / "none"), "--to", "tensorboard"], "no sweep results"),
                           ([str(tmp_path / "none"), "--to", "tensorbored"], 'did you mean "tensorboard"')):
        assert export_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err


# --- failures: a tracker that breaks, a package that is missing ---------------------------------

@pytest.mark.slow
def test_a_tracker_that_raises_warns_once_and_the_sweep_completes(tmp_path, monkeypatch, capsys):
    def broken(self, trial_id, epoch, scalars):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardWriter, "log", broken)
    sweep = Sweep(study="trackers_test", description="", fixed=TINY, grid=variants("case", ok=dict(lr=0.01),
                                                                                  also=dict(lr=0.02)))
    assert main(sweep, str(tmp_path / "t.py"), sweep_argv(tmp_path, "broken", "--log", "tensorboard")) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: --log tensorboard")]
    assert len(warnings) == 1 and "OSError: disk full" in warnings[0], err[-2000:]
    tables = load(tmp_path / "res" / "broken")
    assert set(tables["trials"]["status"]) == {"completed"} and len(tables["epochs"]) == 2 * 2


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("name, module", [("mlflow", "mlflow"), ("wandb", "wandb"),
                                          ("tensorboard", "torch.utils.tensorboard"),
                                          ("mlflow", "sqlalchemy"), ("mlflow", "alembic")])  # the SQLite store
def test_a_missing_package_is_one_line_naming_the_extra_before_ray_starts(name, module, tmp_path, monkeypatch,
                                                                           capsys):
    library = trackers.writer_class(name).library
    if module != library:  # a library first imported without `module` would stay broken for later tests
        importlib.import_module(library)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(LOGGED, str(tmp_path / "t.py"), sweep_argv(tmp_path, "missing", "--log", name))
    line = one_line_error(capsys)
    assert code == 2 and f"--log {name}" in line and 'pip install -e ".[trackers]"' in line
    assert module in line
    assert not (tmp_path / "res").exists()


def test_bad_log_flags_fail_before_ray(tmp_path, monkeypatch, capsys):
    assert main(LOGGED, str(tmp_path / "t.py"), sweep_argv(tmp_path, "x", "--log", "tensorbord")) == 2
    assert 'did you mean "tensorboard"' in one_line_error(capsys)
    # online W&B without a login would stop at a prompt inside the sweep
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_DISABLED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert main(LOGGED, str(tmp_path / "t.py"), sweep_argv(tmp_path, "x", "--log", "wandb")) == 2
    assert "WANDB_MODE=offline" in one_line_error(capsys)
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_resume_keeps_the_first_runs_trackers(logged, capsys):
    argv = sweep_argv(logged["tmp"], "logged", "--resume", "--log", "tensorboard")
    assert main(LOGGED, str(logged["tmp"] / "trackers_test.py"), argv) == 2
    assert "keeps the first run's trackers (--log tensorboard --log mlflow --log wandb" in one_line_error(capsys)


# --- naming ------------------------------------------------------------------------------------

def test_run_names_show_what_varies_and_are_filesystem_safe():
    plan = [dict(config=dict(depth=d, init=i, lr=0.01, epochs=3), labels={}) for d in (2, 5) for i in ("he", "n")]
    labels, keys = trackers.name_keys(plan)
    assert (labels, keys) == ([], ["depth", "init"])
    sweep = trackers.SweepInfo("s", "study", "v", "/tmp", labels, keys + ["lr"])
    assert trackers.run_name(sweep, "ab_00001", dict(depth=5, init="he/x y", lr=1e-10), {}) == \
        "depth=5,init=he_x_y,lr=1e-10_ab_00001"
    # a variant's bundle is implied by its label; keys that vary within a label group still show
    plan = [dict(config=dict(lr=lr, fail_at_epoch=f), labels=dict(case=c))
            for c, f in (("ok", 0), ("broken", 1)) for lr in (0.1, 0.2)]
    assert trackers.name_keys(plan) == (["case"], ["lr"])
    # a variant named after a config key (study 000's init: he_normal brings fan_out) shows that key only
    plan = [dict(config=dict(depth=d, **bundle), labels={}) for d in (2, 5)
            for bundle in (dict(init="he_normal", init_mode="fan_out"), dict(init="normal", init_std=1.0))]
    assert trackers.name_keys(plan) == ([], ["depth", "init"])


# --- the package: a registry of writers that loads no library until one is asked for ------------

def test_every_registered_writer_implements_writer_and_the_registry_loads_no_library(tmp_path):
    # a subprocess: this test process has long since imported them all
    code = ("import sys\n"
            "from sweeps.engine import trackers\n"
            "from sweeps.engine.trackers.replay import replay\n"
            "classes = [trackers.writer_class(n) for n in trackers.WRITERS]\n"
            "print(sorted(m for m in ('ray', 'torch', 'tensorboard', 'mlflow', 'wandb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)
    sweep = trackers.SweepInfo("s", "study", "v", str(tmp_path), [], [])
    for name in trackers.WRITERS:
        writer = trackers.writer_class(name)(sweep)
        assert isinstance(writer, trackers.Writer) and writer.name == name and writer.runs == {}


def test_replay_writes_parquet_rows_through_the_real_libraries_without_ray(tmp_path, monkeypatch):
    """The writer modules share their names with the libraries (trackers/mlflow.py imports mlflow): this
    writes through both without Ray, and reads the runs back with the libraries' own readers."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    trials = pd.DataFrame([dict(trial_id=f"t_0000{i}", status=s, case=c, lr=lr, depth=2, code_version="v",
                                train_acc=0.5, test_acc=0.4, epochs_completed=2)
                           for i, (s, c, lr) in enumerate([("completed", "a", 0.1), ("error", "b", 0.2)])])
    epochs = pd.DataFrame([dict(trial_id=t, sweep="s", epoch=e, train_loss=1.0 / e, test_acc=0.2 * e,
                                val_acc=math.nan) for t in trials["trial_id"] for e in (1, 2)])
    layers = pd.DataFrame([dict(trial_id=t, epoch=e, layer=0, layer_name="conv1", grad_abs_mean=0.01 * e,
                                update_ratio=0.001, dead_fraction=math.nan)
                           for t in trials["trial_id"] for e in (1, 2)])
    plan = [dict(config=dict(lr=lr), labels=dict(case=c)) for c, lr in (("a", 0.1), ("b", 0.2))]
    store = Store(str(tmp_path), "s")
    for name in ("tensorboard", "mlflow"):
        sweep = trackers.sweep_info(store, dict(study="st", code_version="v", plan=plan))
        assert replay(trackers.writer_class(name)(sweep), sweep, trials, epochs, layers) == 2
    runs = read_tensorboard(tmp_path / "s" / "tensorboard")
    assert sorted(runs) == ["case=a_t_00000", "case=b_t_00001"]
    assert runs["case=a_t_00000"]["scalars"]["grad_abs_mean/00_conv1"] == pytest.approx({1: 0.01, 2: 0.02})
    assert "val_acc" not in runs["case=a_t_00000"]["scalars"] and runs["case=b_t_00001"]["hparams"]["status"] == "error"
    mlruns, history = read_mlflow(f"sqlite:///{tmp_path}/s/mlflow.db")
    children = mlruns[mlruns["tags.trial_id"].notna()].set_index("tags.trial_id")
    assert dict(children["status"]) == {"t_00000": "FINISHED", "t_00001": "FAILED"}
    assert history[children.loc["t_00000", "run_id"]]["test_acc"] == pytest.approx({1: 0.2, 2: 0.4})
