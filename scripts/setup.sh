#!/usr/bin/env bash
# Set up activemint on a fresh machine: the Fashion-MNIST Debian package (where apt exists
# and we may use it) and a virtual environment .venv with the package and its test extras.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "installing the Debian package dataset-fashion-mnist ..."
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        || echo "warning: could not install dataset-fashion-mnist; pass --data-root to your own copy" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv ..."
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import activemint, torch, torchvision, timm, pytest" >/dev/null 2>&1; then
    echo "installing activemint and its dependencies into .venv (torch==2.14.1, torchvision==0.29.1, ...) ..."
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[test]'
fi
echo "setup done: .venv/bin/activemint is ready"
