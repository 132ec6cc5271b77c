#!/usr/bin/env bash
# Set up a virtual environment (torch pinned to the CPU wheel) and run the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUTF8=1   # files are UTF-8 whatever the machine's locale (CI may run with none)
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test]'
.venv/bin/python -m pytest -q "$@"
