#!/usr/bin/env bash
# Makes Debian's Chromium available for the MLflow UI browser test (tests/integration/test_mlflow_ui.py).
# Idempotent: installs the `chromium` package with apt-get only if /usr/bin/chromium is missing. Playwright
# drives that binary (executable_path); it never downloads a browser of its own.
# Environment: CHROMIUM (default /usr/bin/chromium).
set -euo pipefail
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

if [[ ! -x "$CHROMIUM" ]]; then
  echo "ci-browser: installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null
"${PYTHON:-$(dirname "$0")/../.venv/bin/python}" -c "import playwright.sync_api" || {
  echo "ci-browser: the playwright package is missing; run make install (it is in the dev extra)" >&2
  exit 1
}
