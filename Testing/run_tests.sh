#!/usr/bin/env bash
# Set up a virtual environment (torch pinned to the CPU wheel) and run the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUTF8=1   # files are UTF-8 whatever the machine's locale (CI may run with none)
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
# The browser tests of `sasan web` (Testing/web) need Xvfb and Chromium from Debian; Playwright drives that Chromium.
if ! command -v chromium >/dev/null || ! command -v Xvfb >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb chromium >/dev/null
fi
.venv/bin/pip install -q -e '.[webtest]'
export SASAN_WEB_TESTS_REQUIRED=1  # here a missing browser fails the run instead of skipping its tests
.venv/bin/python -m pytest -q "$@"
