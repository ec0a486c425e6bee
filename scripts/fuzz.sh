#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZ_SECS, default 20 s each) on the
# stable toolchain (`cargo fuzz run -s none`), starting from the committed seeds in
# fuzz/seeds/<target>. Installs cargo-fuzz if it is missing. A crash fails the run and
# leaves its input in fuzz/artifacts/<target>/: turn it into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECS:-20}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked -q
for t in parse pipeline worker config; do
  corpus=$(mktemp -d)
  echo "== fuzz $t for ${SECS}s"
  log=$(mktemp)
  rc=0
  (cd fuzz && cargo fuzz run -s none "$t" "$corpus" "seeds/$t" -- -max_total_time="$SECS" -print_final_stats=1) >"$log" 2>&1 || rc=$?
  grep -E "^(Done|stat::number_of_executed_units)" "$log" || true
  rm -rf "$corpus"
  if [ "$rc" != 0 ]; then
    tail -40 "$log" >&2
    echo "error: fuzz target $t failed (exit $rc); a crash input is in fuzz/artifacts/$t/ — make it a regression test" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
done
