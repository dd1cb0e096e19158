"""The project's contract with a newcomer: the README's two commands are what CI runs, and what they name
exists."""
from __future__ import annotations

import re

from tests.conftest import REPO


def readme_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and "pip install" in line]


def test_ci_runs_exactly_the_readme_test_command():
    sweep, tests = readme_commands()
    ci = [line for line in (REPO / ".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [tests]
    assert "python sweeps/" in sweep and "pytest" in tests


def test_what_the_commands_name_exists():
    for command in readme_commands():
        for path in re.findall(r"(?:scripts|sweeps)/[\w./-]+", command):
            assert (REPO / path).exists(), path
        for constraints in re.findall(r"-c (\S+)", command):
            pins = [line for line in (REPO / constraints).read_text().splitlines() if line and not line.startswith("#")]
            assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==\S+", pin) for pin in pins), "constraints: NAME==VERSION lines"
            names = {pin.split("==")[0].lower() for pin in pins}
            assert {"torch", "torchvision", "ray", "pandas", "pyarrow", "numpy"} <= names
