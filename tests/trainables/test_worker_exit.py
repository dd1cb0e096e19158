"""A trial worker told to stop (SIGTERM) while inside a garbage-collector callback exits without printing a
traceback (trainables/ray_trainable.py `exit_quietly_when_killed`). The script reproduces the race for real:
the signal arrives while an object's __del__ runs, and the handler raises SystemExit there, as Ray's does."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, signal, sys
if sys.argv[1] == "hook":
    from trainables.ray_trainable import exit_quietly_when_killed
    exit_quietly_when_killed()
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # what Ray's worker handler does

class Dying:
    def __del__(self):
        if sys.argv[2] == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100000):  # the handler runs here, inside __del__
                pass
        else:
            raise ValueError("a real bug in a finalizer")

Dying()
print("went on after the SIGTERM", flush=True)
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_without_the_hook_python_prints_the_traceback_and_goes_on():
    proc = run("plain", "sigterm")  # the noise the hook removes: shows the reproduction is real
    assert "Exception ignored in" in proc.stderr and "SystemExit" in proc.stderr
    assert "went on after the SIGTERM" in proc.stdout and proc.returncode == 0


def test_with_the_hook_the_worker_exits_at_once_and_silently():
    proc = run("hook", "sigterm")
    assert proc.returncode == 1 and proc.stderr == "" and proc.stdout == ""


def test_other_errors_in_finalizers_are_still_printed():
    proc = run("hook", "bug")
    assert "a real bug in a finalizer" in proc.stderr and "went on after the SIGTERM" in proc.stdout
