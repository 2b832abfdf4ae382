#!/usr/bin/env bash
# Run zenmon's test suite against the *installed* zenmon:
#
#     python3 -m pip install '.[test]' && ci/test.sh [pytest args...]
#
# Not `python3 -m pytest`: `-m` puts the current directory first on sys.path, so
# `import zenmon` would pick up the source tree (which has no compiled _core) instead
# of the installed build. The pytest entry point script does not add the current
# directory, and pyproject.toml sets --import-mode=importlib so pytest does not add
# the test directories' roots either. Extra arguments go to pytest unchanged.
#
# PYTHON selects the interpreter (default: python3); the pytest used is the one
# installed for that interpreter.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}

# The pytest entry point installed next to this interpreter's scripts, if any.
pytest_script=$("$PYTHON" -I -c '
import os, sys, sysconfig
for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
    p = os.path.join(d, "pytest")
    if os.path.isfile(p) and os.access(p, os.X_OK):
        print(p)
        break
')

rc=0
if [ -n "$pytest_script" ]; then
    "$pytest_script" "$@" || rc=$?
else
    # No script found (unusual layouts): do what the entry point does, with the
    # current directory removed from sys.path first.
    "$PYTHON" -c 'import sys; del sys.path[0]; import pytest; sys.exit(pytest.console_main())' \
        "$@" || rc=$?
fi

if [ "$rc" -eq 5 ]; then
    echo "ci/test.sh: pytest collected no tests (exit 5)" >&2
fi
exit "$rc"
