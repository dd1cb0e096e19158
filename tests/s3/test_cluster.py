"""The cluster story, for real: cluster.yaml, a two-node Ray cluster with logical GPUs, `ray job submit`,
and a two-node cluster (both nodes from `ray start`) whose sweep keeps everything on an S3-protocol server.

Every Ray process a test starts is stopped by that test, by process id or process
group (never `ray stop`, which would also stop other users' clusters on this machine),
and every port is a random free one, so tests can run beside other Ray instances.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
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
from sweeps.engine.runner import main
from tests.conftest import BUCKET, free_port

REPO = Path(__file__).resolve().parents[2]
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

class keep_address_file:
    """Starting a head node records it in /tmp/ray/ray_current_cluster, where other users' plain
    ray.init() would find it; put back what was there."""

    def __enter__(self):
        self.saved = ADDRESS_FILE.read_text() if ADDRESS_FILE.exists() else None
        # Ray writes the file without making its folder: on a fresh machine no earlier Ray made /tmp/ray
        ADDRESS_FILE.parent.mkdir(parents=True, exist_ok=True)

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


# --- two nodes from `ray start`, everything on S3 ------------------------------------------------

# Alive is not enough: a node's CPUs reach the cluster's view a little later, and a sweep started before that
# packs every trial onto the head (seen once in CI on a loaded 2-core machine). So also wait until all of
# the nodes' CPUs (2 each, start_node) are free to schedule on.
ALIVE_NODES = """import json, sys, time, ray
ray.init(address=sys.argv[1], logging_level="error")
deadline = time.time() + 120
while True:
    alive = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    free = ray.available_resources().get("CPU", 0)
    if (len(alive) >= int(sys.argv[2]) and free >= 2 * int(sys.argv[2])) or time.time() > deadline:
        break
    time.sleep(1)
print(json.dumps(alive))
"""


def start_node(args: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own process group (stop_group stops it), each port a free one."""
    with log.open("w") as out:
        return subprocess.Popen(
            ["ray", "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
             f"--object-store-memory={100 * 1024 ** 2}", f"--dashboard-agent-listen-port={free_port()}",
             f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
             f"--metrics-export-port={free_port()}", *args],
            env=env, cwd=cwd, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


def s3_files(s3_env: dict, path: str) -> list[str]:
    """Every file under `bucket/path` on the S3 server, as bucket paths."""
    import pyarrow.fs as pafs
    fs = pafs.S3FileSystem(endpoint_override=s3_env["AWS_ENDPOINT_URL"], access_key=s3_env["AWS_ACCESS_KEY_ID"],
                           secret_key=s3_env["AWS_SECRET_ACCESS_KEY"], region=s3_env["AWS_DEFAULT_REGION"])
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.File]


