"""Every user mistake ends in one clear line, exit code 2, and nothing created.

The sweep entry point runs in-process (`sweeps.engine.runner.main`) for speed; all of
these fail before Ray would start. One case runs as a real subprocess to check
what a user sees: one line, no traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps import depth_grid
from sweeps.engine.runner import main
from trainables.config import DEFAULTS

REPO = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def run_bad(tmp_path, capsys, argv, data_dir=None, storage=None, smoke=True):
    """Run the sweep with `argv`; return stderr after checking exit 2 and that nothing was created."""
    data_dir = Path(data_dir) if data_dir else tmp_path / "data"  # absent unless a test made it
    storage = storage or str(tmp_path / "results")
    before = snapshot(tmp_path)
    code = main(depth_grid.SWEEP, depth_grid.__file__,
                [*(["--smoke"] if smoke else []), "--data-dir", str(data_dir), "--storage", storage, *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert snapshot(tmp_path) == before, "a failed validation created or changed files"
    assert not (tmp_path / "results").exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# (argv, what the one line must contain); all of these fail while planning, before any data is read.
CONFIG_CASES = {
    "unknown key": (["--set", "lrr=0.1"], ['unknown config key "lrr"', 'did you mean "lr"']),
    "unknown init": (["--set", "init=hee_normal"], ['init="hee_normal"', '"he_normal"']),
    "unknown activation": (["--set", "activation=rellu"], ['activation="rellu"', '"relu"']),
    "unknown model": (["--set", "model=cnnn"], ['model="cnnn"', '"cnn"']),
    "unknown dataset": (["--set", "dataset=cifar11"], ['dataset="cifar11"', '"cifar10"']),
    "unknown grid axis": (["--grid", "dept=2,3"], ['unknown config key "dept"', '"depth"']),
    "zero depth": (["--grid", "depth=0,2"], ["depth=0", "must be > 0"]),
    "zero epochs": (["--epochs", "0"], ["epochs=0", "must be > 0"]),
    "negative batch size": (["--set", "batch_size=-64"], ["batch_size=-64", "must be > 0"]),
    "zero learning rate": (["--set", "lr=0"], ["lr=0.0", "must be > 0"]),
    "not a number": (["--set", "depth=deep"], ["depth='deep'", "expected int"]),
    "set without =": (["--set", "lr"], ["--set 'lr'", "KEY=VALUE"]),
    "grid without values": (["--grid", "depth="], ["--grid 'depth='", "no values"]),
    "negative GPU fraction": (["--gpus-per-trial", "-0.5"], ["--gpus-per-trial -0.5"]),
    "GPU fraction above 1": (["--gpus-per-trial", "1.5"], ["--gpus-per-trial 1.5", "fraction in (0, 1]"]),
    "zero logical CPUs": (["--num-cpus", "0"], ["--num-cpus 0", "must be >= 1"]),
    "logical CPUs of a cluster": (["--num-cpus", "16", "--address", "127.0.0.1:1"], ["--num-cpus 16", "ray start"]),
    "empty sweep name": (["--name", ""], ["--name ''", "non-empty"]),
    "name with a separator": (["--name", "a/b"], ["--name 'a/b'", "path separators"]),
    "name with ..": (["--name", ".."], ["--name '..'", "'..'"]),
    "name with backslash": (["--name", "x\\y"], ["--name 'x\\\\y'"]),
    "unreachable address": (["--address", "127.0.0.1:1"], ["--address 127.0.0.1:1", "nothing answers"]),
    "malformed address": (["--address", "headnode"], ["--address headnode", "expected host:port"]),
    "dropout on a model without it": (["--set", "model=baseline4", "--set", "dropout=0.3"],
                                      ['model="baseline4" has no dropout layers']),
    "unknown variant": (["--grid", "init=he_normal,hee_normal"],
                        ['--grid init=hee_normal: no variant "hee_normal"', 'did you mean "he_normal"',
                         'variants are he_normal, normal']),
    "an init that is no variant": (["--grid", "init=xavier_normal"],
                                   ['"xavier_normal" is a valid init but not one of this sweep\'s "init" variants '
                                    "(he_normal, normal)"]),
    "key set inside some variants": (["--grid", "init_mode=fan_in"],
                                     ['"init_mode" is set inside this sweep\'s "init" variants (he_normal, normal)',
                                      "--grid init=NAME[,NAME...]",
                                      "--grid init=he_normal --set init_mode=..."]),
    "key set inside every variant": (["--grid", "init_targets=all,conv"],
                                     ["--grid init=NAME[,NAME...]", "in all of them with --set init_targets=..."]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_and_flags(case, tmp_path, capsys):
    argv, expected = CONFIG_CASES[case]
    line = run_bad(tmp_path, capsys, argv)
    for text in expected:
        assert text in line, line


@pytest.mark.parametrize("value", ["1.0", "-0.1"])
def test_dropout_outside_unit_interval(value, tmp_path, capsys):
    line = run_bad(tmp_path, capsys, ["--set", f"dropout={value}"])
    assert "dropout" in line


def test_gpu_request_on_a_machine_without_gpus(tmp_path, capsys, tiny_cifar10):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = run_bad(tmp_path, capsys, ["--gpus-per-trial", "0.5"], data_dir=tiny_cifar10)
    assert "--gpus-per-trial 0.5" in line and "0 GPUs" in line


def test_missing_data_folder_is_not_created(tmp_path, capsys):
    # A full sweep (a --smoke one falls back on synthetic images, tests/studies/test_e2e.py). No network here:
    # the download fails, and the folders it would have made are removed again, at every level.
    line = run_bad(tmp_path, capsys, [], data_dir=tmp_path / "nowhere" / "shared" / "data", smoke=False)
    assert "no cifar10 data" in line and str(tmp_path / "nowhere" / "shared" / "data") in line
    assert not (tmp_path / "nowhere").exists()


def test_data_folder_with_the_wrong_contents(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("not CIFAR")
    line = run_bad(tmp_path, capsys, [], data_dir=folder)
    assert "holds no 'cifar-10-batches-py'" in line


def test_empty_cifar_folder(tmp_path, capsys, tiny_cifar10):
    for f in (tiny_cifar10 / "cifar-10-batches-py").glob("data_batch_*"):
        f.unlink()
    line = run_bad(tmp_path, capsys, [], data_dir=tiny_cifar10)
    assert "missing file" in line and "data_batch_1" in line


def test_truncated_batch_file(tmp_path, capsys, tiny_cifar10):
    batch = tiny_cifar10 / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    line = run_bad(tmp_path, capsys, [], data_dir=tiny_cifar10)
    assert "corrupt CIFAR batch file" in line and "data_batch_3" in line


def test_unwritable_storage(tmp_path, capsys, tiny_cifar10):
    blocker = tmp_path / "a-file"
    blocker.write_text("storage cannot go under a file")
    line = run_bad(tmp_path, capsys, [], data_dir=tiny_cifar10, storage=str(blocker / "results"))
    assert "--storage" in line and "cannot write" in line


def test_storage_uri_pyarrow_cannot_open(tmp_path, capsys, tiny_cifar10):
    line = run_bad(tmp_path, capsys, [], data_dir=tiny_cifar10, storage="nosuchscheme://bucket/results")
    assert "--storage nosuchscheme://bucket/results" in line


def test_existing_sweep_suggests_resume_or_new_name(tmp_path, capsys, tiny_cifar10):
    (tmp_path / "results" / "depth_grid").mkdir(parents=True)
    before = snapshot(tmp_path)
    code = main(depth_grid.SWEEP, depth_grid.__file__,
                ["--smoke", "--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and snapshot(tmp_path) == before
    assert "already exists" in err and "--resume" in err and "--name" in err


def test_resume_of_a_sweep_that_does_not_exist(tmp_path, capsys, tiny_cifar10):
    line = run_bad(tmp_path, capsys, ["--resume", "--name", "never-ran"], data_dir=tiny_cifar10)
    assert "--resume" in line and "never-ran" in line


def test_resume_with_a_different_plan(tmp_path, capsys, tiny_cifar10):
    """--resume refuses to mix two plans under one name."""
    import json
    sweep_dir = tmp_path / "results" / "depth_grid"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / "sweep.json").write_text(json.dumps({"plan": [{"config": {"depth": 99}, "labels": {}}]}))
    before = snapshot(tmp_path)
    code = main(depth_grid.SWEEP, depth_grid.__file__,
                ["--smoke", "--resume", "--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and snapshot(tmp_path) == before
    assert "the trials differ" in err and "new --name" in err


def test_resume_cannot_change_max_failures(tmp_path, capsys, tiny_cifar10):
    """Ray restores a sweep with its first run config, so a new --max-failures would be silently ignored."""
    import json
    from sweeps.engine.runner import parse_args, plan
    argv = ["--smoke", "--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "results")]
    sweep_dir = tmp_path / "results" / "depth_grid"
    sweep_dir.mkdir(parents=True)
    planned = plan(depth_grid.SWEEP, parse_args(argv, "", "depth_grid"))
    (sweep_dir / "sweep.json").write_text(json.dumps({"plan": planned.record(), "max_failures": 1}))
    before = snapshot(tmp_path)
    code = main(depth_grid.SWEEP, depth_grid.__file__, [*argv, "--resume", "--max-failures", "3"])
    err = capsys.readouterr().err
    assert code == 2 and snapshot(tmp_path) == before
    assert err.strip() == ("error: --resume --max-failures 3: a resumed sweep keeps the first run's "
                           "--max-failures 1 (Ray cannot change it on restore); leave the flag out")


def test_dry_run_shows_parsed_overrides(tmp_path, capsys):
    code = main(depth_grid.SWEEP, depth_grid.__file__,
                ["--dry-run", "--grid", "depth=2,20", "--set", "lr=3e-4", "--set", "augment=no"])
    out = capsys.readouterr().out
    assert code == 0
    assert "lr=0.0003 (float)" in out and "augment=False (bool)" in out
    assert "depth=20" in out and "depth=5" not in out and "8 trials" in out


def dry_plan(sweep, argv):
    from sweeps.engine.runner import parse_args, plan
    return plan(sweep, parse_args(["--dry-run", *argv], "", "sweep"))


def test_grid_selects_variants_with_their_settings(capsys):
    """--grid init=he_normal runs only the He cells: `init` names depth_grid's variants, so it picks the
    variant (init_mode and init_targets included), where an init value alone would keep N(0,1)'s init_std."""
    code = main(depth_grid.SWEEP, depth_grid.__file__, ["--dry-run", "--grid", "init=he_normal"])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[-1] == "8 trials" and "init=normal" not in out
    specs = dry_plan(depth_grid.SWEEP, ["--grid", "init=he_normal"])
    assert len(specs) == 8
    assert {(s.config["init"], s.config["init_mode"], s.config["init_targets"]) for s in specs} == \
        {("he_normal", "fan_out", "conv")}
    assert all("init_std" not in s.overrides for s in specs)
    assert sorted((s.config["activation"], s.config["depth"]) for s in specs) == \
        sorted((a, d) for a in ("relu", "prelu") for d in (2, 5, 10, 12))


