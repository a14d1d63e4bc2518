#!/usr/bin/env bash
# What tests/test_app_browser.py (pytest -m browser) needs, on a fresh Debian 12 machine that reaches
# only PyPI and Debian's apt mirrors: Debian's Chromium (Playwright drives it through executable_path;
# `playwright install` would download its own browser, which fails offline) and the Python packages
# gradio, plotly and playwright (the Python package bundles its driver). Idempotent: skips what is there.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PYTHON="${PYTHON:-python3}"

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium
fi

if ! "$PYTHON" -c "import gradio, plotly, playwright.sync_api" >/dev/null 2>&1; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "gradio>=4.40" "plotly>=5.18" "playwright>=1.45"
fi

/usr/bin/chromium --version 2>/dev/null
"$PYTHON" -c "import gradio, plotly, playwright; print('gradio', gradio.__version__, '| plotly', plotly.__version__)"
