#!/usr/bin/env bash
# Per-packet lisp-crypto cost against ring's raw AEAD on one core (issue goal: >= 70%).
# Runs the criterion group "lisp-crypto 1400 B" of benches/dataplane.rs pinned to one CPU and
# prints, per suite, the rate of encap+seal and open+decap and their ratio to ring's raw
# seal and open of the same 1400 bytes.
#   bash scripts/bench-crypto-ratio.sh [cpu]     (default cpu 1)
set -euo pipefail
cd "$(dirname "$0")/.."
cpu="${1:-1}"
taskset -c "$cpu" cargo bench --locked --bench dataplane -- 'lisp-crypto 1400 B' >&2
dir="target/criterion/lisp-crypto 1400 B"
python3 - "$dir" <<'PY'
import json, sys, os
d = sys.argv[1]
def ns(name):
    with open(os.path.join(d, name, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]
gbit = lambda t: 1400 * 8 / t  # bits per ns = Gbit/s
print(f"{'suite':<18} {'step':<11} {'lisp-decent':>12} {'ring raw':>10} {'ratio':>6}")
for suite in ("Aes128Gcm", "ChaCha20Poly1305"):
    for ours, raw in (("encap+seal", "ring raw seal"), ("open+decap", "ring raw open")):
        a, b = ns(f"{ours} {suite}"), ns(f"{raw} {suite}")
        print(f"{suite:<18} {ours:<11} {gbit(a):>8.2f} Gb/s {gbit(b):>6.2f} Gb/s {b / a:>6.0%}")
PY
