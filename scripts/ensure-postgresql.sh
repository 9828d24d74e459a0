#!/usr/bin/env bash
# Make sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are available: use them
# if installed, otherwise install Debian's postgresql package when we are root and apt-get
# exists. The tests start a throwaway cluster of their own from these binaries (tests/
# pgkit.py), so no system cluster is created (postgresql-common's create_main_cluster is
# turned off first when the package is not there yet). tagwatch's own code never installs
# anything: this script (`make postgresql`, run by `make test`) is the one place that does.
# Never fails the caller by itself: without PostgreSQL the PostgreSQL tests fail (CI) or
# skip (laptops), saying how to get it.
set -u
for p in /usr/lib/postgresql/*/bin/initdb; do
  if [ -x "$p" ] && [ -x "$(dirname "$p")/pg_ctl" ]; then exit 0; fi
done
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL not found: installing Debian's postgresql package (log: /tmp/tagwatch-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
  fi
  if apt-get update >/tmp/tagwatch-apt.log 2>&1 &&
     apt-get install -y --no-install-recommends postgresql >>/tmp/tagwatch-apt.log 2>&1; then
    echo "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
    exit 0
  fi
  echo "warning: could not install postgresql (see /tmp/tagwatch-apt.log)" >&2
else
  echo "warning: PostgreSQL is not installed, and installing it here needs root and apt-get:" >&2
  echo "         run 'sudo apt-get install postgresql' (or 'sudo make postgresql')." >&2
  echo "         Until then the PostgreSQL tests skip (and fail under CI=true)." >&2
fi
exit 0
