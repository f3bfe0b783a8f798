#!/usr/bin/env bash
# A LISP-Decent mesh on one machine, each node in its own network namespace (needs root).
#   scripts/mesh-netns.sh up N [--mode replicate|multicast] [--probe SECS] [--rekey SECS]
#                              [--crypto aes128-gcm|chacha20-poly1305|none] [--workers W]
#                              [--rcvbuf KIB]
#                              (N from 1 to 10; W data-plane workers per node, default one per
#                              CPU; KIB the data port's receive buffer, default the node's)
#   scripts/mesh-netns.sh net N      (the namespaces, links and addresses only, no nodes)
#   scripts/mesh-netns.sh down
# Node I lives in namespace dl-nI with RLOC 192.0.2.I/24 on eth0, joined by a bridge in
# namespace dl-br; its EID-prefix is 10.I.0.0/16 and 10.I.0.1 sits on its TUN device lisp0.
# `up` builds the project if needed, starts the nodes and returns once every node holds
# the whole mesh in its database. `down` removes every namespace, link and process `up`
# made, also after a failed `up`. The host has a link of its own to each node (dl-uiI),
# where node I's web UI and API answer at http://198.51.100.(4I-2):8080/ (n1: .2, n2: .6).
# Traffic between the nodes is encrypted (lisp-crypto,
# AES-128-GCM by default, keys agreed through RLOC-probes). `net` builds the same network
# without nodes, for other tunnels on the same topology (scripts/bench-dataplane.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
run=target/mesh-netns
bin=target/release/decent

