#!/usr/bin/env bash
# Set everything up on a fresh machine, then run the main job or the tests.
#
#   bash scripts/quickstart.sh          # venv + package + MNIST, then `nnexp run configs/mlp.yaml`
#   bash scripts/quickstart.sh test     # venv + package + test tools + data, then the test suite
#
# Needs only Python >= 3.10. The virtual environment lives in .venv/ (override
# with NNEXP_VENV); datasets go to the nnexp cache (~/.cache/nnexp or $NNEXP_CACHE_DIR).
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
"$py" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true

if [ "$mode" = run ]; then
    echo "== installing nnexp"
    "$py" -m pip install --quiet --disable-pip-version-check -e .
    echo "== fetching MNIST"
    "$venv/bin/nnexp" data fetch mnist
    echo "== training configs/mlp.yaml"
    exec "$venv/bin/nnexp" run configs/mlp.yaml
fi

echo "== installing nnexp with its test tools"
"$py" -m pip install --quiet --disable-pip-version-check -e '.[test]'
# Ray, the optional executor of `nnexp sweep --executor ray`: its tests start a two-node cluster.
echo "== installing Ray (optional: nnexp[ray])"
"$py" -m pip install --quiet --disable-pip-version-check -e '.[test,ray]' ||
    echo "   (Ray not installed; the Ray tests will skip)"
# Fashion-MNIST ships as a Debian package; install it when we may (CI runs as root).
# Elsewhere its tests skip and say how to get it.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's dataset-fashion-mnist"
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) ||
        echo "   (not installed; the Fashion-MNIST tests will skip)"
fi
# The HTML report is tested in a real headless browser: Debian's chromium, when we may.
# Elsewhere the browser tests skip and say how to get it.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null &&
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium (for the HTML report tests)"
    (export DEBIAN_FRONTEND=noninteractive
     apt-get install -y -qq chromium >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) ||
        echo "   (not installed; the browser tests will skip)"
fi
echo "== fetching MNIST"
"$venv/bin/nnexp" data fetch mnist || echo "   (MNIST not available; the real-data tests will fail and say why)"
echo "== running the tests"
exec "$py" -m pytest -q "$@"
