#!/usr/bin/env bash
# Make sure a mosquitto broker binary is available: use it if installed, otherwise install
# Debian's package when we are root and apt-get exists. Never fails the caller by itself:
# tests that need mosquitto fail (CI) or skip (laptops) with a clear message instead.
set -u
for p in "$(command -v mosquitto 2>/dev/null)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
  if [ -n "$p" ] && [ -x "$p" ]; then exit 0; fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "mosquitto not found: installing Debian's mosquitto package (log: /tmp/tagwatch-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update >/tmp/tagwatch-apt.log 2>&1 &&
     apt-get install -y --no-install-recommends mosquitto >>/tmp/tagwatch-apt.log 2>&1; then
    echo "mosquitto installed: $(/usr/sbin/mosquitto -h 2>/dev/null | head -1)"
    exit 0
  fi
  echo "warning: could not install mosquitto (see /tmp/tagwatch-apt.log)" >&2
else
  echo "warning: mosquitto is not installed and cannot be installed here (need root + apt-get);" >&2
  echo "         the demo falls back to tagwatch's embedded broker; MQTT tests will skip." >&2
fi
exit 0
