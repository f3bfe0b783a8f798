#!/usr/bin/env bash
# Whole-system throughput of the data plane (needs root): two nodes in network namespaces
# (scripts/mesh-netns.sh, node 1 at 192.0.2.1 and node 2 at 192.0.2.2 on one bridge), iperf3
# TCP from node 1's EID to node 2's through the tunnel, 1 and 4 streams. On the same
# topology in the same round:
#   - kernel VXLAN at our TUN's MTU: the ceiling of a clear UDP tunnel on this machine;
#   - lisp-decent clear, AES-128-GCM and ChaCha20-Poly1305, each with 1 and 2 data-plane
#     workers (data_plane.workers);
#   - two WireGuard implementations in user space as anchors: boringtun-cli, wireguard-go.
# For each: Gbit/s; the CPU time the two tunnel endpoints' processes used, as Gbit per
# CPU-second (not for VXLAN, which runs in the kernel), and the same per busy CPU-second of
# the whole machine (iperf3 and the kernel's share of the tunnel included: comparable for
# every tunnel); and ping p50 / p99 while the 4 streams run. Every figure is min / median /
# max over the rounds; ratios (ours to the best anchor, ours clear to VXLAN) are taken
# within a round.
# With --buffers, instead: lisp-decent AES-128-GCM with one worker at data-port receive
# buffers of 256 KiB, 1, 4 and 16 MiB (data_plane.receive_buffer_kib): the throughput /
# queueing trade-off.
#   bash scripts/bench-dataplane.sh [--time SECS] [--rounds N] [--only lisp|anchors] [--buffers]
# Needs iperf3, and for the anchors wireguard-go and wg (Debian: wireguard-go,
# wireguard-tools) and boringtun-cli (cargo install boringtun-cli); an anchor that is not
# installed is reported as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=10
rounds=3
only=all
while [ $# -gt 0 ]; do
    case "$1" in
        --time) secs="${2:-}"; shift 2 ;;
        --rounds) rounds="${2:-}"; shift 2 ;;
        --only) only="${2:-}"; shift 2 ;;
        --buffers) only=buffers; shift ;;
        *) echo "usage: $0 [--time SECS] [--rounds N] [--only lisp|anchors] [--buffers]" >&2; exit 2 ;;
    esac
