#!/usr/bin/env bash
# Brings up the three-node loopback mesh of examples/loopback-mesh (127.0.0.1-3, push mode
# with head-end replication, no root needed), shows each node resolving the other nodes'
# EIDs with `decent lig`, and stops the nodes again (also on Ctrl-C or failure).
#   bash scripts/loopback-mesh.sh          run, show, stop
#   bash scripts/loopback-mesh.sh --keep   leave the nodes running until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true
cargo build --release --quiet
bin=target/release/decent
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
mkdir -p target/loopback-mesh
for i in 1 2 3; do
    "$bin" run --config "examples/loopback-mesh/n$i.toml" > "target/loopback-mesh/n$i.log" 2>&1 &
    pids+=($!)
done
echo "started n1 n2 n3 (logs in target/loopback-mesh/); waiting for the database to converge"
start=$(date +%s%N)
for i in 1 2 3; do
    for j in 1 2 3; do
        [ "$i" = "$j" ] && continue
        until "$bin" lig "10.$j.0.1" --to "127.0.0.$i" --json --count 1 --timeout 0.5 | grep -q '"negative":false'; do
            if (( $(date +%s%N) - start > 20000000000 )); then
                echo "no convergence after 20 s; see target/loopback-mesh/*.log" >&2
                exit 1
            fi
            sleep 0.2
        done
    done
done
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "converged in ${elapsed_ms} ms"
echo
for i in 1 2 3; do
    for j in 1 2 3; do
        [ "$i" = "$j" ] && continue
        echo "== node n$i (127.0.0.$i) resolves 10.$j.0.1"
        "$bin" lig "10.$j.0.1" --to "127.0.0.$i"
        echo
    done
done
echo "web UIs: http://127.0.0.1:8080/ http://127.0.0.2:8080/ http://127.0.0.3:8080/"
echo "  (or: target/release/decent show site-cache --api http://127.0.0.2:8080)"
if $keep; then
    echo "nodes running; Ctrl-C stops them"
    wait
fi
