#!/usr/bin/env bash
# The main job in one command: a three-node LISP-Decent mesh on this machine, no docker.
#   bash scripts/demo.sh           build, start, show, ping, summarize, remove everything
#   bash scripts/demo.sh --keep    the same, then leave the mesh running until Ctrl-C
# Each node runs in its own network namespace (scripts/mesh-netns.sh: node I has RLOC
# 192.0.2.I, EID-prefix 10.I.0.0/16 and 10.I.0.1 on its TUN device), in push mode with
# head-end replication and lisp-crypto (AES-128-GCM). The script shows node 1's site cache
# filling as the members register, pings node 3's EID from node 1 through the encrypted
# tunnel, and prints a summary. Everything it created is removed when it ends, also on
# Ctrl-C or failure. Needs root (namespaces, TUN devices); run with sudo otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
case "${1:-}" in
    --keep) keep=true ;;
    "") ;;
    *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME bash "$0" "$@"
    fi
    echo "demo: needs root (network namespaces and TUN devices)" >&2
    exit 2
fi
if ! command -v ip >/dev/null || ! command -v ping >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "== installing iproute2 and iputils-ping (apt-get)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 iputils-ping >/dev/null
    fi
fi
for tool in ip ping cargo python3; do
    command -v "$tool" >/dev/null || { echo "demo: $tool is missing (Debian: iproute2, iputils-ping, python3; Rust from rustup)" >&2; exit 2; }
done

bin=target/release/decent
bg=""
cleanup() {
    [ -n "$bg" ] && kill "$bg" 2>/dev/null || true
    kill $(jobs -p) 2>/dev/null || true
    bash scripts/mesh-netns.sh down
    echo "demo: removed the namespaces, links and nodes it created"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

echo "== building (cargo build --release)"
cargo build --release --quiet
echo "== starting three nodes in namespaces dl-n1, dl-n2, dl-n3"
start=$(date +%s%N)
bash scripts/mesh-netns.sh up 3 > target/demo-up.log 2>&1 &
bg=$!
# Node 1's site cache as it fills: its own prefix first, then the others as they register.
seen=""
show_site_cache() {
    if known=$(ip netns exec dl-n1 "$bin" show site-cache --api http://127.0.0.1:8080 --json 2>/dev/null |
        grep -o '"eid": "\[0\]10\.[0-9]*\.0\.0/16"' | sort -u | sed 's/.*"\(\[0\][^"]*\)"/\1/' | tr '\n' ' '); then
        if [ -n "$known" ] && [ "$known" != "$seen" ]; then
            printf '   %6d ms  n1 site cache: %s\n' $(( ($(date +%s%N) - start) / 1000000 )) "$known"
            seen=$known
        fi
    fi
}
while kill -0 "$bg" 2>/dev/null; do
    show_site_cache
    sleep 0.1
done
if ! wait "$bg"; then
    bg=""
    cat target/demo-up.log >&2
    echo "demo: the mesh did not come up (node logs: target/mesh-netns/)" >&2
    exit 1
fi
bg=""
converge_ms=$(( ($(date +%s%N) - start) / 1000000 ))
# The mesh can be up before the first look caught the cache filling: one look now.
show_site_cache
echo "== converged: every node resolves every other node's EID-prefix (${converge_ms} ms)"
echo
echo "== node 1's site cache (decent show site-cache)"
ip netns exec dl-n1 "$bin" show site-cache --api http://127.0.0.1:8080
echo
echo "== ping 10.3.0.1 (node 3's TUN) from node 1, through the encrypted tunnel"
ping_out=$(ip netns exec dl-n1 ping -c 5 -i 0.2 -W 2 10.3.0.1)
echo "$ping_out"
rtt=$(echo "$ping_out" | sed -n 's|.*= [0-9.]*/\([0-9.]*\)/.*|\1|p')
received=$(echo "$ping_out" | sed -n 's/.* \([0-9]*\) received.*/\1/p')
echo
echo "== lisp-crypto keys of node 1 (decent show keys)"
ip netns exec dl-n1 "$bin" show keys --api http://127.0.0.1:8080
stats=$(ip netns exec dl-n1 "$bin" show stats --api http://127.0.0.1:8080 --json)
encrypted=$(echo "$stats" | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d["encrypted"], d["encapsulated"]["bytes"])')
echo
echo "== summary"
echo "   nodes:                3 (push mode, head-end replication, AES-128-GCM)"
echo "   convergence:          ${converge_ms} ms from start to every node resolving every EID"
echo "   ping 10.3.0.1:        ${received:-0}/5 replies, average RTT ${rtt:-?} ms"
echo "   encrypted by node 1:  ${encrypted% *} packets, ${encrypted#* } bytes of inner packets"
echo "   web UI:               http://198.51.100.2:8080/ (node 2: .6, node 3: .10), metrics at /metrics"
if [ "${received:-0}" = 0 ]; then
    echo "demo: no ping reply through the tunnel (node logs: target/mesh-netns/)" >&2
    exit 1
fi
if $keep; then
    echo
    echo "the mesh keeps running; Ctrl-C removes it"
    # `wait` returns at once on Ctrl-C (a foreground sleep would hold the trap back).
    while true; do
        sleep 3600 &
        wait $! || true
    done
fi