down() {
    if [ -d "$run" ]; then
        for f in "$run"/*.pid; do
            [ -e "$f" ] || continue
            kill "$(cat "$f")" 2>/dev/null || true
        done
        sleep 0.3
        for f in "$run"/*.pid; do
            [ -e "$f" ] || continue
            kill -9 "$(cat "$f")" 2>/dev/null || true
            rm -f "$f"
        done
    fi
    for l in $(ip -o link show 2>/dev/null | grep -oE 'dl-ui[0-9]+' | sort -u); do
        ip link del "$l" 2>/dev/null || true
    done
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^dl-(n[0-9]+|br)$' || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
}

config() { # i mode probe rekey crypto workers rcvbuf
    local i=$1 mode=$2 probe=$3 rekey=$4 crypto=$5 workers=$6 rcvbuf=$7 seeds=""
    [ "$mode" = replicate ] && seeds='seeds = ["192.0.2.1"]'
    cat <<CFG
name = "n$i"
state_dir = "state-n$i"
[[rloc]]
address = "192.0.2.$i"
[[database]]
prefix = "10.$i.0.0/16"
[[instance]]
instance_id = 0
tun = "lisp0"
addresses = ["10.$i.0.1"]
[peer_group]
group = "224.1.1.1"
delivery = "$mode"
$seeds
[site]
[[site.key]]
key_id = 1
secret = "mesh-netns-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "n*"
[timers]
probe_interval_secs = $probe
rekey_interval_secs = $rekey
[data_plane]
encryption = "$crypto"
$([ "$workers" = auto ] || echo "workers = $workers")
$([ "$rcvbuf" = auto ] || echo "receive_buffer_kib = $rcvbuf")
[api]
listen = "0.0.0.0:8080"
CFG
}

check_n() {
    [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 10 )) || { echo "N must be 1 to 10" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "network namespaces need root" >&2; exit 2; }
}

net() { # n
    local n=$1
    ip netns add dl-br
    ip -n dl-br link add br0 type bridge mcast_snooping 0
    ip -n dl-br link set br0 up
    for i in $(seq 1 "$n"); do
        ip netns add "dl-n$i"
        ip -n dl-br link add "v$i" type veth peer name eth0 netns "dl-n$i"
        ip -n dl-br link set "v$i" master br0 up
        ip -n "dl-n$i" addr add "192.0.2.$i/24" dev eth0
        ip -n "dl-n$i" link set eth0 up
        ip -n "dl-n$i" link set lo up
        ip -n "dl-n$i" route add 224.0.0.0/4 dev eth0
    done
    # A point-to-point link from the host to each node (not through the bridge, which carries
    # the mesh alone), so that a browser or `decent show` on the host reaches node I's API at
    # http://198.51.100.(4I-2):8080/ (the host's end is 198.51.100.(4I-3)). They go with the
    # namespaces.
    for i in $(seq 1 "$n"); do
        ip link add "dl-ui$i" type veth peer name ui0 netns "dl-n$i"
        ip addr add "198.51.100.$((4 * i - 3))/30" dev "dl-ui$i"
        ip link set "dl-ui$i" up
        ip -n "dl-n$i" addr add "198.51.100.$((4 * i - 2))/30" dev ui0
        ip -n "dl-n$i" link set ui0 up
    done
}

up() {
    local n=$1 mode=$2 probe=$3 rekey=$4 crypto=$5 workers=$6 rcvbuf=$7
    check_n "$n"
    [ "$mode" = replicate ] || [ "$mode" = multicast ] || { echo "--mode replicate or multicast" >&2; exit 2; }
    [[ "$probe" =~ ^[0-9]+$ ]] && (( probe >= 1 )) || { echo "--probe takes whole seconds, at least 1" >&2; exit 2; }
    [[ "$rekey" =~ ^[0-9]+$ ]] && (( rekey >= 1 )) || { echo "--rekey takes whole seconds, at least 1" >&2; exit 2; }
    case "$crypto" in aes128-gcm|chacha20-poly1305|none) ;; *) echo "--crypto aes128-gcm, chacha20-poly1305 or none" >&2; exit 2 ;; esac
    [ "$workers" = auto ] || { [[ "$workers" =~ ^[0-9]+$ ]] && (( workers >= 1 )); } || { echo "--workers takes a count, at least 1" >&2; exit 2; }
    [ "$rcvbuf" = auto ] || [[ "$rcvbuf" =~ ^[0-9]+$ ]] || { echo "--rcvbuf takes KiB" >&2; exit 2; }
    if [ ! -x "$bin" ] || [ -n "$(find src Cargo.toml -newer "$bin" -print -quit)" ]; then
        cargo build --release --quiet
    fi
    down
    trap 'echo "mesh-netns: up failed; cleaning up" >&2; down' ERR
    mkdir -p "$run"
    net "$n"
    for i in $(seq 1 "$n"); do
        config "$i" "$mode" "$probe" "$rekey" "$crypto" "$workers" "$rcvbuf" > "$run/n$i.toml"
        ip netns exec "dl-n$i" "$bin" run --config "$run/n$i.toml" > "$run/n$i.log" 2>&1 &
        echo $! > "$run/n$i.pid"
    done
    # Done when every node answers for every other node's prefix.
    local deadline=$((SECONDS + 30))
    for i in $(seq 1 "$n"); do
        for j in $(seq 1 "$n"); do
            [ "$i" = "$j" ] && continue
            until ip netns exec "dl-n$i" "$bin" lig "10.$j.0.1" --to "192.0.2.$i" --json --count 1 --timeout 0.5 2>/dev/null | grep -q '"negative":false'; do
                if (( SECONDS > deadline )); then
                    echo "mesh-netns: node n$i does not know 10.$j.0.0/16 after 30 s (logs: $run)" >&2
                    false
                fi
                sleep 0.2
            done
        done
    done
    trap - ERR
    echo "mesh of $n nodes up ($mode); try: ip netns exec dl-n1 ping -c 3 10.$n.0.1"
    echo "web UI of node 1: http://198.51.100.2:8080/ (decent show site-cache --api http://198.51.100.2:8080)"
}

case "${1:-}" in
    up)
        n="${2:-}"
        mode=replicate probe=10 rekey=600 crypto=aes128-gcm workers=auto rcvbuf=auto
        shift 2 || true
        while [ $# -gt 0 ]; do
            case "$1" in
                --mode) mode="${2:-}" ;;
                --probe) probe="${2:-}" ;;
                --rekey) rekey="${2:-}" ;;
                --crypto) crypto="${2:-}" ;;
                --workers) workers="${2:-}" ;;
                --rcvbuf) rcvbuf="${2:-}" ;;
                *) echo "unknown option $1" >&2; exit 2 ;;
            esac
            shift 2 || { echo "$1 needs a value" >&2; exit 2; }
        done
        up "$n" "$mode" "$probe" "$rekey" "$crypto" "$workers" "$rcvbuf"
        ;;
    net)
        check_n "${2:-}"
        down
        trap 'echo "mesh-netns: net failed; cleaning up" >&2; down' ERR
        net "$2"
        trap - ERR
        ;;
    down) down ;;
    *) echo "usage: $0 up N [--mode replicate|multicast] [--probe SECS] [--rekey SECS] [--crypto SUITE] [--workers W] [--rcvbuf KIB] | net N | down" >&2; exit 2 ;;
esac
