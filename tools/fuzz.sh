#!/usr/bin/env bash
# A longer schema-driven fuzz run than the test suite's (20 examples per operation and mode).
#   tools/fuzz.sh [EXAMPLES]      # default 1000: about 3 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
EXTD_FUZZ_EXAMPLES="${1:-1000}" exec python -m pytest -q -m slow tests/service/test_fuzz.py
