#!/usr/bin/env bash
# Build, install and test zenmon on every Python it claims besides the one .ci/run
# uses (3.11, which runs the full suite):
#
#     ci/other-pythons.sh [3.10 3.12 ...]     (default: the claimed ones, then 3.14)
#
# For each version: find an interpreter, make a fresh venv, `pip install` a clean
# copy of the source tree (a real build of the Cython core for that version, ~40 s) with pytest, run
# ci/smoke.py and a quick subset of the suite through ci/test.sh with PYTHON set
# (no venv activated). Interpreters are searched for the way they are installed on
# these machines and on common ones: pyenv roots ($PYENV_ROOT, ~/.pyenv,
# /root/.pyenv, /opt/pyenv), /usr/local/bin, /usr/bin, then PATH; each candidate
# must really be that version. A claimed version that is missing fails the run
# under CI (ZENMON_CI or CI set) and is reported locally; an unclaimed one (3.14:
# not on PyPI or in Debian 12 here) is tested when found and noted when not.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
CLAIMED="3.10 3.12 3.13"      # with 3.11 (full suite): requires-python and classifiers
OPTIONAL="3.14"
VERSIONS=${*:-"$CLAIMED $OPTIONAL"}
# The quick subset: monitor semantics (local and remote), processes, examples, platforms.
QUICK_TESTS="tests/test_monitor_semantics.py tests/test_local_monitors.py tests/test_remote_monitors.py
             tests/test_process.py tests/test_examples.py tests/test_platform.py"
STRICT=${ZENMON_CI:-${CI:-}}
WORK=${TMPDIR:-/tmp}/zenmon-other-pythons
start=$SECONDS

printf '\n=== other Pythons: %s\n' "$VERSIONS"

find_python() {   # find_python 3.X -> path of a working python3.X, or nothing
    local version=$1 root candidate
    local -a candidates=()
    for root in "${PYENV_ROOT:-}" "${HOME:-/root}/.pyenv" /root/.pyenv /opt/pyenv; do
        [ -n "$root" ] && [ -d "$root/versions" ] || continue
        # newest patch release first
        while IFS= read -r candidate; do candidates+=("$candidate"); done < <(
            ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -rV)
    done
    candidates+=("/usr/local/bin/python$version" "/usr/bin/python$version")
    candidate=$(command -v "python$version" 2>/dev/null || true)
    [ -n "$candidate" ] && candidates+=("$candidate")
    for candidate in "${candidates[@]}"; do
        if [ -x "$candidate" ] && "$candidate" -c "import sys, venv; sys.exit(
                sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" 2>/dev/null
        then
            echo "$candidate"
            return
        fi
    done
}

# Build from a clean copy of the tree (the files git would commit), never in the
# tree itself: setuptools' build/ directory keeps files that were moved or deleted
# since an earlier build, and they would end up in the wheel.
SRC="$WORK/src"
rm -rf "$SRC"
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        xargs -0 -r sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -C "$SRC" -xf -
else
    cp -a "$ROOT/." "$SRC/"
    rm -rf "$SRC/build" "$SRC"/*.egg-info
fi

missing=() tested=() untested=()
for version in $VERSIONS; do
    python=$(find_python "$version")
    if [ -z "$python" ]; then
        case " $CLAIMED " in
            *" $version "*) echo "!!! Python $version: no interpreter found (claimed by" \
                                 "pyproject.toml; searched pyenv roots, /usr/local/bin, /usr/bin, PATH)" >&2
                            missing+=("$version") ;;
            *) echo "--- Python $version: not installed here, untested"
               untested+=("$version") ;;
        esac
        continue
    fi
    t0=$SECONDS
    echo "--- Python $version: $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
    venv="$WORK/py$version"
    rm -rf "$venv"
    mkdir -p "$WORK"
    log="$WORK/install-$version.log"
    # the build's own output goes to a log, shown only when it fails
    if ! { "$python" -m venv "$venv" &&
           "$venv/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$venv/bin/python" -m pip install --disable-pip-version-check "$SRC" \
               "pytest>=8" "pytest-timeout>=2.2"; } > "$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "!!! Python $version: build or install failed (log above)" >&2
        exit 1
    fi
    echo "    built and installed in $((SECONDS - t0)) s"
    (cd / && "$venv/bin/python" "$ROOT/ci/smoke.py")
    # shellcheck disable=SC2086  # the test list is split on purpose
    PYTHON="$venv/bin/python" bash ci/test.sh -q -p no:cacheprovider $QUICK_TESTS
    echo "    Python $version passed in $((SECONDS - t0)) s"
    tested+=("$version")
    rm -rf "$venv"
done

rm -rf "$SRC"
echo "=== other Pythons: tested ${tested[*]:-none}; untested ${untested[*]:-none};" \
     "missing ${missing[*]:-none} ($((SECONDS - start)) s)"
if [ "${#missing[@]}" -gt 0 ]; then
    if [ -n "$STRICT" ]; then
        echo "claimed Python(s) missing: ${missing[*]}" >&2
        exit 1
    fi
    echo "(not under CI: missing versions reported, not failed)" >&2
fi
