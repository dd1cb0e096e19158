"""The recorded environment (issue 21): what trainables/environment.py collects, its env_id, how the Recorder
files a worker's record in sweep.json, and how the analysis side puts it in words."""
from __future__ import annotations

import json
import pickle
import platform
import re
from types import SimpleNamespace

import numpy
import pandas
import pyarrow
import pytest
import ray
import torch
import torchvision

from analysis.environment import NOT_RECORDED, compare_environments, describe, differences, trial_environments
from sweeps.engine.recorder import Recorder
from sweeps.results.store import Store
from trainables import environment
from trainables.environment import FIELDS, collect, device_name, env_id
from tests.results.test_store import epoch_rows, fake_trial


def test_collect_has_every_field_with_this_processs_real_versions():
    env = collect()
    assert list(env) == [*FIELDS, "env_id"]
    assert env["python"] == platform.python_version()
    assert env["torch"] == torch.__version__ and env["cuda"] == torch.version.cuda
    assert (env["ray"], env["numpy"], env["pandas"], env["pyarrow"]) == (
        ray.__version__, numpy.__version__, pandas.__version__, pyarrow.__version__)
    assert env["torchvision"] == torchvision.__version__.split("+")[0]  # metadata has no local build tag
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    assert (env["cudnn"] is None) == (not cudnn)
    if cudnn:  # e.g. 92400 -> 9.24.0
        assert re.fullmatch(r"\d+\.\d+\.\d+", env["cudnn"]) and env["cudnn"].startswith(str(cudnn)[0])
    assert env["cpu"] and env["cpu"] != "unknown"
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    expected_gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    assert env["gpus"] == expected_gpus and env["os"] == platform.platform()
    assert env["env_id"] == env_id(env) and re.fullmatch(r"[0-9a-f]{10}", env["env_id"])
    env["gpus"].append("changed")  # a copy: the cached record stays as it was
    assert collect()["gpus"] == expected_gpus


