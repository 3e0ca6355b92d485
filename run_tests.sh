#!/usr/bin/env bash
# Everything the tests need on a fresh machine, then the tests: a venv with
# requirements.txt, Debian's Chromium for the real-browser test (Playwright drives
# it, so no browser download) and espeak-ng, the test user's voice that is not the
# agent's. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/lib/chromium/chromium ] || ! command -v espeak-ng >/dev/null; then
    if [ "$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium espeak-ng
    else sudo apt-get update && sudo apt-get install -y chromium espeak-ng; fi
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -r requirements.txt
python -m pytest "$@"
