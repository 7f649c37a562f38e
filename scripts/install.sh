#!/bin/sh
# Prepare a Debian/Ubuntu machine (root, or a user with sudo) for kgen:
# a Docker engine + compose, debootstrap and iptables from the distribution,
# Graphviz and its font for `kgen graph`, tshark and chromium for the tests,
# a running dockerd, br_netfilter, and kgen with its test tools in ./.venv.
# Safe to run again: it only installs or starts what is missing.
#
# It looks for the engine (dockerd, or an engine that already answers), not
# for the `docker` CLI: some machines ship the CLI alone, and a CLI without an
# engine must still lead to installing docker.io.
#
# KGEN_INSTALL_PLAN=1 prints what it would do (one `install: ...` line and one
# `dockerd: start|running` line) and changes nothing; tests drive the
# detection that way with stub commands on PATH.
set -eu
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
CNI_BRIDGE=${KGEN_CNI_BRIDGE:-/usr/lib/cni/bridge}
# The interpreter of ./.venv; .ci/run picks one its non-root user may run too.
PYTHON=${KGEN_PYTHON:-python3}
# `kgen graph` draws with this font, so a picture is the same bytes on every machine.
GRAPH_FONT=${KGEN_GRAPH_FONT:-/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf}

have() { command -v "$1" >/dev/null 2>&1; }
# A user in the docker group reaches the engine without sudo (a GitHub runner's user).
engine_answers() {
    have docker && { docker info >/dev/null 2>&1 || $SUDO docker info >/dev/null 2>&1; }
}
compose_present() {
    { have docker && docker compose version >/dev/null 2>&1; } || docker-compose version >/dev/null 2>&1
}

missing=""
want() { missing="$missing $1"; }
# Test-only tools: installed when the distribution can (Debian's chromium is a
# plain package; Ubuntu's goes through snap), and their tests skip, saying so, where not.
optional=""
could() { optional="$optional $1"; }
# docker.io brings the CLI and dockerd; an engine that answers (a remote one,
# Docker Desktop, a runner's) or any installed dockerd (Docker CE) is enough.
engine_answers || have dockerd || want docker.io
compose_present || want docker-compose
have debootstrap || want debootstrap
have iptables || want iptables
have nft || want nftables            # the nftables proxier's netns tests and benchmark
have conntrack || want conntrack
have tcpdump || want tcpdump
have ping || want iputils-ping
have dig || want dnsutils              # the cluster DNS netns test and benchmark ask with dig
have dot || want graphviz                  # kgen graph (svg, png, html)
have tshark || could tshark                # capture tests decode the VXLAN overlay
have chromium || could chromium            # the html graph test opens the page headless
[ -f "$GRAPH_FONT" ] || want fonts-dejavu-core
[ -x "$CNI_BRIDGE" ] || want containernetworking-plugins   # reference CNI plugins for tests
"$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 || want python3-venv

if [ "${KGEN_INSTALL_PLAN:-}" = 1 ]; then
    echo "install:$missing"
    echo "optional:$optional"
    if engine_answers; then echo "dockerd: running"; else echo "dockerd: start"; fi
    exit 0
fi

if [ -n "$missing" ]; then
    echo "kgen: installing$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
for package in $optional; do
    [ -n "$missing" ] || { $SUDO apt-get update -qq; missing=updated; }
    echo "kgen: installing $package (for tests)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$package" \
        >/dev/null 2>&1 || echo "kgen: $package could not be installed; its tests will skip" >&2
done

if ! engine_answers; then
    if ! have dockerd; then
        echo "kgen: no Docker engine (dockerd) after installing docker.io" >&2
        exit 1
    fi
    echo "kgen: starting dockerd"
    $SUDO sh -c 'nohup setsid dockerd >/var/log/kgen-dockerd.log 2>&1 &'
    i=0
    until engine_answers; do
        i=$((i + 1))
        if [ "$i" -gt 60 ]; then
            echo "kgen: dockerd did not start within 60 s; see /var/log/kgen-dockerd.log" >&2
            exit 1
        fi
        sleep 1
    done
fi
[ -d /proc/sys/net/bridge ] || $SUDO modprobe br_netfilter 2>/dev/null || true

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'
echo "kgen: ready ($(.venv/bin/kgen --help >/dev/null && echo .venv/bin/kgen))"
