#!/usr/bin/env bash
# The test suite: lint (ruff, then mypy --strict on the packages), then pytest. pytest's exit
# code 5 ("no tests collected") would mean the suite lost its tests, so it is reported and kept
# as a failure rather than passed over.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check . || exit 1
.venv/bin/mypy || exit 1
.venv/bin/pytest tests/ "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
fi
exit "$status"
