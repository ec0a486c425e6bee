#!/usr/bin/env bash
# Runs the switch on the demo topology: guests in network namespaces, keepalived
# sharing a VIP, a live failover. Needs root; installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is missing: install a Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
. scripts/deps.sh
install_deb_packages
exec cargo run --release --locked -q -p vpcswitch-cli --bin vpcswitch -- demo "$@"
