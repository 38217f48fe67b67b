#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh machine:
# a Python >= 3.12 virtualenv in .venv with the project installed, redis-server, chromium
# and prometheus (with promtool).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; }

find_python() {
    local candidate
    for candidate in "${ACD_PYTHON:-}" python3.13 python3.12 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            command -v "$candidate"; return
        fi
    done
    # pyenv keeps interpreters outside PATH; take its newest 3.12+.
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for candidate in $(ls -d "$root"/versions/3.1[2-9]*/bin/python 2>/dev/null | sort -rV); do
        if python_ok "$candidate"; then echo "$candidate"; return; fi
    done
    echo "error: no Python >= 3.12 found. Install one (e.g. 'pyenv install 3.12') or set ACD_PYTHON=/path/to/python3.12" >&2
    exit 1
}

install_redis() {
    command -v redis-server >/dev/null && return
    echo "redis-server not found: installing Debian's redis-server package" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
    command -v redis-server >/dev/null || { echo "error: could not install redis-server" >&2; exit 1; }
}

# The wallboard test drives the API's built-in page in a real headless browser.
install_chromium() {
    local name
    for name in chromium chromium-browser google-chrome; do
        command -v "$name" >/dev/null && return
    done
    echo "chromium not found: installing Debian's chromium package (for the wallboard test)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    command -v chromium >/dev/null || { echo "error: could not install chromium" >&2; exit 1; }
}

# tests/test_prometheus.py checks the dashboards and alert rules against a real Prometheus.
install_prometheus() {
    command -v prometheus >/dev/null && command -v promtool >/dev/null && return
    echo "prometheus/promtool not found: installing Debian's prometheus package (for the metrics tests)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    command -v promtool >/dev/null || { echo "error: could not install prometheus" >&2; exit 1; }
}

install_redis
install_chromium
install_prometheus
if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
    rm -rf "$VENV"
    "$(find_python)" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
touch "$VENV/.installed"
