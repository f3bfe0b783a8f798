#!/usr/bin/env bash
# The compose mesh on this machine: makes the base images locally if they are missing
# (scripts/docker-base-images.sh), builds lisp-decent's image from docker/Dockerfile, starts
# compose.yaml's three-node replicate mesh, and checks that the site caches converge, that
# `docker compose exec n1 ping 10.3.0.1` crosses the encrypted mesh, and that the web UI and
# /metrics answer on the published ports; then the same for the multicast profile.
# Everything it started is removed at the end, also on failure. Needs root and docker.
set -euo pipefail
cd "$(dirname "$0")/.."
project=decent-test
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose -f compose.yaml -p "$project")
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose -f compose.yaml -p "$project")
else
    echo "compose-test: neither 'docker compose' nor docker-compose" >&2
    exit 2
fi
cleanup() {
    "${compose[@]}" --profile multicast down --volumes --remove-orphans >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
    echo "compose-test: $*" >&2
    "${compose[@]}" --profile multicast logs --no-color --tail 40 >&2 || true
    exit 1
}

bash scripts/docker-base-images.sh
echo "compose-test: building the image"
"${compose[@]}" build n1 > target/compose-build.log 2>&1 || { tail -30 target/compose-build.log >&2; fail "image build failed"; }

# mesh PREFIX PORTBASE: waits for convergence, pings across, reads the web UI and metrics.
mesh() {
    local p=$1 base=$2 start=$SECONDS
    echo "compose-test: starting ${p}1 ${p}2 ${p}3"
    "${compose[@]}" --profile multicast up -d "${p}1" "${p}2" "${p}3" >/dev/null 2>&1 || fail "up failed"
    for i in 1 2 3; do
        until out=$("${compose[@]}" exec -T "${p}$i" decent show site-cache --json 2>/dev/null) &&
            [ "$(echo "$out" | grep -oE '"eid": "\[0\]10\.[123]\.0\.0/16"' | sort -u | wc -l)" = 3 ]; do
            (( SECONDS - start < 60 )) || fail "${p}$i's site cache did not converge in 60 s"
            sleep 0.5
        done
    done
    echo "compose-test: ${p} mesh converged in $((SECONDS - start)) s"
    local tries=0
    until "${compose[@]}" exec -T "${p}1" ping -c 3 -i 0.3 -W 2 10.3.0.1 > target/compose-ping.log 2>&1; do
        tries=$((tries + 1))
        (( tries < 10 )) || { cat target/compose-ping.log >&2; fail "${p}1 cannot ping 10.3.0.1"; }
        sleep 1
    done
    grep -q ' 0% packet loss' target/compose-ping.log || { cat target/compose-ping.log >&2; fail "ping lost packets"; }
    echo "compose-test: ${p}1 pings 10.3.0.1: $(grep -o 'rtt.*' target/compose-ping.log)"
    local keys
    keys=$("${compose[@]}" exec -T "${p}1" decent show keys)
    echo "$keys" | grep -q "172\.2[89]\.0\.13 *encap *aes128-gcm" || fail "no encap key toward ${p}3: $keys"
    local cache
    cache=$("${compose[@]}" exec -T "${p}1" decent show map-cache --json)
    echo "$cache" | grep -q '"eid": "\[0\]10\.3\.0\.0/16"' || fail "${p}1's map-cache lacks 10.3.0.0/16: $cache"
    echo "$cache" | grep -qE '"packets": [1-9]' || fail "${p}1's map-cache counts no packets: $cache"
    local page metrics
    page=$(curl -sf "http://127.0.0.1:${base}1/site-cache?eid=10.2.0.1") || fail "web UI of ${p}1 not published"
    echo "$page" | grep -q "<h1>lisp-decent ${p}1</h1>" || fail "the web UI does not name ${p}1"
    echo "$page" | grep -q "Longest match for 10.2.0.1" || fail "site-cache lookup missing"
    metrics=$(curl -sf "http://127.0.0.1:${base}1/metrics") || fail "no /metrics"
    echo "$metrics" | grep -q '^lisp_decent_peers 2$' || fail "metrics do not count 2 peers"
    echo "$metrics" | grep -qE '^lisp_decent_crypto_packets_total\{operation="encrypt"\} [1-9]' || fail "nothing encrypted"
    echo "$metrics" | grep -qE '^lisp_decent_instance_packets_total\{instance_id="0",direction="encapsulated"\} [1-9]' ||
        fail "no encapsulated packets counted for Instance-ID 0"
    echo "$metrics" | grep -qE '^lisp_decent_rloc_bytes_total\{rloc="172\.2[89]\.0\.13",direction="encapsulated"\} [1-9]' ||
        fail "no bytes counted toward ${p}3's RLOC"
    echo "compose-test: ${p} web UI, metrics and keys ok"
    "${compose[@]}" --profile multicast stop "${p}1" "${p}2" "${p}3" >/dev/null 2>&1
}
mesh n 808
mesh m 809
echo "compose-test: ok"
