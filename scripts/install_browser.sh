#!/usr/bin/env bash
# Chromium and its WebDriver for the browser test (tests/test_app_browser.py): Debian's
# chromium and chromium-driver packages. A no-op when both are present; run as root it
# installs them with apt-get, otherwise it says what to install.
set -euo pipefail
if command -v chromedriver >/dev/null \
  && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
else
  echo "install_browser.sh: install Chromium and its driver, e.g. as root:" \
    "apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
