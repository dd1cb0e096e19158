#!/usr/bin/env bash
# Rewrites constraints.txt: every package, at the exact version, that `pip install -e ".[test]"` resolves in a
# fresh virtualenv today. pyproject.toml keeps ranges (a library should install beside others); this file
# pins what the suite last passed with, so a result can be reproduced later:
#
#     pip install -c constraints.txt -e ".[test]"
#
# Run it when a dependency should move (a new torch, Ray or pandas), then run the tests in that venv and
# commit constraints.txt with the numbers you re-measured:
#
#     scripts/lock.sh                  # a throwaway venv
#     KEEP_VENV=/tmp/lockvenv scripts/lock.sh && /tmp/lockvenv/bin/python -m pytest -q
#
# The pins are for x86-64 Linux and the Python that runs this script (CUDA builds of torch pull nvidia-*
# wheels that other platforms do not have).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${KEEP_VENV:-$(mktemp -d)/venv}
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -e ".[test]"
{
    echo "# Tested versions: $("$venv/bin/python" -c 'import platform; print("Python", platform.python_version(), platform.machine())'), written by scripts/lock.sh on $(date +%Y-%m-%d)."
    echo "# Install exactly these: pip install -c constraints.txt -e \".[test]\""
    "$venv/bin/pip" freeze --exclude-editable | grep -v '^pip=='
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) pins) from $venv"
[ -n "${KEEP_VENV:-}" ] || rm -rf "$(dirname "$venv")"
