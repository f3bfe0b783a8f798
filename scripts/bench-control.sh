#!/usr/bin/env bash
# Whole-process control-plane throughput (issue: >= 500,000 Map-Replies/s on one core at
# 1,000,000 prefixes, and no more than 10 % lower with 100,000 distinct registered RLOCs).
# A node (`decent run`, pinned to one CPU, lisp-crypto on so that registered RLOCs are probed)
# and the load generator (examples/control_load.rs, pinned to the other CPU) run inside a
# network namespace of their own that has only a loopback device, so nothing leaves it.
# Each case runs 3 rounds (a fresh node each) and prints min / median / max. Needs root.
#   bash scripts/bench-control.sh [prefixes] [seconds]     (defaults 1000000 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
prefixes="${1:-1000000}"
seconds="${2:-10}"
cargo build --release --locked --bin decent --example control_load >&2
ns="lispd-ctlbench-$$"
dir="$(mktemp -d)"
node_pid=""
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
key="control-bench-key"
cat > "$dir/node.toml" <<TOML
name = "bench"
state_dir = "$dir/state"
[[rloc]]
address = "127.0.0.1"
[[database]]
prefix = "10.1.0.0/16"
[peer_group]
group = "224.1.1.1"
delivery = "replicate"
[site]
[[site.key]]
key_id = 1
secret = "$key"
[[site.allowed]]
prefix = "0.0.0.0/0"
accept_more_specifics = true
[[site.allowed]]
name = "*"
[timers]
requests_per_second = 1000000
[data_plane]
encryption = "aes128-gcm"
[api]
listen = "off"
TOML
run_case() {
    local rlocs="$1" out=()
    for round in 1 2 3; do
        ip netns exec "$ns" taskset -c 1 target/release/decent run --config "$dir/node.toml" \
            --log warn > "$dir/node.log" 2>&1 &
        node_pid=$!
        sleep 0.5
        r=$(ip netns exec "$ns" taskset -c 0 target/release/examples/control_load \
            --target 127.0.0.1 --key "$key" --prefixes "$prefixes" --rlocs "$rlocs" \
            --seconds "$seconds" --sources 256 2>>"$dir/load.log" | awk '{print $1}')
        out+=("$r")
        kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""
        rm -rf "$dir/state"
    done
    printf '%s\n' "${out[@]}" | sort -n | awk -v p="$prefixes" -v r="$rlocs" \
        '{v[NR]=$1} END {printf "%d prefixes, %6d distinct RLOCs: min %.0f  median %.0f  max %.0f Map-Replies/s\n", p, r, v[1], v[2], v[3]}'
}
run_case 1
run_case 100000
tail -n 4 "$dir/load.log" >&2
