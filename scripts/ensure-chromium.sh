#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium for the console's browser tests
# (tests/test_console_browser.py: Playwright drives it with executable_path; no browser
# download, which cannot work here). Use it if installed, otherwise install Debian's
# package when we are root and apt-get exists. Never fails the caller by itself: without
# chromium the browser tests fail under CI (it must be there) and skip elsewhere.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: installing Debian's chromium package (log: /tmp/tagwatch-apt-chromium.log)"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update >/tmp/tagwatch-apt-chromium.log 2>&1 &&
     apt-get install -y chromium >>/tmp/tagwatch-apt-chromium.log 2>&1; then
    echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
    exit 0
  fi
  echo "warning: could not install chromium (see /tmp/tagwatch-apt-chromium.log)" >&2
else
  echo "warning: chromium is not installed, and installing it here needs root and apt-get:" >&2
  echo "         run 'sudo apt-get install chromium' (or 'sudo make chromium')." >&2
  echo "         Until then the console's browser tests skip (they fail under CI)." >&2
fi
exit 0