def test_aten_cpu_capability_is_recorded_when_set(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    environment._collect.cache_clear()
    try:
        env = collect()
        assert env["aten_cpu_capability"] == "default" and env["env_id"] != env_id({**env, "aten_cpu_capability": None})
    finally:
        environment._collect.cache_clear()
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert collect()["aten_cpu_capability"] is None


def test_env_id_is_stable_and_moves_with_any_field():
    env = collect()
    shuffled = dict(reversed(list(env.items())))
    assert env_id(env) == env_id(shuffled) == env_id({k: v for k, v in env.items() if k != "env_id"})
    assert env_id({**env, "env_id": "something else"}) == env_id(env)  # the id is not part of its own digest
    assert env_id({**env, "torch": env["torch"] + ".post1"}) != env_id(env)
    assert env_id({**env, "gpus": ["NVIDIA H200"]}) != env_id({**env, "gpus": []})
    assert env_id({**env, "cudnn": "9.1.0"}) != env_id({**env, "cudnn": "9.10.0"})


@pytest.mark.parametrize("number, text", [(92400, "9.24.0"), (91002, "9.10.2"), (8902, "8.9.2"), (None, None)])
def test_cudnn_version_numbers_in_words(number, text):
    cudnn = SimpleNamespace(is_available=lambda: number is not None, version=lambda: number)
    assert environment._cudnn(SimpleNamespace(backends=SimpleNamespace(cudnn=cudnn))) == text


def test_a_trials_device_is_its_gpu_or_else_the_cpu():
    env = dict(collect(), cpu="AMD EPYC 9654", gpus=["NVIDIA H200"])
    assert device_name(env, "cuda") == "NVIDIA H200" and device_name(env, "cpu") == "AMD EPYC 9654"
    assert device_name(dict(env, gpus=[]), "cuda") == "AMD EPYC 9654"


# --- the Recorder files each worker environment once -----------------------------------------------------------

def test_the_recorder_files_each_new_worker_environment_once_in_sweep_json(tmp_path, monkeypatch):
    store = Store(str(tmp_path), "s")
    driver = collect()
    store.write_json("sweep.json", dict(sweep="s", environment=driver))
    other = dict(driver, gpus=["NVIDIA H200"], env_id=env_id(dict(driver, gpus=["NVIDIA H200"])))
    spec = dict(config=dict(epochs=2, task="train"), labels={}, facts={}, title="t", overrides={})
    recorder = Recorder(str(tmp_path), "s", dict(sweep="s", study="x", code_version="v"), [spec])
    writes = []
    write_json = Store.write_json
    monkeypatch.setattr(Store, "write_json", lambda self, rel, obj: writes.append(rel) or write_json(self, rel, obj))
    for trial_id, env in (("t1", driver), ("t2", driver), ("t3", other)):
        trial = fake_trial(trial_id)
        recorder.on_trial_start(0, [], trial)
        for epoch in (1, 2):
            result = dict(epoch_rows(trial_id, epoch, 0.1), epoch=epoch, env_id=env["env_id"],
                          torch_version=env["torch"], device_name=device_name(env, "cpu"))
            if epoch == 1:  # what run_trial sends with a trial's first result
                result["environment"] = json.dumps(env)
            trial.last_result = result
            recorder.on_trial_result(0, [], trial, result)
        recorder.on_trial_complete(0, [], trial)
    recorder.on_experiment_end([])
    assert writes == ["sweep.json", "sweep.json"]  # one per distinct environment, not per trial
    record = store.read_json("sweep.json")
    assert record["environment"] == driver and record["environments"] == {driver["env_id"]: driver,
                                                                         other["env_id"]: other}
    trials = store.read_table("trials").set_index("trial_id")
    assert list(trials["env_id"]) == [driver["env_id"], driver["env_id"], other["env_id"]]
    assert set(trials["torch_version"]) == {torch.__version__} and set(trials["device_name"]) == {driver["cpu"]}
    # a resumed driver's Recorder (unpickled) checks sweep.json again, finds the record, and writes nothing
    restored = pickle.loads(pickle.dumps(recorder))
    writes.clear()
    trial = fake_trial("t4")
    restored.on_trial_result(0, [], trial, dict(epoch_rows("t4", 1, 0.1), epoch=1, env_id=other["env_id"],
                                                environment=json.dumps(other)))
    restored.flush()
    assert writes == [] and store.read_json("sweep.json")["environments"][other["env_id"]] == other


def test_a_missing_sweep_json_costs_a_warning_not_the_sweep(tmp_path, capsys):
    spec = dict(config=dict(epochs=1, task="train"), labels={}, facts={}, title="t", overrides={})
    recorder = Recorder(str(tmp_path), "s", dict(sweep="s", study="x", code_version="v"), [spec])
    env = collect()
    recorder.on_trial_result(0, [], fake_trial("t1"), dict(epoch_rows("t1", 1, 0.1), epoch=1, env_id=env["env_id"],
                                                           environment=json.dumps(env)))
    recorder.flush()
    assert f"could not record environment {env['env_id']}" in capsys.readouterr().err


# --- in words, on the analysis side ------------------------------------------------------------------------------

def test_describe_says_versions_cpu_and_gpu_in_one_line():
    env = collect()
    line = describe(env)
    assert line.startswith(f"python {env['python']}, torch {torch.__version__}")
    assert f"numpy {numpy.__version__}" in line and f"ray {ray.__version__}" in line and "\n" not in line
    assert f"CPU {env['cpu']}" in line and f"env_id {env['env_id']}" in line
    assert describe(dict(env, gpus=["NVIDIA H200"] * 2, aten_cpu_capability="default")).count("2x NVIDIA H200") == 1
    assert "ATEN_CPU_CAPABILITY=default" in describe(dict(env, aten_cpu_capability="default"))
    assert describe(None) == describe({}) == NOT_RECORDED


def test_differences_list_each_changed_field_a_vs_b():
    env = dict(collect(), gpus=[])
    other = dict(env, torch="9.9.9", gpus=["NVIDIA H200"], env_id="x")
    assert differences(env, other) == [f"torch: {env['torch']} vs 9.9.9", "gpus: none vs NVIDIA H200"]
    assert differences(env, dict(env, env_id="y")) == []
    assert differences({}, {"python": "3.11.7"}) == ["python: none vs 3.11.7"]


def test_compare_environments_and_trial_environments():
    env = collect()
    trials = pandas.DataFrame(dict(env_id=[env["env_id"]] * 2, device_name=[env["cpu"]] * 2))
    info = dict(environment=env, environments={env["env_id"]: env})
    assert compare_environments(info, info, trials, trials) == "same environment"
    newer = dict(env, numpy="9.0.0")
    assert compare_environments(info, dict(environment=newer), trials, trials) == \
        f"numpy: {env['numpy']} vs 9.0.0 (A vs B)"
    assert compare_environments({}, info, trials, trials) == f"{NOT_RECORDED} for A"
    assert compare_environments({}, {}, trials, trials.assign(device_name="NVIDIA H200")) == \
        f"{NOT_RECORDED} for A and B; trials' devices: {env['cpu']} vs NVIDIA H200"
    assert trial_environments(info, trials) is None  # every trial ran where the driver did
    gpu = dict(env, gpus=["NVIDIA H200"])
    gpu["env_id"] = env_id(gpu)
    mixed = pandas.DataFrame(dict(env_id=[env["env_id"], gpu["env_id"], gpu["env_id"], "0123456789"]))
    line = trial_environments(dict(info, environments={gpu["env_id"]: gpu}), mixed)
    assert line.startswith("driver vs trials: ") and f"2 trial(s) in {gpu['env_id']}: gpus: " in line
    assert f"1 trial(s) in 0123456789: {NOT_RECORDED}" in line
    assert trial_environments({}, pandas.DataFrame(dict(trial_id=["a"]))) is None  # an old sweep