@pytest.mark.slow
def test_two_node_cluster_sweep_on_s3(s3_env, tmp_path, tiny_cifar10, monkeypatch):
    """A head and a worker node started with `ray start`, as on real machines, both with the AWS endpoint
    and credentials; the driver joins with --address and --storage s3://. Trials on either node upload
    their checkpoints to the bucket themselves, the driver writes the Parquet and Ray's experiment state
    there, and nothing of the sweep lands on a local disk."""
    import secrets
    name, prefix = "cluster_s3", "cluster"
    uri = f"s3://{BUCKET}/{prefix}/{name}"
    # Ray 2.60 turns token authentication on for `ray start --head`: this cluster gets its own token.
    # PYTHONPATH: the nodes' trial workers and the driver import this checkout, whatever is installed.
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **s3_env, "PYTHONPATH": str(REPO),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    nodes_cwd, driver_cwd = tmp_path / "nodes", tmp_path / "driver"  # where a relative path would land
    nodes_cwd.mkdir()
    driver_cwd.mkdir()
    # short, and one per node as on separate machines: Ray's socket paths must stay under 108 bytes
    temp_dirs = [tempfile.mkdtemp(prefix="rs3h-"), tempfile.mkdtemp(prefix="rs3w-")]
    address = f"127.0.0.1:{free_port()}"
    started = time.perf_counter()
    address_file = keep_address_file()
    address_file.__enter__()
    head = start_node(["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false",
                       f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dirs[0]}"],
                      env, nodes_cwd, tmp_path / "head.log")
    worker = None
    try:
        try:
            worker = start_node([f"--address={address}", f"--temp-dir={temp_dirs[1]}"], env, nodes_cwd,
                                tmp_path / "worker.log")
            alive = subprocess.run([sys.executable, "-c", ALIVE_NODES, address, "2"], env=env, cwd=driver_cwd,
                                   capture_output=True, text=True, timeout=300)
        finally:
            address_file.__exit__(None, None, None)  # the head has written it by now
        logs = lambda: "".join(f"\n--- {n}.log\n" + (tmp_path / f"{n}.log").read_text()[-2000:]  # noqa: E731
                               for n in ("head", "worker"))
        assert alive.returncode == 0, alive.stderr[-3000:] + logs()
        node_ids = json.loads(alive.stdout.strip().splitlines()[-1])
        assert len(node_ids) == 2, logs()
        # 4 trials of 1 CPU on two nodes of 2 CPUs: all four run at once, two on each node
        sweep = subprocess.run(
            [sys.executable, str(REPO / "sweeps" / "depth_grid.py"), "--smoke", "--epochs", "2",
             "--set", "checkpoint_every=1", "--cpus-per-trial", "1", "--address", address,
             "--data-dir", str(tiny_cifar10), "--storage", f"s3://{BUCKET}/{prefix}", "--name", name],
            env=env, cwd=driver_cwd, capture_output=True, text=True, timeout=480)
    finally:
        for proc in (worker, head):
            if proc is not None:
                stop_group(proc)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    assert f"sweep {name}: 4 completed" in sweep.stdout and f"results: {uri}" in sweep.stdout

    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    tables = load(uri)
    trials, epochs = tables["trials"], tables["epochs"]
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert sorted(trials["epochs_completed"]) == [2, 2, 2, 2]
    assert len(epochs) == 8 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert set(epochs["trial_id"]) == set(trials["trial_id"])
    assert set(trials["node_id"]) == set(node_ids), trials[["trial_id", "node_id"]]  # trials ran on both nodes
    # Both nodes are on this machine, so one IP (Tune's node_ip is the IP the trial's worker process sees,
    # the host's own address, not the --node-ip-address the nodes were started with): node_id tells them apart.
    assert trials["node_ip"].nunique() == 1 and trials["node_ip"].iloc[0] not in ("", "nan")

    # On the S3 server: the Parquet, sweep.json, Ray's experiment state and every trial's checkpoints,
    # uploaded by the node that ran the trial (the worker node's trials included).
    files = s3_files(s3_env, f"{BUCKET}/{prefix}/{name}")
    assert f"{BUCKET}/{prefix}/{name}/sweep.json" in files
    assert any(re.search(r"/tune/experiment_state-[^/]*\.json$", f) for f in files), files
    assert any(f.endswith("/tune/tuner.pkl") for f in files), files
    checkpoints = [f for f in files if re.search(r"/tune/[^/]+/checkpoint_\d+/state\.pt$", f)]
    for trial_id in trials["trial_id"]:
        assert len([f for f in checkpoints if trial_id in f.split("/tune/")[1].split("/")[0]]) == 2, \
            (trial_id, checkpoints)

    # Nothing of the sweep on a local disk: not where a relative "s3:/..." path would land (the driver's
    # and the nodes' working directories), not in Ray's own scratch folders (checkpoints are staged in
    # temporary folders, gone once uploaded).
    for folder in (driver_cwd, nodes_cwd, *map(Path, temp_dirs)):
        leaked = [p for p in folder.rglob("*") if p.name.startswith("s3:") or p.suffix == ".parquet"
                  or p.name in ("sweep.json", "state.pt") or p.name.startswith("checkpoint_")]
        assert not leaked, leaked
    assert not (REPO / "s3:").exists() and not list(driver_cwd.iterdir())

    status = subprocess.run([sys.executable, "-m", "analysis.status", uri], env=env, cwd=driver_cwd,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"sweep {name} (study depth_grid): 4 trials planned" in status.stdout
    assert f"results: {uri}" in status.stdout
    assert "trials: 4 completed, 0 running, 0 pending," in status.stdout, status.stdout
    for folder in temp_dirs:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"two-node S3 sweep: {time.perf_counter() - started:.0f} s")
