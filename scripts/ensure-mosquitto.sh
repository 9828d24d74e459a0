#!/usr/bin/env bash
# Make sure a mosquitto broker binary is available: use it if installed, otherwise install
# Debian's package when we are root and apt-get exists. tagwatch's own code never installs
# anything: this script (`make mosquitto`, run by `make demo` and `make test`) is the one
# place that does. Never fails the caller by itself: without mosquitto, `tagwatch demo`
# stops saying how to get it, and tests that need it fail (CI) or skip (laptops).
set -u
for p in "$(command -v mosquitto 2>/dev/null)" /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
  if [ -n "$p" ] && [ -x "$p" ]; then exit 0; fi
done
. "$(dirname "$0")/apt-install.sh"
if apt_install mosquitto mosquitto; then
  echo "mosquitto installed: $(/usr/sbin/mosquitto -h 2>/dev/null | head -1)"
else
  echo "         Until then the demo stops (or use a broker you run: tagwatch demo --broker" >&2
  echo "         HOST:PORT) and the MQTT tests skip." >&2
fi
exit 0
