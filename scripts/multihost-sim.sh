#!/bin/sh
# Two Docker engines on this machine, joined in one swarm: the simulation the
# multi-host lab test and benchmark run on (issue 25's recipe). Root only.
#   scripts/multihost-sim.sh up     netns kgmh-a/kgmh-b on bridge kgmhbr0 (192.168.250.0/24),
#                                   dockerd in each (/var/run/kgmh-{a,b}.sock), a swarm
#   scripts/multihost-sim.sh down   removes all of it (idempotent)
# Names, addresses and sockets can be changed with KGMH_* variables (see below).
set -eu
PREFIX=${KGMH_PREFIX:-kgmh}
BRIDGE=${KGMH_BRIDGE:-kgmhbr0}
NET=${KGMH_NET:-192.168.250}
ROOT=${KGMH_ROOT:-/var/lib/kgmh}
RULE="-i $BRIDGE -o $BRIDGE -j ACCEPT"

sock() { echo "/var/run/$PREFIX-$1.sock"; }

up_engine() {  # name, last octet
    ns=$PREFIX-$1
    ip netns add "$ns" 2>/dev/null || true
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        ip link add "v$ns" type veth peer name eth0 netns "$ns"
        ip link set "v$ns" master "$BRIDGE" up
        ip -n "$ns" addr add "$NET.$2/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    fi
    mkdir -p "$ROOT/$1/data" "$ROOT/$1/exec"
    if ! docker -H "unix://$(sock "$1")" info >/dev/null 2>&1; then
        # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup mounts
        nsenter --net="/var/run/netns/$ns" dockerd --data-root "$ROOT/$1/data" \
            --exec-root "$ROOT/$1/exec" --pidfile "$ROOT/$1/dockerd.pid" \
            -H "unix://$(sock "$1")" --bridge=none --iptables=false \
            >"$ROOT/$1/dockerd.log" 2>&1 &
        for _ in $(seq 60); do
            docker -H "unix://$(sock "$1")" info >/dev/null 2>&1 && break
            sleep 1
        done
    fi
    docker -H "unix://$(sock "$1")" info >/dev/null
}

up() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip link set "$BRIDGE" up
    # br_netfilter sends bridged frames through FORWARD, where Docker's rules drop them
    iptables -C DOCKER-USER $RULE 2>/dev/null || iptables -I DOCKER-USER $RULE
    up_engine a 11
    up_engine b 12
    A="docker -H unix://$(sock a)"
    B="docker -H unix://$(sock b)"
    if [ "$($A info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        $A swarm init --advertise-addr "$NET.11" >/dev/null
    fi
    if [ "$($B info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        $B swarm join --token "$($A swarm join-token -q worker)" "$NET.11:2377" >/dev/null
    fi
    # a worker the manager does not see Ready yet gets no network attachment (the
    # engine's "attaching to network failed ... context deadline exceeded")
    for _ in $(seq 60); do
        [ "$($A node ls --format '{{.Status}}' | grep -c Ready)" = 2 ] && break
        sleep 1
    done
    echo "engines: unix://$(sock a) (manager) unix://$(sock b) (worker)"
}

down_engine() {
    pidfile="$ROOT/$1/dockerd.pid"
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    # what dockerd leaves mounted under its roots (netns files, overlay layers)
    grep " $ROOT/$1/" /proc/mounts | cut -d' ' -f2 | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ip netns del "$PREFIX-$1" 2>/dev/null || true
    ip link del "v$PREFIX-$1" 2>/dev/null || true
    rm -rf "${ROOT:?}/$1" "$(sock "$1")"
}

down() {
    down_engine b
    down_engine a
    ip link del "$BRIDGE" 2>/dev/null || true
    while iptables -C DOCKER-USER $RULE 2>/dev/null; do iptables -D DOCKER-USER $RULE; done
    rmdir "$ROOT" 2>/dev/null || true
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
