#!/usr/bin/env bash
# Build zenmon with ZENMON_DEBUG=1 (Cython boundscheck and wraparound on, -O0 -g, not
# stripped) into a venv of its own, then run the core and local suites against it:
#
#     bash ci/debug-build.sh [pytest args...]
#
# The build runs from a fresh copy of the tree (the files git tracks), so nothing a
# release build left behind (build/, generated C) can stand in for the debug build.
# PYTHON selects the interpreter (default: python3); ZENMON_DEBUG_VENV the venv
# (default: $TMPDIR/zenmon-debug-venv, recreated each run).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${ZENMON_DEBUG_VENV:-${TMPDIR:-/tmp}/zenmon-debug-venv}
started=$SECONDS

SRC=$(mktemp -d "${TMPDIR:-/tmp}/zenmon-debug-src.XXXXXX")
trap 'rm -rf "$SRC"' EXIT
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    while IFS= read -r -d '' name; do
        if [ -f "$ROOT/$name" ]; then   # tracked but deleted in the work tree: skip
            (cd "$ROOT" && cp --parents -- "$name" "$SRC")
        fi
    done < <(git -C "$ROOT" ls-files -z --cached --others --exclude-standard)
else   # an unpacked sdist: everything but build products
    tar -C "$ROOT" --exclude=build --exclude=dist --exclude='*.egg-info' --exclude='*.so' \
        --exclude='*.c' --exclude='*.cpp' -cf - . | tar -C "$SRC" -xf -
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "debug build: ZENMON_DEBUG=1 pip install '.[test]' into $VENV"
ZENMON_DEBUG=1 "$VENV/bin/python" -m pip install -q "$SRC[test]"

# The debug variant is what got installed: the core says so (DEBUG_BUILD), and its
# extension keeps its debug sections.
so=$(cd / && "$VENV/bin/python" -c 'import zenmon._core as c; print(c.__file__)')
echo "installed: $so"
if ! (cd / && "$VENV/bin/python" - "$so" <<'PY'
import sys
import zenmon._core as core
data = open(sys.argv[1], "rb").read()
sys.exit(0 if b".debug_info" in data and getattr(core, "DEBUG_BUILD", True) else 1)
PY
); then
    echo "ci/debug-build.sh: $so is not a ZENMON_DEBUG build" >&2
    exit 1
fi
echo "debug build ready in $((SECONDS - started))s"

shopt -s nullglob
suites=(tests/test_core*.py tests/test_local*.py)
if [ "${#suites[@]}" -eq 0 ]; then
    echo "ci/debug-build.sh: no tests/test_core*.py or tests/test_local*.py" >&2
    exit 1
fi
rc=0
PYTHON="$VENV/bin/python" bash ci/test.sh "${suites[@]}" "$@" || rc=$?
echo "ci/debug-build.sh: ${#suites[@]} suites against the debug build, exit $rc, $((SECONDS - started))s in all"
exit "$rc"
