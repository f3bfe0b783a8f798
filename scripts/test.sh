#!/usr/bin/env bash
# The project's test command (README "Tests"; CI runs it through .ci/run):
# formatting, lints, every test (unit, golden vectors, round trips, never-panic, tshark,
# CLI), and one untimed pass through each benchmark so they keep compiling and running.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --release
cargo bench --locked -- --test
