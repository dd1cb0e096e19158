"""The cluster story, for real: cluster.yaml, a two-node Ray cluster with logical GPUs, `ray job submit`.

Every Ray process a test starts is stopped by that test, by process id or process
group (never `ray stop`, which would also stop other users' clusters on this machine),
and every port is a random free one, so tests can run beside other Ray instances.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from analysis.results import load
from sweeps import depth_grid
from sweeps.runner import main

REPO = Path(__file__).resolve().parents[1]
RAY_PORTS = {6379: "GCS", 8265: "dashboard/jobs", 10001: "client"}
ADDRESS_FILE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


# --- cluster.yaml and the README section -----------------------------------------------------------

def cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_is_a_valid_launcher_config():
    from ray.autoscaler._private.util import prepare_config, validate_config
    config = cluster_config()
    validate_config(prepare_config(config))  # Ray's own schema, with its provider defaults filled in
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any(w["resources"].get("GPU", 0) >= 1 and w["max_workers"] > w["min_workers"] for w in workers)


def test_cluster_yaml_pins_the_ray_we_use():
    import ray
    config = cluster_config()
    pinned = re.findall(r"ray\[[a-z,]+\]==([0-9.]+)", " ".join(config["setup_commands"]))
    assert pinned == [ray.__version__]
    assert f'"ray[tune]=={ray.__version__}"' in (REPO / "pyproject.toml").read_text()
    assert any("pip install" in c and "cnn-sweeps" in c for c in config["setup_commands"])


def test_no_ray_port_is_open_to_the_internet():
    config = cluster_config()
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert rules, "the inbound rules should be explicit"
    for rule in rules:
        low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
        every_port = rule.get("IpProtocol") == "-1" or low == -1
        for port, what in RAY_PORTS.items():
            covered = every_port or low <= port <= high
            assert not (covered and (rule.get("IpRanges") or rule.get("Ipv6Ranges"))), \
                f"port {port} ({what}) is open to addresses outside the cluster: {rule}"
        for cidr in [r["CidrIp"] for r in rule.get("IpRanges", [])] + \
                    [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]:
            assert cidr not in ("0.0.0.0/0", "::/0"), f"a rule is open to the whole internet: {rule}"
        assert (low, high) == (22, 22)  # the only rule from outside is SSH
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "0.0.0.0" not in starts and "--ray-client-server-port" not in starts
    # and token authentication on every node, with the token shipped from the user's machine
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        assert "ray start" not in command or "RAY_AUTH_MODE=token" in command
    assert any(target.endswith(".ray/auth_token") for target in config["file_mounts"])


def test_readme_cluster_section_matches_cluster_yaml():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    for command in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray down cluster.yaml",
                    "ray job submit --address http://localhost:8265 --working-dir . -- python sweeps/depth_grid.py",
                    "ray job logs", "--resume", "ray get-auth-token --generate", "RAY_AUTH_MODE=token"):
        assert command in section, command
    config_text = (REPO / "cluster.yaml").read_text()
    group = cluster_config()["provider"]["security_group"]["GroupName"]
    assert group in section  # the README's `aws ec2` commands create the group cluster.yaml names
    for storage in re.findall(r"--storage (\S+)", section):
        assert storage in config_text, f"README uses --storage {storage}, cluster.yaml does not mention it"


# --- real clusters on this machine ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class keep_address_file:
    """Starting a head node records it in /tmp/ray/ray_current_cluster, where other users' plain
    ray.init() would find it; put back what was there."""

    def __enter__(self):
        self.saved = ADDRESS_FILE.read_text() if ADDRESS_FILE.exists() else None

    def __exit__(self, *exc):
        if self.saved is None:
            ADDRESS_FILE.unlink(missing_ok=True)
        else:
            ADDRESS_FILE.write_text(self.saved)


def max_overlap(intervals) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


@pytest.mark.slow
def test_multi_node_sweep_with_fractional_gpus(tmp_path, tiny_cifar10, capsys):
    from ray.cluster_utils import Cluster

    node = dict(num_cpus=2, num_gpus=1, object_store_memory=100 * 1024 ** 2,
                dashboard_agent_listen_port=free_port(), metrics_export_port=free_port())
    temp_dir = tempfile.mkdtemp(prefix="rc6-")  # short: Ray's socket paths must stay under 108 bytes
    with keep_address_file():
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            node, gcs_server_port=free_port(), include_dashboard=False, temp_dir=temp_dir))
    try:
        cluster.add_node(**dict(node, dashboard_agent_listen_port=free_port(), metrics_export_port=free_port()))
        cluster.wait_for_nodes()
        node_ids = {cluster.head_node.node_id, *(n.node_id for n in cluster.worker_nodes)}
        assert len(node_ids) == 2
        code = main(depth_grid.SWEEP, depth_grid.__file__,
                    ["--smoke", "--address", cluster.address, "--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5",
                     "--data-dir", str(tiny_cifar10), "--storage", str(tmp_path / "res")])
    finally:
        cluster.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    tables = load(tmp_path / "res" / "depth_grid")
    trials = tables["trials"]
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert len(tables["epochs"]) == 4  # one epoch each
    assert set(tables["layers"]["trial_id"]) == set(trials["trial_id"])
    assert set(trials["node_id"]) == node_ids  # trials ran on both nodes
    assert set(trials["gpu_ids"]) == {"0"}     # each trial was given a (logical) GPU
    for _, group in trials.groupby(["node_id", "gpu_ids"]):
        assert max_overlap(zip(group["trial_started"], group["reported_at"])) <= 2


def ray_cli(*args, timeout=300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ray", *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.slow
def test_ray_job_submit_runs_a_sweep(tmp_path, tiny_cifar10):
    pytest.importorskip("aiohttp", reason="the jobs API needs ray[default] (pip install -e '.[test]')")
    import secrets
    # Ray 2.60 turns token authentication on for `ray start --head`; give this cluster its own token
    # (the CLI calls below and the job's driver use it) instead of the one shared in ~/.ray.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    dashboard = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rj6-")
    address_file = keep_address_file()
    address_file.__enter__()
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", f"--port={free_port()}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--object-store-memory={100 * 1024 ** 2}",
         f"--temp-dir={temp_dir}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        try:
            wait_for_http(f"{address}/api/version", head, timeout=180)
        finally:
            address_file.__exit__(None, None, None)  # the head has written it by now
        storage = tmp_path / "res"
        submitted = ray_cli("job", "submit", "--address", address, "--no-wait", "--submission-id", "smoke-6",
                            "--working-dir", ".", "--", "python", "sweeps/depth_grid.py", "--smoke",
                            "--data-dir", str(tiny_cifar10), "--storage", str(storage), cwd=REPO, env=env)
        assert submitted.returncode == 0, submitted.stderr
        status = ""
        deadline = time.time() + 420
        while time.time() < deadline:
            answer = ray_cli("job", "status", "--address", address, "smoke-6", env=env)
            status = answer.stdout + answer.stderr  # the CLI logs the status line to stderr
            if re.search(r"Job 'smoke-6' (succeeded|failed|was stopped)", status):  # the CLI's words for
                # the terminal states SUCCEEDED, FAILED and STOPPED
                break
            time.sleep(3)
        logs = ray_cli("job", "logs", "--address", address, "smoke-6", env=env).stdout
        assert "Job 'smoke-6' succeeded" in status, status + logs[-3000:]
    finally:
        stop_group(head)
    assert "sweep depth_grid: 4 completed" in logs
    tables = load(storage / "depth_grid")
    trials = tables["trials"]
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert trials["node_id"].notna().all()  # written by this checkout's code, shipped as the working dir
    assert len(tables["epochs"]) == 4
    assert json.loads((storage / "depth_grid" / "sweep.json").read_text())["trials"] == 4


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "ray start --head exited"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:  # it answers (401 without a token): it is up
            return
        except OSError:
            time.sleep(2)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop `ray start --block` and everything it started (its own process group), then make sure."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
    except ProcessLookupError:
        pass
