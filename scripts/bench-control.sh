#!/usr/bin/env bash
# Whole-process control-plane throughput (issue: >= 500,000 Map-Replies/s on one core at
# 1,000,000 prefixes, and no more than 10 % lower with 100,000 distinct registered RLOCs).
# A node (`decent run`, pinned to CPU 1, lisp-crypto on so that registered RLOCs are probed)
# and the load generator (examples/control_load.rs, pinned to CPU 0: UDP GSO sends from 256
# source addresses, paced at 400,000 requests/s, replies counted without waking on each)
# run inside a network namespace of their own that has only a loopback device, so nothing
# leaves it. The ceiling is examples/control_echo.rs on the same core: a process that only
# reads each request and sends one datagram back, with the same batches (what the kernel
# alone costs per Map-Reply on this machine). Each case runs 3 rounds (a fresh process each)
# and prints min / median / max; ours is also given as a share of the ceiling's median.
# Needs root.
#   bash scripts/bench-control.sh [prefixes] [seconds]     (defaults 1000000 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
prefixes="${1:-1000000}"
seconds="${2:-10}"
cargo build --release --locked --bin decent --example control_load --example control_echo >&2
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
port=40000
one_round() {
    local what="$1" rlocs="$2"
    if [ "$what" = echo ]; then
        ip netns exec "$ns" taskset -c 1 target/release/examples/control_echo \
            --listen 127.0.0.1:4342 --to "127.0.0.9:$port" > "$dir/node.log" 2>&1 &
    else
        ip netns exec "$ns" taskset -c 1 target/release/decent run --config "$dir/node.toml" \
            --log warn > "$dir/node.log" 2>&1 &
    fi
    node_pid=$!
    sleep 0.5
    local extra=()
    [ "$what" = echo ] && extra=(--echo)
    ip netns exec "$ns" taskset -c 0 target/release/examples/control_load \
        --target 127.0.0.1 --key "$key" --prefixes "$prefixes" --rlocs "$rlocs" \
        --seconds "$seconds" --sources 256 --reply-port "$port" "${extra[@]}" \
        2>>"$dir/load.log" | awk '{print $1}'
    kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; node_pid=""
    rm -rf "$dir/state"
}
ceiling=""
run_case() {
    local what="$1" rlocs="$2" label out=()
    for round in 1 2 3; do
        out+=("$(one_round "$what" "$rlocs")")
    done
    if [ "$what" = echo ]; then
        label="kernel echo (the ceiling)"
    else
        label="$(printf '%d prefixes, %6d distinct RLOCs' "$prefixes" "$rlocs")"
    fi
    local med
    med=$(printf '%s\n' "${out[@]}" | sort -n | sed -n 2p)
    [ "$what" = echo ] && ceiling="$med"
    printf '%s\n' "${out[@]}" | sort -n | awk -v l="$label" -v c="$ceiling" -v w="$what" \
        '{v[NR]=$1} END {printf "%-44s min %7.0f  median %7.0f  max %7.0f Map-Replies/s", l, v[1], v[2], v[3];
          if (w != "echo" && c > 0) printf "  (%.0f %% of the ceiling)", 100 * v[2] / c; printf "\n"}'
}
run_case echo 1
run_case node 1
run_case node 100000
tail -n 4 "$dir/load.log" >&2
