#!/usr/bin/env bash
# System packages the tests need beyond pip: Debian's chromium, for the headless-browser check of report.html
# (tests/test_report.py). Installed only when missing, and only where apt-get can run as root (CI); elsewhere
# this prints why it did nothing and the browser test skips with the same reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "install-test-deps: chromium missing and apt-get needs root here; the browser test will skip" >&2
fi
