#!/usr/bin/env bash
# Per-packet lisp-crypto cost against ring's raw AEAD on one core (issue goal: >= 80%).
# Runs the criterion group "lisp-crypto 1400 B" of benches/dataplane.rs pinned to one CPU,
# `rounds` times, and prints, per suite, the median rate of encap+seal and open+decap
# through the real dataplane::Xtr, ring's raw seal and open of the same 1400 bytes, and the
# ratio of the two (min / median / max over the rounds); then the same ratios measured in
# turns within one process (`--interleaved`), with each side's fastest round.
#   bash scripts/bench-crypto-ratio.sh [cpu] [rounds]     (defaults cpu 1, 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
cpu="${1:-1}"
rounds="${2:-3}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# Each round measures ours and ring's raw one after the other, so a ratio is taken within
# a round; the rounds give min / median / max (this machine's speed drifts by 10-30 %
# between minutes, which a single run cannot tell from a change of ours).
for round in $(seq 1 "$rounds"); do
    taskset -c "$cpu" cargo bench --locked --bench dataplane -- --warm-up-time 1 \
        --measurement-time 3 \
        'lisp-crypto 1400 B/(encap.seal|open.decap|ring raw seal|ring raw open) (Aes128Gcm|ChaCha20Poly1305)$' >&2
    python3 - "target/criterion/lisp-crypto 1400 B" >> "$out" <<'PY'
import json, sys, os
d = sys.argv[1]
def ns(name):
    with open(os.path.join(d, name, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]
for suite in ("Aes128Gcm", "ChaCha20Poly1305"):
    for ours, raw in (("encap+seal", "ring raw seal"), ("open+decap", "ring raw open")):
        a, b = ns(f"{ours} {suite}"), ns(f"{raw} {suite}")
        print(suite, ours, 1400 * 8 / a, 1400 * 8 / b, b / a)
PY
done
python3 - "$out" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    suite, step, ours, raw, ratio = line.split()
    rows.setdefault((suite, step), []).append((float(ours), float(raw), float(ratio)))
print(f"{'suite':<18} {'step':<11} {'lisp-decent Gb/s':>17} {'ring raw Gb/s':>14}   ratio min / median / max")
for (suite, step), v in rows.items():
    r = sorted(x[2] for x in v)
    print(f"{suite:<18} {step:<11} {statistics.median(x[0] for x in v):>17.2f} "
          f"{statistics.median(x[1] for x in v):>14.2f}   {r[0]:.0%} / {statistics.median(r):.0%} / {r[-1]:.0%}")
PY
# The same ratios measured in turns (4,096 packets of ours, then 4,096 of ring's, 200
# times), so that the machine's drift falls on both sides of each ratio alike.
echo
taskset -c "$cpu" cargo bench --locked --bench dataplane -- --interleaved 200 2>/dev/null |
    grep -v '^$'
