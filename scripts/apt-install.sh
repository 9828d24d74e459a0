#!/usr/bin/env bash
# apt_install PACKAGE WHAT: install Debian's PACKAGE when we are root and apt-get exists
# (log: /tmp/tagwatch-apt.log); prints what happened; returns 0 when it was installed.
# Sourced by scripts/ensure-mosquitto.sh and scripts/ensure-postgresql.sh; the scripts
# never fail their caller (make) by themselves.
apt_install() {
  local pkg="$1" what="$2"
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: $what is not installed, and installing it here needs root and apt-get:" >&2
    echo "         run 'sudo apt-get install $pkg' (or 'sudo make $pkg')." >&2
    return 1
  fi
  echo "$what not found: installing Debian's $pkg package (log: /tmp/tagwatch-apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update >/tmp/tagwatch-apt.log 2>&1 &&
     apt-get install -y --no-install-recommends "$pkg" >>/tmp/tagwatch-apt.log 2>&1; then
    return 0
  fi
  echo "warning: could not install $pkg (see /tmp/tagwatch-apt.log)" >&2
  return 1
}