def test_grid_keeps_several_variants_in_the_sweeps_order():
    full = [s.title for s in dry_plan(depth_grid.SWEEP, [])]
    assert [s.title for s in dry_plan(depth_grid.SWEEP, ["--grid", "init=normal,he_normal"])] == full
    normal = dry_plan(depth_grid.SWEEP, ["--grid", "init=normal"])
    assert {(s.config["init"], s.config["init_std"], s.config["init_targets"]) for s in normal} == \
        {("normal", 1.0, "all")}


def test_set_of_a_key_a_variant_sets_still_fixes_it():
    specs = dry_plan(depth_grid.SWEEP, ["--set", "init_targets=all"])
    assert len(specs) == 16 and {s.config["init_targets"] for s in specs} == {"all"}
    specs = dry_plan(depth_grid.SWEEP, ["--grid", "init=he_normal", "--set", "init_mode=fan_in"])
    assert len(specs) == 8 and {s.config["init_mode"] for s in specs} == {"fan_in"}


def test_grid_variant_left_out_of_the_smoke_grid(tmp_path, capsys):
    from sweeps import init_variance
    code = main(init_variance.SWEEP, init_variance.__file__,
                ["--smoke", "--storage", str(tmp_path / "results"), "--grid", "scheme=xavier"])
    err = capsys.readouterr().err
    assert code == 2 and list(tmp_path.iterdir()) == []
    assert err.strip() == ('error: --grid scheme=xavier: variant "xavier" is not in the --smoke grid, whose '
                           '"scheme" variants are he_fan_in, normal_1, lsuv; drop --smoke to run it')
    assert len(dry_plan(init_variance.SWEEP, ["--smoke", "--grid", "scheme=lsuv"])) == 2


def test_select_variants_inside_union_and_cross():
    from sweeps.engine.grid import axis, cross, select_variants, union, variants
    he, n01 = dict(init="he_normal"), dict(init="normal", init_std=1.0)
    grid = union(a=cross(variants("scheme", he=he, n01=n01), axis("depth", [2, 5])),
                 b=variants("scheme", n01=n01))
    kept = select_variants(grid, "scheme", ["he"]).points()
    assert kept == [({"init": "he_normal", "depth": 2}, {"scheme": "he", "group": "a"}),
                    ({"init": "he_normal", "depth": 5}, {"scheme": "he", "group": "a"})]
    assert [lab["group"] for _, lab in select_variants(grid, "scheme", ["n01"]).points()] == ["a", "a", "b"]


def test_cli_typo_prints_one_line_naming_the_registry_name(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "sweeps/depth_grid.py", "--set", "init=hee_normal",
                           "--storage", str(tmp_path / "results"), "--data-dir", str(tmp_path / "data")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert "he_normal" in lines[0] and "hee_normal" in lines[0]
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []
