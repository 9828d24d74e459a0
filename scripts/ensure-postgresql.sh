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
if [ "$(id -u)" = "0" ] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
  mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
. "$(dirname "$0")/apt-install.sh"
if apt_install postgresql PostgreSQL; then
  echo "PostgreSQL installed: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
else
  echo "         Until then the PostgreSQL tests skip (and fail under CI=true)." >&2
fi
exit 0
