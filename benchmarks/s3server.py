"""A local S3-protocol server for tests and benchmarks: moto's standalone `moto_server` (the test extra's
`moto[server]`), its own process on 127.0.0.1 and a free port, with one bucket. It yields the standard AWS
variables through which pyarrow and Ray reach it, as they would reach a real bucket."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str):
    server = shutil.which("moto_server")
    if server is None:
        raise RuntimeError('moto_server is missing: pip install -e ".[test]" installs moto[server]')
    port = free_port()
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.2)
        env = dict(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        import pyarrow.fs as pafs
        pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], scheme="http", access_key="testing",
                          secret_key="testing", region="us-east-1", allow_bucket_creation=True).create_dir(bucket)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
