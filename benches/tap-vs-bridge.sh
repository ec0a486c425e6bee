#!/usr/bin/env bash
# TAP benchmark: two guests in network namespaces, TCP throughput (iperf3) and 64-byte
# UDP packets per second (iperf3 -u), through vpcswitch (TAP ports, and AF_PACKET on
# veth pairs) and through a Linux bridge (veth ports), with the guests' offloads on and
# off, in one run.
#
#   bash benches/tap-vs-bridge.sh [SECONDS]     (as root)
#
# Needs root, iproute2, iperf3, ethtool. Everything it makes is removed on exit.
# Traffic stays inside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
T=vsb$$
BIN=target/release/vpcswitch
for t in ip iperf3 ethtool; do
  command -v $t >/dev/null || { echo "error: missing $t (apt-get install iproute2 iperf3 ethtool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: needs root (namespaces, TAP devices)" >&2; exit 1; }
cargo build --release --locked -q -p vpcswitch-cli
DIR=$(mktemp -d)
SW=""
cleanup() {
  [ -n "$SW" ] && kill "$SW" 2>/dev/null && wait "$SW" 2>/dev/null || true
  for n in a b br; do ip netns del $T-$n 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "error: $*" >&2; [ -f "$DIR/sw.log" ] && cat "$DIR/sw.log" >&2; exit 1; }

guest() { # ns ifname mac ip
  ip netns exec "$1" sh -c "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set lo up; ip link set $2 address $3; ip addr add $4/24 dev $2; ip link set $2 up"
}
offloads() { # ns ifname on|off
  ip netns exec "$1" ethtool -K "$2" tx "$3" tso "$3" gso "$3" gro "$3" >/dev/null 2>&1 || true
}
measure() { # label
  local srv
  ip netns exec $T-b iperf3 -s -D -p 5301 --pidfile "$DIR/s.pid" >/dev/null; sleep 0.3
  local tcp udp
  tcp=$(ip netns exec $T-a iperf3 -J -c 10.9.0.12 -p 5301 -t "$SECS" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))')
  udp=$(ip netns exec $T-a iperf3 -J -u -b 0 -l 18 -c 10.9.0.12 -p 5301 -t "$SECS" | python3 -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum"]; print("%.0f" % ((e["packets"]-e["lost_packets"])/e["seconds"]/1e3))')
  kill "$(cat "$DIR/s.pid")" 2>/dev/null || true; sleep 0.2
  echo "| $1 | $tcp | $udp |"
}

echo "| path | TCP Gbit/s (iperf3, 1 flow) | 64-byte UDP kpps received |"
echo "| --- | --- | --- |"

# Linux bridge on veth
ip netns add $T-a; ip netns add $T-b; ip netns add $T-br
ip -n $T-br link add br0 type bridge; ip -n $T-br link set br0 up
for g in a b; do
  ip link add $T-$g type veth peer name eth0 netns $T-$g
  ip link set $T-$g netns $T-br; ip -n $T-br link set $T-$g master br0 up
done
guest $T-a eth0 02:00:00:09:00:01 10.9.0.11; guest $T-b eth0 02:00:00:09:00:02 10.9.0.12
measure "Linux bridge (veth), offloads on"
offloads $T-a eth0 off; offloads $T-b eth0 off
measure "Linux bridge (veth), offloads off"
for n in a b br; do ip netns del $T-$n; done

# vpcswitch on TAP, with and without the TAP offloads (virtio-net header, TSO)
switch_run() { # offload true|false
cat > "$DIR/sw.toml" <<TOML
[switch]
workers = 1
control_socket = "$DIR/ctl.sock"
[[vpcs]]
name = "v"
cidrs = ["10.9.0.0/16"]
[[subnets]]
name = "s"
vpc = "v"
cidr = "10.9.0.0/24"
[[ports]]
name = "a"
subnet = "s"
mac = "02:00:00:09:00:01"
ips = ["10.9.0.11"]
backend = { type = "tap", ifname = "$T-ta", offload = $1 }
[[ports]]
name = "b"
subnet = "s"
mac = "02:00:00:09:00:02"
ips = ["10.9.0.12"]
backend = { type = "tap", ifname = "$T-tb", offload = $1 }
TOML
$BIN run -c "$DIR/sw.toml" 2>"$DIR/sw.log" & SW=$!
for i in $(seq 50); do [ -S "$DIR/ctl.sock" ] && break; sleep 0.1; done
[ -S "$DIR/ctl.sock" ] || fail "vpcswitch did not start"
ip netns add $T-a; ip netns add $T-b
for g in a b; do ip link set $T-t$g netns $T-$g; ip -n $T-$g link set $T-t$g name eth0; done
guest $T-a eth0 02:00:00:09:00:01 10.9.0.11; guest $T-b eth0 02:00:00:09:00:02 10.9.0.12
measure "vpcswitch (TAP, 1 worker), TAP offload $1"
kill "$SW"; wait "$SW" 2>/dev/null || true; SW=""
ip netns del $T-a; ip netns del $T-b; rm -f "$DIR/ctl.sock"
}
switch_run true
switch_run false

# vpcswitch on AF_PACKET: the same veth pairs as the bridge, host ends opened by the switch
packet_run() {
ip netns add $T-a; ip netns add $T-b
for g in a b; do
  ip link add $T-p$g type veth peer name eth0 netns $T-$g
  ip link set $T-p$g up
done
guest $T-a eth0 02:00:00:09:00:01 10.9.0.11; guest $T-b eth0 02:00:00:09:00:02 10.9.0.12
sed -e "s/type = \"tap\", ifname = \"$T-ta\", offload = true/type = \"af_packet\", ifname = \"$T-pa\"/" \
    -e "s/type = \"tap\", ifname = \"$T-tb\", offload = true/type = \"af_packet\", ifname = \"$T-pb\"/" \
    "$DIR/sw.toml" > "$DIR/sw-p.toml"
grep -q af_packet "$DIR/sw-p.toml" || fail "could not write the AF_PACKET configuration"
$BIN run -c "$DIR/sw-p.toml" 2>"$DIR/sw.log" & SW=$!
for i in $(seq 50); do [ -S "$DIR/ctl.sock" ] && break; sleep 0.1; done
[ -S "$DIR/ctl.sock" ] || fail "vpcswitch did not start"
measure "vpcswitch (AF_PACKET on veth, 1 worker), offloads on"
kill "$SW"; wait "$SW" 2>/dev/null || true; SW=""
ip netns del $T-a; ip netns del $T-b; rm -f "$DIR/ctl.sock"
}
# the TAP runs left the offload=false config; write the offload=true one back first
sed -i 's/offload = false/offload = true/' "$DIR/sw.toml"
packet_run
