#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/test_page.py) and scripts/screenshots.py,
# when it is missing and this machine lets us (root, or sudo without a password). Playwright
# drives it from the dev extra; Playwright's own browser download is never used.
# Without it the browser tests skip, saying why.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get > /dev/null; then
  echo "browser.sh: no apt-get here; install Chromium at /usr/bin/chromium for the browser tests" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2> /dev/null; then SUDO="sudo -n"; else
    echo "browser.sh: not root and no password-less sudo; the browser tests will skip" >&2
    exit 0
  fi
fi
echo "browser.sh: installing Debian's chromium for the browser tests" >&2
$SUDO apt-get update -qq > /dev/null 2>&1
if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium > /dev/null 2>&1; then
  echo "browser.sh: apt-get could not install chromium; the browser tests will skip" >&2
fi
exit 0
