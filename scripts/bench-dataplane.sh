#!/usr/bin/env bash
# Whole-system throughput of the data plane (needs root): two nodes in network namespaces
# (scripts/mesh-netns.sh, node 1 at 192.0.2.1 and node 2 at 192.0.2.2 on one bridge), iperf3
# TCP from 10.1.0.1 to 10.2.0.1 through the tunnel with 1 and 4 streams: lisp-decent clear,
# with AES-128-GCM (suite 5) and with ChaCha20-Poly1305 (suite 6); then, on the same
# topology, two WireGuard implementations in user space as anchors: boringtun-cli and
# wireguard-go. Prints Gbit/s for each and our encrypted figures as a ratio of the best
# anchor's.
#   bash scripts/bench-dataplane.sh [--time SECS] [--only lisp|anchors]
# Needs iperf3, and for the anchors wireguard-go and wg (Debian: wireguard-go,
# wireguard-tools) and boringtun-cli (cargo install boringtun-cli); an anchor that is not
# installed is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=10
only=all
while [ $# -gt 0 ]; do
    case "$1" in
        --time) secs="${2:-}"; shift 2 ;;
        --only) only="${2:-}"; shift 2 ;;
        *) echo "usage: $0 [--time SECS] [--only lisp|anchors]" >&2; exit 2 ;;
    esac
