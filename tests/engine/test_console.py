"""The live console view (sweeps/engine/console.py): its lines from fake trials (no Ray), the same summary as
`python -m analysis.status`, --progress-every's validation, and two small real sweeps (slow)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from analysis import status
from sweeps.engine import console
from sweeps.engine.console import ConsoleView
from sweeps.engine.grid import Sweep, axis, cross, variants
from sweeps.engine.recorder import Recorder, trial_row
from sweeps.engine.runner import main, parse_args, plan
from sweeps.results.store import Store

TINY = dict(dataset="synthetic", model="cnn", width=8, batch_size=32, augment=False, train_subset=128,
            test_subset=64, epochs=2, optimizer="sgd", bn=False)
GRID = Sweep(study="console_test", description="console test", fixed=TINY,
             grid=cross(axis("init", ["he_normal", "normal"]), axis("depth", [2, 5]), axis("lr", [0.001, 0.01])))


def setup_view(tmp_path, progress_every=30.0):
    """A view over GRID's 8 planned trials, with the real Recorder (rows filled by hand, nothing written)."""
    args = parse_args(["--storage", str(tmp_path / "res")], "", "console_test")
    planned = plan(GRID, args)
    meta = dict(sweep="live", study="console_test", code_version="test", searcher="grid", scheduler="fifo",
                search_seed=0, trials=len(planned), search_keys=[])
    recorder = Recorder(str(tmp_path / "res"), "live", meta, planned)
    view = ConsoleView(recorder, progress_every)
    trials = [fake_trial(i) for i in range(len(planned))]
    return view, recorder, planned, meta, trials, planned.search


def fake_trial(i: int, status: str = "PENDING", last: dict | None = None, error_file: str | None = None):
    return SimpleNamespace(trial_id=f"t{i}", config={"trial": i}, status=status, last_result=last or {},
                           error_file=error_file, num_failures=0, get_error=lambda: None)


def result(epoch: int, acc: float, seconds: float = 2.0, **more) -> dict:
    return dict(epoch=epoch, test_acc=acc, test_loss=1.0, train_loss=1.0, train_acc=acc, val_acc=math.nan,
                val_loss=math.nan, avg_weight=0.0, lr=0.01, seconds=seconds, time_total_s=seconds * epoch, **more)


def play(view, recorder, trials, i, status, results, error=""):
    """What the Recorder then the view see: a start, the results, and (unless running) the end."""
    trial = trials[i]
    trial.status = "RUNNING"
    recorder.rows[trial.trial_id] = trial_row(trial.trial_id, recorder.spec(trial), recorder.meta, "running", None)
    view.on_trial_start(0, trials, trial)
    for r in results:
        trial.last_result = r
        view.on_trial_result(0, trials, trial, r)
    if status != "running":
        trial.status = "ERROR" if status == "error" else "TERMINATED"
        recorder.rows[trial.trial_id] = trial_row(trial.trial_id, recorder.spec(trial), recorder.meta, status,
                                                  results[-1] if results else None, error)
        (view.on_trial_error if status == "error" else view.on_trial_complete)(0, trials, trial)


def test_start_and_end_lines_carry_title_counter_outcome_and_error(tmp_path, capsys):
    view, recorder, planned, meta, trials, _ = setup_view(tmp_path)
    assert view.keys == ["depth", "init", "lr"]  # what varies, in the tables' (DEFAULTS) order
    play(view, recorder, trials, 3, "completed", [result(1, 0.40), result(2, 0.612, seconds=6.15)])
    boom = tmp_path / "error.txt"  # Tune writes it on the driver; the Recorder's row may not have the message
    boom.write_text("Failure # 1 (occurred at 2026-01-01)\nTraceback (most recent call last):\n  ...\n"
                    "RuntimeError: fail_at_epoch=1: injected failure\n")
    trials[4].error_file = str(boom)
    play(view, recorder, trials, 4, "error", [result(1, 0.2, seconds=0.5)])
    play(view, recorder, trials, 5, "diverged", [result(1, math.nan, seconds=1.0)])
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "start  depth=5 init=he_normal lr=0.01",
        "end    [1/8] depth=5 init=he_normal lr=0.01: completed, test_acc 0.612 after 2 epochs (12.3 s)",
        "start  depth=2 init=normal lr=0.001",
        "end    [2/8] depth=2 init=normal lr=0.001: error after 1 epoch (0.5 s)",  # the message below: too long
        "       - RuntimeError: fail_at_epoch=1: injected failure",
        "start  depth=2 init=normal lr=0.01",
        "end    [3/8] depth=2 init=normal lr=0.01: diverged after 1 epoch (1.0 s)",
    ]
    # a PBT trial paused and started again: no second start line; the Recorder's own error text wins
    play(view, recorder, trials, 6, "running", [result(1, 0.3)])
    view.on_trial_start(0, trials, trials[6])
    assert capsys.readouterr().err == "start  depth=5 init=normal lr=0.001\n"
    recorder.rows["t4"]["error"] = "ValueError: " + "x" * 300
    view.on_trial_error(0, trials, trials[4])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "end    [3/8] depth=2 init=normal lr=0.001: error after 1 epoch (0.5 s)"
    assert len(lines) == 2 and lines[1].startswith("       - ValueError: xxx") and lines[1].endswith("...")
    assert len(lines[1]) == 119
    recorder.rows["t4"]["error"] = "ValueError: short"
    view.on_trial_error(0, trials, trials[4])
    assert capsys.readouterr().err == ("end    [3/8] depth=2 init=normal lr=0.001: error after 1 epoch (0.5 s)"
                                       " - ValueError: short\n")


