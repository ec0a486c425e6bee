#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit, property and integration
# tests. Installs what it needs (rustfmt and clippy through rustup) first.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "error: cargo is missing: install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
if need rustup; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# Debian packages the end-to-end suite uses (guests in network namespaces)
. scripts/deps.sh
install_deb_packages

# The release and bench profiles link with thin LTO and one codegen unit (the speed of
# shipped binaries and of the figures in docs/benchmarks.md). For this run, which links
# some hundred test and harness binaries and measures nothing, they build without LTO and
# with parallel codegen instead: the same optimisation level; the test build went from
# 15 to 5 minutes (CI run of 2026-12-02: 43.5 minutes in all before, 31.4 after).
# `bash scripts/package.sh` and the benchmark commands run outside this script keep LTO.
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16

# each phase's start, as minutes:seconds since the run began (CI has a time budget)
phase() { printf '== [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "API docs build without a warning (cargo doc -D warnings; missing_docs is on in every crate)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked -q
phase "the library crates package for crates.io (cargo package --workspace: versions on path dependencies, metadata)"
cargo package --workspace --no-verify --locked --allow-dirty -q \
  --exclude vpcswitch-cli --exclude vpcswitch-benches --exclude vpcswitch-example-udp-backend
phase "cargo test (release: the property and integration suites do real work)"
cargo test --workspace --release --locked
phase "benchmarks compile and run once (criterion --test mode, pps harness smoke)"
cargo bench --workspace --locked -- --test >/dev/null
cargo run --release --locked -p vpcswitch-benches --bin vpcswitch-pps -- --smoke --scaling
phase "side-by-side harness smoke (vpcswitch-bench --smoke: every contender once, 1 s each)"
cargo build --release --locked -q -p vpcswitch-cli -p vpcswitch-benches
target/release/vpcswitch-bench --smoke
phase "overlay harness smoke (vpcswitch-overlay-bench --smoke: two hosts, linux-vxlan and vpcswitch, 1 s each)"
target/release/vpcswitch-overlay-bench --smoke
phase "packaging (cargo deb; the .deb installed into a throwaway root, its layout checked, removed)"
bash scripts/package.sh --check
phase "fuzzing (bounded)"
bash scripts/fuzz.sh
phase "all tests passed"
