#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh machine:
# a Python >= 3.12 virtualenv in .venv with the project installed, redis-server, chromium,
# prometheus (with promtool) and PostgreSQL's server binaries (initdb, postgres).
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

# The recorder's tests and the demo start their own PostgreSQL cluster (initdb + postgres in
# a temporary directory, load_tests/embedded.py); Debian keeps the binaries off PATH, in
# /usr/lib/postgresql/<version>/bin, where the lab looks too.
find_initdb() {
    command -v initdb 2>/dev/null && return
    ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1
}

# PostgreSQL refuses to run as root: a root session runs the embedded clusters as this
# unprivileged user (ACD_LAB_POSTGRES_USER names another).
POSTGRES_RUN_USER=acd-postgres

install_postgresql() {
    if [ -z "$(find_initdb)" ]; then
        echo "initdb not found: installing Debian's postgresql package (for the recorder's tests)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
        [ -n "$(find_initdb)" ] || { echo "error: could not install postgresql (initdb)" >&2; exit 1; }
    fi
    if [ "$(id -u)" -eq 0 ] && [ -z "${ACD_LAB_POSTGRES_USER:-}" ] && ! id "$POSTGRES_RUN_USER" >/dev/null 2>&1; then
        echo "creating user $POSTGRES_RUN_USER: the embedded PostgreSQL runs as it (it refuses root)" >&2
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$POSTGRES_RUN_USER"
    fi
}

install_redis
install_chromium
install_prometheus
install_postgresql
if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
    rm -rf "$VENV"
    "$(find_python)" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
touch "$VENV/.installed"