def test_summary_is_the_one_analysis_status_prints(tmp_path, capsys):
    """The same trials, once through the callbacks and once through the Parquet: the same lines."""
    view, recorder, planned, meta, trials, settings = setup_view(tmp_path)
    runs = {0: ("completed", [result(1, 0.3), result(2, 0.52)]), 1: ("completed", [result(1, 0.4), result(2, 0.61)]),
            2: ("diverged", [result(1, math.nan)]), 3: ("running", [result(1, 0.41, seconds=4.0)]),
            4: ("error", [result(1, 0.2)]), 6: ("running", [])}
    for i, (outcome, results) in runs.items():
        play(view, recorder, trials, i, outcome, results)
    live = view.summary_lines(trials)
    assert live[0].startswith("-- progress at ") and live[0].endswith(" in --")
    assert live[1:] == [
        "trials: 2 completed, 2 running, 2 pending, 0 early_stopped, 1 diverged, 1 error, 0 stopped",
        "running: depth=5 init=he_normal lr=0.01  epoch 1/2  test_acc 0.410",
        "running: depth=5 init=normal lr=0.001  epoch 0/2",
        "best so far (test_acc, max): depth=2 init=he_normal lr=0.01  test_acc 0.610",
        "ETA: ~7s (estimate: 7 epochs left x 2.0 s median epoch / 2 running)",
    ]
    # what the Recorder writes, read back by analysis.status
    store = Store(str(tmp_path / "res"), "live")
    store.write_json("sweep.json", dict(meta, search=settings, plan=planned.record(),
                                        data={"synthetic": "synthetic images"}))
    for i, (_, results) in runs.items():
        tid = trials[i].trial_id
        store.write_rows("trials", tid, [recorder.rows[tid]])
        for r in results:
            store.write_rows("epochs", f"{tid}-e{r['epoch']:04d}", [dict(r, trial_id=tid, sweep="live")])
    from_parquet = status.summary_lines(str(tmp_path / "res" / "live"))
    assert from_parquet[:3] == ["sweep live (study console_test): 8 trials planned", "data: synthetic images",
                                f"results: {store.uri}"]
    assert from_parquet[3:] == live[1:]


