#!/usr/bin/env bash
# Set up activemint on a fresh machine: the Debian packages dataset-fashion-mnist and chromium
# (where apt exists and we may use it) and a virtual environment .venv with the package and its test and ray
# extras (the CI tests the Ray engine on a local Ray instance; the default path never needs Ray).
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: dataset-fashion-mnist (the data of the main job and the tests) and
# chromium (the headless browser that tests/test_report_html.py drives to render the HTML
# reports; without it those tests skip).
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    APT_UPDATED=""
    apt_install() {  # apt_install PACKAGE WHY
        echo "installing the Debian package $1 ..."
        if [ -z "$APT_UPDATED" ]; then $SUDO apt-get update -qq || true; APT_UPDATED=1; fi
        $SUDO apt-get install -y -qq "$1" >/dev/null || echo "warning: could not install $1; $2" >&2
    }
    if [ ! -d /usr/share/datasets/fashion-mnist ]; then
        apt_install dataset-fashion-mnist "pass --data-root to your own copy"
    fi
    if ! command -v chromium >/dev/null 2>&1; then
        apt_install chromium "the browser tests in tests/test_report_html.py will skip"
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv ..."
    "$PY" -m venv .venv
fi
# Reinstall whenever pyproject.toml changed since the last install (a new dependency or pin),
# not only when an import fails: the stamp holds the hash of the pyproject.toml installed.
STAMP=.venv/.activemint-pyproject.sha256
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] \
   || ! .venv/bin/python -c "import activemint, torch, torchvision, timm, pytest, hypothesis, ray" >/dev/null 2>&1; then
    echo "installing activemint and its dependencies into .venv (torch==2.14.1, torchvision==0.29.1, ...) ..."
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[test,ray]'
    echo "$WANT" > "$STAMP"
fi
echo "setup done: .venv/bin/activemint is ready"
