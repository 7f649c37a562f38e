#!/bin/sh
# Prepare a Debian/Ubuntu machine (root, or a user with sudo) for kgen:
# Docker engine + compose, debootstrap and iptables from the distribution,
# a running dockerd, br_netfilter, and kgen with its test tools in ./.venv.
# Safe to run again: it only installs or starts what is missing.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

missing=""
want() { missing="$missing $1"; }
command -v docker >/dev/null 2>&1 || want docker.io
docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1 || want docker-compose
command -v debootstrap >/dev/null 2>&1 || want debootstrap
command -v iptables >/dev/null 2>&1 || want iptables
command -v tcpdump >/dev/null 2>&1 || want tcpdump
command -v ping >/dev/null 2>&1 || want iputils-ping
[ -x /usr/lib/cni/bridge ] || want containernetworking-plugins   # reference CNI plugins for tests
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || want python3-venv
if [ -n "$missing" ]; then
    echo "kgen: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! $SUDO docker info >/dev/null 2>&1; then
    echo "kgen: starting dockerd"
    $SUDO sh -c 'nohup setsid dockerd >/var/log/kgen-dockerd.log 2>&1 &'
    i=0
    until $SUDO docker info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -gt 60 ]; then
            echo "kgen: dockerd did not start; see /var/log/kgen-dockerd.log" >&2
            exit 1
        fi
        sleep 1
    done
fi
[ -d /proc/sys/net/bridge ] || $SUDO modprobe br_netfilter 2>/dev/null || true

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "kgen: ready ($(.venv/bin/kgen --help >/dev/null && echo .venv/bin/kgen))"