done
[[ "$secs" =~ ^[0-9]+$ ]] && (( secs >= 1 )) || { echo "--time takes whole seconds" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-dataplane: network namespaces need root" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "bench-dataplane: iperf3 is not installed" >&2; exit 2; }

out=target/bench-dataplane
mkdir -p "$out"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    pids=()
    bash scripts/mesh-netns.sh down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A result
# iperf3 from node 1 to the server address on node 2; prints Gbit/s received.
measure() { # name server-address streams
    local name=$1 addr=$2 streams=$3
    ip netns exec dl-n2 iperf3 -s -1 -B "$addr" > "$out/$name-$streams-server.log" 2>&1 &
    local server=$!
    pids+=("$server")
    sleep 0.5
    if ! ip netns exec dl-n1 iperf3 -c "$addr" -t "$secs" -P "$streams" -J > "$out/$name-$streams.json" 2> "$out/$name-$streams.err"; then
        echo "bench-dataplane: iperf3 through $name failed (see $out/$name-$streams.*)" >&2
        result[$name,$streams]=failed
        kill "$server" 2>/dev/null || true
        return
    fi
    wait "$server" 2>/dev/null || true
    result[$name,$streams]=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("%.2f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))' "$out/$name-$streams.json")
    printf '  %-24s %d stream(s): %s Gbit/s\n' "$name" "$streams" "${result[$name,$streams]}"
}

run_lisp() { # name suite
    local name=$1 suite=$2
    bash scripts/mesh-netns.sh up 2 --crypto "$suite" > /dev/null
    # Agree the key (and warm the path) before measuring.
    ip netns exec dl-n1 ping -c 3 -i 0.2 -W 2 10.2.0.1 > /dev/null
    measure "$name" 10.2.0.1 1
    measure "$name" 10.2.0.1 4
    bash scripts/mesh-netns.sh down
}

# A WireGuard tunnel 10.200.0.1 <-> 10.200.0.2 over the same bridge, run by `start` (a
# user-space implementation given the interface name, in the foreground).
run_wg() { # name start...
    local name=$1
    shift
    bash scripts/mesh-netns.sh net 2
    local k1 k2
    k1=$(wg genkey)
    k2=$(wg genkey)
    for i in 1 2; do
        local dev="wgb$i"
        WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
            ip netns exec "dl-n$i" "$@" "$dev" > "$out/$name-n$i.log" 2>&1 &
        pids+=("$!")
    done
    for i in 1 2; do
        local dev="wgb$i" j=$((3 - i)) key peer
        key=$([ "$i" = 1 ] && echo "$k1" || echo "$k2")
        peer=$([ "$i" = 1 ] && echo "$k2" || echo "$k1")
        local deadline=$((SECONDS + 10))
        until [ -S "/var/run/wireguard/$dev.sock" ]; do
            (( SECONDS < deadline )) || { echo "bench-dataplane: $name did not start (see $out/$name-n$i.log)" >&2; return 1; }
            sleep 0.1
        done
        ip netns exec "dl-n$i" wg set "$dev" private-key <(echo "$key") listen-port 51820 \
            peer "$(echo "$peer" | wg pubkey)" allowed-ips "10.200.0.$j/32" endpoint "192.0.2.$j:51820"
        ip -n "dl-n$i" addr add "10.200.0.$i/24" dev "$dev"
        ip -n "dl-n$i" link set "$dev" mtu 1420 up
    done
    ip netns exec dl-n1 ping -c 3 -i 0.2 -W 2 10.200.0.2 > /dev/null
    measure "$name" 10.200.0.2 1
    measure "$name" 10.200.0.2 4
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    pids=()
    bash scripts/mesh-netns.sh down
}

find_tool() {
    command -v "$1" 2>/dev/null || { [ -x "$HOME/.cargo/bin/$1" ] && echo "$HOME/.cargo/bin/$1"; } \
        || { [ -x "/opt/boringtun/bin/$1" ] && echo "/opt/boringtun/bin/$1"; } || true
}

cargo build --release --quiet
echo "bench-dataplane: $secs s per run, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
anchors=()
if [ "$only" != lisp ]; then
    bt=$(find_tool boringtun-cli)
    wgo=$(find_tool wireguard-go)
    if ! command -v wg >/dev/null; then
        echo "  anchors skipped: wg (wireguard-tools) is not installed"
    else
        if [ -n "$bt" ]; then
            run_wg boringtun-cli "$bt" --foreground --disable-drop-privileges
            anchors+=(boringtun-cli)
        else
            echo "  boringtun-cli skipped: not installed (cargo install boringtun-cli)"
        fi
        if [ -n "$wgo" ]; then
            run_wg wireguard-go "$wgo" -f
            anchors+=(wireguard-go)
        else
            echo "  wireguard-go skipped: not installed (apt-get install wireguard-go)"
        fi
    fi
fi
ours=()
if [ "$only" != anchors ]; then
    run_lisp "lisp-decent clear" none
    run_lisp "lisp-decent aes128-gcm" aes128-gcm
    run_lisp "lisp-decent chacha20" chacha20-poly1305
    ours=("lisp-decent aes128-gcm" "lisp-decent chacha20")
fi

echo
printf '| %-24s | %12s | %12s |\n' "tunnel (iperf3 TCP)" "1 stream" "4 streams"
printf '|%s|%s|%s|\n' "--------------------------" "--------------" "--------------"
for name in "${anchors[@]}" ${ours[@]+"lisp-decent clear"} ${ours[@]+"${ours[@]}"}; do
    printf '| %-24s | %7s Gb/s | %7s Gb/s |\n' "$name" "${result[$name,1]}" "${result[$name,4]}"
done
if [ ${#anchors[@]} -gt 0 ] && [ ${#ours[@]} -gt 0 ]; then
    echo
    for s in 1 4; do
        best=0 bestname=""
        for a in "${anchors[@]}"; do
            v=${result[$a,$s]}
            [ "$v" = failed ] && continue
            if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$v" "$best"; then
                best=$v bestname=$a
            fi
        done
        [ -n "$bestname" ] || continue
        for o in "${ours[@]}"; do
            v=${result[$o,$s]}
            [ "$v" = failed ] && continue
            python3 -c 'import sys; print("%s, %s stream(s): %.2fx the best anchor (%s, %s Gbit/s)" % (sys.argv[1], sys.argv[2], float(sys.argv[3]) / float(sys.argv[4]), sys.argv[5], sys.argv[4]))' \
                "$o" "$s" "$v" "$best" "$bestname"
        done
    done
fi