done
[[ "$secs" =~ ^[0-9]+$ ]] && (( secs >= 2 )) || { echo "--time takes whole seconds, at least 2" >&2; exit 2; }
[[ "$rounds" =~ ^[0-9]+$ ]] && (( rounds >= 1 )) || { echo "--rounds takes a count" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-dataplane: network namespaces need root" >&2; exit 2; }
command -v iperf3 >/dev/null || { echo "bench-dataplane: iperf3 is not installed" >&2; exit 2; }

out=target/bench-dataplane
rm -rf "$out"
mkdir -p "$out"
results="$out/results.tsv"
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

# CPU ticks (user + system) of processes, summed over their threads.
ticks_of() { # pid...
    local sum=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        # Fields after the command name (which may hold spaces): utime is the 12th, stime 13th.
        local rest
        rest=$(sed 's/^.*) //' "/proc/$p/stat")
        set -- $rest
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
# Busy CPU ticks of the whole machine.
machine_ticks() {
    awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat
}

# iperf3 from node 1 to `addr` on node 2 with `streams` streams; with 4 streams a ping runs
# alongside. Appends "round name streams gbps cpu_secs p50 p99" to the results.
measure() { # round name addr streams endpoint-pids...
    local round=$1 name=$2 addr=$3 streams=$4
    shift 4
    local endpoints=("$@")
    local tag="$out/r$round-${name// /_}-$streams"
    ip netns exec dl-n2 iperf3 -s -1 -B "$addr" > "$tag-server.log" 2>&1 &
    local server=$!
    pids+=("$server")
    sleep 0.5
    local ping_pid=""
    if [ "$streams" -gt 1 ]; then
        # 10 ms apart, starting after a second of load, for all but the last second.
        (sleep 1; ip netns exec dl-n1 ping -i 0.01 -c $(( (secs - 2) * 100 )) -W 1 "$addr" > "$tag-ping.log" 2>&1) &
        ping_pid=$!
    fi
    local t0 m0
    t0=$(ticks_of "${endpoints[@]}")
    m0=$(machine_ticks)
    ip netns exec dl-n1 iperf3 -c "$addr" -t "$secs" -P "$streams" -J > "$tag.json" 2> "$tag.err" &
    local client=$!
    local ok=0
    wait "$client" || ok=$?
    local t1 m1 ic
    t1=$(ticks_of "${endpoints[@]}")
    m1=$(machine_ticks)
    [ -n "$ping_pid" ] && wait "$ping_pid" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    if [ "$ok" != 0 ]; then
        echo "bench-dataplane: iperf3 through $name failed (see $tag.*)" >&2
        return
    fi
    python3 - "$tag" "$round" "$name" "$streams" "$((t1 - t0))" "$((m1 - m0))" "$(getconf CLK_TCK)" "${#endpoints[@]}" >> "$results" <<'PY'
import json, re, sys, statistics
tag, rnd, name, streams, ticks, mticks, hz, nend = sys.argv[1:]
d = json.load(open(tag + ".json"))
gbps = d["end"]["sum_received"]["bits_per_second"] / 1e9
secs = d["end"]["sum_received"]["seconds"]
cpu_secs = int(ticks) / int(hz) if int(nend) > 0 else float("nan")
machine_secs = max(int(mticks) / int(hz), 0.001)
p50 = p99 = float("nan")
try:
    rtts = sorted(float(m) for m in re.findall(r"time=([0-9.]+) ms", open(tag + "-ping.log").read()))
    if rtts:
        p50 = rtts[len(rtts) // 2]
        p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
except FileNotFoundError:
    pass
eff = gbps * secs / cpu_secs if cpu_secs == cpu_secs and cpu_secs > 0 else float("nan")
print(f"{rnd}\t{name}\t{streams}\t{gbps:.3f}\t{cpu_secs:.2f}\t{eff:.3f}\t{gbps * secs / machine_secs:.3f}\t{p50:.2f}\t{p99:.2f}")
PY
    tail -1 "$results" | awk -F'\t' '{printf "  round %s %-26s %s stream(s): %6.2f Gbit/s, endpoints %s CPU-s (%s Gbit/CPU-s), machine %s Gbit/CPU-s, ping p50 %s ms p99 %s ms\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
}

run_lisp() { # round name suite workers [rcvbuf-kib]
    local round=$1 name=$2 suite=$3 workers=$4 rcvbuf=${5:-auto}
    bash scripts/mesh-netns.sh up 2 --crypto "$suite" --workers "$workers" --rcvbuf "$rcvbuf" > /dev/null
    # Agree the key (and warm the path) before measuring.
    ip netns exec dl-n1 ping -c 3 -i 0.2 -W 2 10.2.0.1 > /dev/null
    local n1 n2
    n1=$(cat target/mesh-netns/n1.pid)
    n2=$(cat target/mesh-netns/n2.pid)
    measure "$round" "$name" 10.2.0.1 1 "$n1" "$n2"
    measure "$round" "$name" 10.2.0.1 4 "$n1" "$n2"
    bash scripts/mesh-netns.sh down
}

# Kernel VXLAN 10.201.0.1 <-> 10.201.0.2 over the same bridge, at our TUN's MTU (1416 on a
# 1500-byte underlay).
run_vxlan() { # round
    bash scripts/mesh-netns.sh net 2
    for i in 1 2; do
        local j=$((3 - i))
        ip -n "dl-n$i" link add vx0 type vxlan id 42 local "192.0.2.$i" remote "192.0.2.$j" dstport 4789 dev eth0
        ip -n "dl-n$i" addr add "10.201.0.$i/24" dev vx0
        ip -n "dl-n$i" link set vx0 mtu 1416 up
    done
    ip netns exec dl-n1 ping -c 3 -i 0.2 -W 2 10.201.0.2 > /dev/null
    measure "$1" "kernel vxlan" 10.201.0.2 1
    measure "$1" "kernel vxlan" 10.201.0.2 4
    bash scripts/mesh-netns.sh down
}

# A WireGuard tunnel 10.200.0.1 <-> 10.200.0.2 over the same bridge, run by `start` (a
# user-space implementation given the interface name, in the foreground).
run_wg() { # round name start...
    local round=$1 name=$2
    shift 2
    bash scripts/mesh-netns.sh net 2
    local k1 k2 wgpids=()
    k1=$(wg genkey)
    k2=$(wg genkey)
    for i in 1 2; do
        local dev="wgb$i"
        WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
            ip netns exec "dl-n$i" "$@" "$dev" > "$out/$name-n$i.log" 2>&1 &
        pids+=("$!")
        wgpids+=("$!")
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
    # `ip netns exec` runs the implementation as its child: measure the child processes.
    local procs=()
    for p in "${wgpids[@]}"; do
        procs+=("$p")
        procs+=($(pgrep -P "$p" || true))
    done
    measure "$round" "$name" 10.200.0.2 1 "${procs[@]}"
    measure "$round" "$name" 10.200.0.2 4 "${procs[@]}"
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
echo "bench-dataplane: $rounds round(s) of $secs s per run, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
bt=$(find_tool boringtun-cli)
wgo=$(find_tool wireguard-go)
for round in $(seq 1 "$rounds"); do
    if [ "$only" = buffers ]; then
        for k in 256 1024 4096 16384; do
            run_lisp "$round" "lisp-decent aes128-gcm rcvbuf $k KiB" aes128-gcm 1 "$k"
        done
        continue
    fi
    if [ "$only" != anchors ] && [ "$only" != buffers ]; then
        run_vxlan "$round"
        for w in 1 2; do
            run_lisp "$round" "lisp-decent clear w$w" none "$w"
            run_lisp "$round" "lisp-decent aes128-gcm w$w" aes128-gcm "$w"
            run_lisp "$round" "lisp-decent chacha20 w$w" chacha20-poly1305 "$w"
        done
    fi
    if [ "$only" != lisp ] && [ "$only" != buffers ]; then
        if ! command -v wg >/dev/null; then
            echo "  anchors skipped: wg (wireguard-tools) is not installed"
        else
            if [ -n "$bt" ]; then
                run_wg "$round" boringtun-cli "$bt" --foreground --disable-drop-privileges
            else
                echo "  boringtun-cli skipped: not installed (cargo install boringtun-cli)"
            fi
            if [ -n "$wgo" ]; then
                run_wg "$round" wireguard-go "$wgo" -f
            else
                echo "  wireguard-go skipped: not installed (apt-get install wireguard-go)"
            fi
        fi
    fi
done

echo
python3 - "$results" <<'PY'
import sys, statistics
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = defaultdict(dict)  # (name, streams) -> round -> (gbps, cpu, eff, machine eff, p50, p99)
for r, name, s, g, c, e, m, p50, p99 in rows:
    by[(name, int(s))][int(r)] = tuple(map(float, (g, c, e, m, p50, p99)))
def mmm(vals):
    vals = [v for v in vals if v == v]
    if not vals:
        return "-"
    return "%.2f / %.2f / %.2f" % (min(vals), statistics.median(vals), max(vals))
names = []
for name, _ in by:
    if name not in names:
        names.append(name)
print("min / median / max over the rounds")
print("| tunnel (iperf3 TCP) | 1 stream Gbit/s | 4 streams Gbit/s | Gbit per endpoint CPU-s (4 streams) | Gbit per machine CPU-s (4 streams) | ping p50 ms under load | ping p99 ms under load |")
print("|---|---|---|---|---|---|---|")
for n in names:
    one = by.get((n, 1), {})
    four = by.get((n, 4), {})
    col = lambda i: mmm([v[i] for v in four.values()])
    print("| %s | %s | %s | %s | %s | %s | %s |" % (n, mmm([v[0] for v in one.values()]), col(0), col(2), col(3), col(4), col(5)))
anchors = [n for n in names if not n.startswith("lisp-decent") and n != "kernel vxlan"]
ours = [n for n in names if n.startswith("lisp-decent") and "clear" not in n]
print()
for s in (1, 4):
    for o in ours:
        ratios, effs = [], []
        for r, v in by.get((o, s), {}).items():
            best = max((by[(a, s)][r] for a in anchors if r in by.get((a, s), {})), key=lambda x: x[0], default=None)
            if best:
                ratios.append(v[0] / best[0])
                beff = max(by[(a, s)][r][2] for a in anchors if r in by.get((a, s), {}))
                effs.append(v[2] / beff)
        if ratios:
            print("%s, %d stream(s): %s x the best anchor's throughput, %s x its efficiency" % (o, s, mmm(ratios), mmm(effs)))
for s in (1, 4):
    for o in [n for n in names if n.startswith("lisp-decent clear")]:
        ratios = [v[0] / by[("kernel vxlan", s)][r][0] for r, v in by.get((o, s), {}).items() if r in by.get(("kernel vxlan", s), {})]
        if ratios:
            print("%s, %d stream(s): %s %% of kernel VXLAN" % (o, s, mmm([x * 100 for x in ratios])))
PY
