"""The Plan and its TrialSpecs (sweeps/results/plan.py), the one naming rule (sweeps/results/naming.py), the
scheduler table (sweeps/engine/schedulers.py) and read-only flags: no Ray, no data."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import pandas as pd
import pytest

from sweeps import depth_grid
from sweeps.engine import phase, runner, schedulers
from sweeps.engine.flags import parse_args
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.planner import plan
from sweeps.engine.preflight import check_resources
from sweeps.results.naming import name_keys, title_keys
from sweeps.results.plan import Plan, TrialSpec
from trainables.errors import ConfigError

TINY = dict(dataset="synthetic", model="cnn", width=8, batch_size=32, augment=False, train_subset=128,
            test_subset=64, epochs=1, optimizer="sgd", bn=False)
SYNTHETIC = Sweep(study="plan_test", description="plan test", fixed=TINY,
                  grid=cross(variants("case", a=dict(lr=0.01), b=dict(lr=0.02, checkpoint_every=0)),
                             axis("depth", [2, 5])))


def test_plan_is_frozen_and_survives_a_pickle():
    planned = plan(depth_grid.SWEEP, parse_args(["--grid", "depth=2,5", "--set", "lr=0.01"], "", "x"))
    spec = planned[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.overrides = {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.trials = ()
    for mapping in (spec.overrides, spec.labels, spec.facts, planned.search, planned.sets):
        with pytest.raises(TypeError, match="read-only"):
            mapping["lr"] = 1.0
        with pytest.raises(TypeError, match="read-only"):
            mapping.update(lr=1.0)
    assert isinstance(planned.trials, tuple) and len(planned) == 8 and list(planned) == list(planned.trials)
    assert planned.sets == {"lr": 0.01}
    again = pickle.loads(pickle.dumps(planned))  # Ray ships it to every trial and keeps it with the Recorder
    assert again == planned
    with pytest.raises(TypeError, match="read-only"):
        again[0].labels["x"] = 1


def test_flags_stay_as_parsed():
    argv = ["--epochs", "3", "--set", "lr=0.01", "--grid", "depth=2,5", "--trials-per-gpu", "2", "--seeds", "2"]
    args = parse_args(argv, "", "x")
    before = copy.deepcopy(vars(args))
    planned = plan(depth_grid.SWEEP, args)
    assert check_resources(args) == 0.5  # --trials-per-gpu 2: half a GPU per trial, returned, not written back
    assert vars(args) == before
    assert planned.sets == {"lr": 0.01, "epochs": 3} and {s.config["epochs"] for s in planned} == {3}
    with pytest.raises(AttributeError, match="read-only"):
        args.gpus_per_trial = 0.5


def test_main_leaves_the_flags_as_parsed(tmp_path, monkeypatch):
    """The whole pre-Ray path of main(): every derived value goes to the Plan or RunSettings."""
    seen = {}

    def fake_run_sweep(sweep, planned, datasets, store, args, run):
        seen.update(planned=planned, args=args, run=run)
        return 0
    monkeypatch.setattr(runner, "run_sweep", fake_run_sweep)
    argv = ["--storage", str(tmp_path), "--epochs", "2", "--seeds", "2"]
    assert runner.main(SYNTHETIC, str(tmp_path / "plan_test.py"), argv) == 0
    assert vars(seen["args"]) == vars(parse_args(argv, SYNTHETIC.description, "plan_test", SYNTHETIC.flags))
    run = seen["run"]
    assert (run.max_failures, run.gpus_per_trial, run.address, run.log) == (1, 0.0, "local", ())
    assert all(spec.facts["n_train"] == 128 and "params" in spec.facts for spec in seen["planned"])


def test_names_come_from_one_rule():
    planned = plan(SYNTHETIC, parse_args(["--seeds", "2"], "", "x"))
    # the variant label implies lr and checkpoint_every; depth and seed vary within it
    assert planned.title_keys == ("case", "depth", "seed")
    assert planned[0].title == "case=a depth=2 seed=0"
    frame = pd.DataFrame([{**s.config, **s.labels} for s in planned])
    assert title_keys(frame, ["case"]) == list(planned.title_keys)  # what analysis.status finds in the Parquet


@pytest.mark.parametrize("entries, always, expected", [
    # the trackers' cases (tests/engine/test_trackers.py), so trackers.name_keys can call this one
    ([dict(config=dict(depth=d, init=i, lr=0.01, epochs=3), labels={}) for d in (2, 5) for i in ("he", "n")],
     (), ([], ["depth", "init"])),
    ([dict(config=dict(lr=lr, fail_at_epoch=f), labels=dict(case=c))
      for c, f in (("ok", 0), ("broken", 1)) for lr in (0.1, 0.2)], (), (["case"], ["lr"])),
    ([dict(config=dict(depth=d, **bundle), labels={}) for d in (2, 5)
      for bundle in (dict(init="he_normal", init_mode="fan_out"), dict(init="normal", init_std=1.0))],
     (), ([], ["depth", "init"])),
    # sampled keys show even where they do not vary; config keys come in DEFAULTS order
    ([dict(config=dict(activation=a, depth=2), labels={}) for a in ("relu", "prelu")], ["lr"],
     ([], ["activation", "lr"])),
    # a sampled key differs in every trial, yet must not hide the grid keys it would "determine"
    ([dict(config=dict(depth=d, init=i, lr=10.0 ** -(n + 2 * d)), labels=dict(sample=n))
      for d in (2, 5) for i in ("he", "n") for n in (0, 1)], ["lr"], (["sample"], ["depth", "init", "lr"])),
])
def test_name_keys(entries, always, expected):
    assert name_keys(entries, always) == expected


def test_a_trial_gets_the_values_a_searcher_picked():
    one = Sweep(study="plan_test", description="", fixed=TINY, grid=axis("depth", [2]))
    planned = plan(one, parse_args(["--grid", "lr=loguniform:1e-3:1", "--search", "optuna"], "", "x"))
    assert planned.picked_keys == ("lr",) and len(planned) == 1
    template = planned[0]
    assert planned.for_trial({"trial": 0, "lr": template.config["lr"]}) is template  # nothing to resolve
    picked = planned.for_trial({"trial": 0, "lr": 0.5})
    assert picked.config["lr"] == 0.5 and picked.overrides["lr"] == 0.5 and template.config["lr"] == 0.001
    assert picked.title == "lr=0.5"
    with pytest.raises(ConfigError):  # resolved, so validated, again
        planned.for_trial({"trial": 0, "lr": -1.0})


def test_a_spec_built_from_a_dict_keeps_its_parts():
    spec = TrialSpec.of(dict(config=dict(epochs=3, task="train"), labels={}, facts={}, title="t", overrides={}))
    assert spec.config == dict(epochs=3, task="train") and spec.title == "default"
    assert Plan.of([spec]).record() == [dict(config={}, labels={})]


def test_scheduler_table():
    assert set(schedulers.SCHEDULERS) == {"fifo", "asha", "hyperband", "median", "pbt"}
    assert schedulers.flag_help("grace_period") == "asha/hyperband/median: epochs before any stop"
    assert schedulers.describe(dict(scheduler="pbt", pbt_interval=2, pbt_mutate=["lr"])).endswith(
        "(every 2 epoch(s); mutating lr)")
    assert schedulers.describe(dict(scheduler="gone")) == "gone"
    assert schedulers.called("median") == "the median stopping rule" and schedulers.called(None) == "the scheduler"
    assert [n for n, s in schedulers.SCHEDULERS.items() if s.refusal] == ["pbt"]


def test_resuming_a_sweep_an_earlier_version_pickled_is_one_clear_error(tmp_path):
    """Its tuner.pkl names a class that is gone (the old ScalarJsonLogger): a ConfigError, not a traceback."""
    (tmp_path / "tune").mkdir()
    (tmp_path / "tune" / "tuner.pkl").write_bytes(b"\x80\x04csweeps.engine.tune_state\nScalarJsonLogger\n)\x81.")
    with pytest.raises(ConfigError, match="started by an earlier version .* start it again under a new --name"):
        phase.restore(str(tmp_path / "tune"), lambda config: None, None, 0)