def test_summary_every_progress_every_seconds_and_at_the_end(tmp_path, capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    view, recorder, planned, meta, trials, _ = setup_view(tmp_path, progress_every=30)
    view.setup()
    view.on_step_end(1, trials)
    clock[0] += 29.9
    view.on_step_end(2, trials)
    assert capsys.readouterr().err == ""
    clock[0] += 0.2
    view.on_step_end(3, trials)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("-- progress at ") and err[0].endswith(", 30s in --")
    assert err[1] == "trials: 0 completed, 0 running, 8 pending, 0 early_stopped, 0 diverged, 0 error, 0 stopped"
    assert err[-1] == "ETA: unknown (no epoch timings yet; 16 epochs left)"
    clock[0] += 10
    view.on_step_end(4, trials)  # the next one is due 30 s after the last
    assert capsys.readouterr().err == ""
    clock[0] += 95
    view.on_experiment_end(trials)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("-- final at ") and err[0].endswith(", 2m 15s in --")


def test_a_resumed_sweep_counts_the_trials_finished_before(tmp_path, capsys):
    """Tune restores finished trials as TERMINATED/ERROR: counted from its trial list, not from storage."""
    view, recorder, planned, meta, trials, _ = setup_view(tmp_path)
    trials[0] = fake_trial(0, "TERMINATED", result(2, 0.5, done=True))
    trials[1] = fake_trial(1, "TERMINATED", result(1, 0.3))  # stopped early by a scheduler
    trials[2] = fake_trial(2, "ERROR", result(1, 0.1))
    play(view, recorder, trials, 3, "completed", [result(1, 0.3), result(2, 0.4)])
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("end    [4/8] depth=5 init=he_normal lr=0.01: completed")
    lines = view.summary_lines(trials)
    assert lines[1] == "trials: 2 completed, 0 running, 4 pending, 1 early_stopped, 0 diverged, 1 error, 0 stopped"
    assert lines[2] == "best so far (test_acc, max): depth=2 init=he_normal lr=0.001  test_acc 0.500"


def test_lines_stay_ascii_under_120_and_a_broken_view_never_stops_the_sweep(tmp_path, capsys):
    view, recorder, planned, meta, trials, _ = setup_view(tmp_path)
    view.keys = view.keys + ["init_targets", "init_mode"] * 10  # a very long title
    play(view, recorder, trials, 0, "error", [result(1, 0.2)], error="RuntimeError: caf\u00e9 " + "y" * 200)
    lines = capsys.readouterr().err.splitlines() + view.summary_lines(trials)
    assert all(len(line) < 120 and line.isascii() and "\x1b" not in line for line in lines), lines
    recorder.rows = None  # a bug in the view: one warning, then silence; no exception reaches Tune
    view.on_trial_start(0, trials, trials[1])
    view.on_step_end(1, trials)
    view.on_experiment_end(trials)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: the console view stopped")


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_progress_every_must_be_positive(value, tmp_path, capsys):
    code = main(GRID, str(tmp_path / "console_test.py"), ["--storage", str(tmp_path / "res"),
                                                          "--progress-every", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: --progress-every") and "> 0" in err[0], err
    assert not (tmp_path / "res").exists()


# --- through a real Ray ---------------------------------------------------------------------------------------

CASES = Sweep(study="console_test", description="console test", fixed=TINY,
              grid=variants("case", ok=dict(lr=0.01),
                            diverges=dict(lr=1e10),  # NaN loss in epoch 1
                            broken=dict(lr=0.02, fail_at_epoch=1, checkpoint_every=0)))  # error, no retry
ONE = Sweep(study="console_test", description="console test", fixed=dict(TINY, epochs=1), grid=axis("lr", [0.01]))
RAY_TABLES = ("Trial status:", "Trial name")


def run_sweep(tmp_path, capfd, sweep, *flags) -> tuple[int, str, str]:
    code = main(sweep, str(tmp_path / "console_test.py"),
                ["--storage", str(tmp_path / "res"), "--name", "live", "--max-failures", "0", *flags])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.mark.slow
def test_a_real_sweep_prints_header_trial_lines_and_summaries_without_ray_tables(tmp_path, capfd):
    code, out, err = run_sweep(tmp_path, capfd, CASES, "--progress-every", "0.5")
    assert code == 1  # one trial errored
    lines = err.splitlines()
    uri = Store(str(tmp_path / "res"), "live").uri
    header = lines.index("sweep live (study console_test): 3 trials planned")
    assert lines[header + 1].startswith("data: synthetic") and lines[header + 2] == f"results: {uri}"
    assert sum(line.startswith("data: ") for line in lines) == 1  # once, in the header
    ours = [line for line in lines if line.startswith(("start  ", "end    ", "-- ", "trials: ", "running: ",
                                                       "best so far", "ETA: "))]
    # named by their variant label, as the --dry-run listing and the trackers name them: it implies lr
    assert sorted(line for line in ours if line.startswith("start  ")) == \
        ["start  case=broken", "start  case=diverges", "start  case=ok"]
    ends = {line.split("] ", 1)[1].split(":", 1)[0]: line for line in ours if line.startswith("end    [")}
    assert set(ends) == {"case=ok", "case=broken", "case=diverges"}
    assert ": completed, test_acc " in ends["case=ok"] and " after 2 epochs (" in ends["case=ok"]
    assert ": diverged" in ends["case=diverges"] and " after 1 epoch (" in ends["case=diverges"]
    assert ends["case=broken"].endswith(" - RuntimeError: fail_at_epoch=1: injected failure")
    assert sorted(line[len("end    "):line.index("]") + 1] for line in ends.values()) == ["[1/3]", "[2/3]", "[3/3]"]
    assert any(line.startswith("-- progress at ") for line in ours)
    final = max(i for i, line in enumerate(lines) if line.startswith("-- final at "))
    assert lines[final + 1] == ("trials: 1 completed, 0 running, 0 pending, 0 early_stopped, 1 diverged, 1 error, "
                                "0 stopped")
    assert lines[final + 2].startswith("best so far (test_acc, max): case=ok  test_acc ")
    assert all(len(line) < 120 and line.isascii() for line in ours)
    assert not any(table in out + err for table in RAY_TABLES)
    # at verbose=0 Tune still says where a trial's error is (and logs its traceback at ERROR level, which
    # goes to the stderr Ray's logger found at import, outside capfd here)
    assert "errored after 1 iterations" in out and "Error file: " in out


@pytest.mark.slow
def test_verbose_brings_ray_tables_back_also_on_resume(tmp_path, capfd):
    code, out, err = run_sweep(tmp_path, capfd, ONE)
    assert code == 0 and not any(table in out + err for table in RAY_TABLES)
    assert any(line.startswith("end    [1/1] ") and ": completed" in line for line in err.splitlines())
    # Tuner.restore brings back the first run's callbacks and verbosity: the runner renews both
    code, out, err = run_sweep(tmp_path, capfd, ONE, "--resume", "--verbose")
    assert code == 0
    assert "Trial status:" in out and "Trial name" in out
    lines = err.splitlines()
    assert "sweep live (study console_test): 1 trials planned, resumed" in lines
    final = lines.index(next(line for line in lines if line.startswith("-- final at ")))
    # the trial the first run finished, counted from Tune's restored trial list (nothing ran again)
    assert lines[final + 1] == ("trials: 1 completed, 0 running, 0 pending, 0 early_stopped, 0 diverged, 0 error, "
                                "0 stopped")
    assert not any(line.startswith(("start  ", "end    ")) for line in lines)
