#!/usr/bin/env bash
# veth benchmark (issue 4): two guests in network namespaces on veth pairs, 64-byte UDP
# packets per second and TCP throughput between them, through a Linux bridge and through
# vpcswitch on the same veths with AF_XDP (native and generic mode) and AF_PACKET ports,
# in one run.
#
#   bash benches/veth-pps.sh [SECONDS]     (as root)
#
# UDP: vpcswitch-udpgen writes prebuilt 64-byte frames (18-byte payload) from guest a
# through an AF_PACKET socket for SECONDS, pinned to CPU 1; the rate is what guest b's
# interface received (its rx_packets counter), so no receiving process limits it. The
# switch runs one worker pinned to CPU 0. The bridge forwards in the sender's softirq,
# on CPU 1 too. TCP: iperf3, one flow. Guests run with checksum offload off (`ethtool -K
# eth0 tx off`: AF_XDP carries no offload metadata, so it needs it), so TSO is off on
# every path; the bridge and AF_PACKET are also measured with offloads on.
#
# Needs root, iproute2, iperf3, ethtool. Everything it makes is removed on exit;
# traffic stays inside the namespaces it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
T=vv$$
BIN=target/release/vpcswitch
GEN=target/release/vpcswitch-udpgen
for t in ip iperf3 ethtool taskset; do
  command -v $t >/dev/null || { echo "error: missing $t (apt-get install iproute2 iperf3 ethtool util-linux)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "error: needs root (namespaces, AF_XDP)" >&2; exit 1; }
cargo build --release --locked -q -p vpcswitch-cli -p vpcswitch-benches
DIR=$(mktemp -d)
SW=""
cleanup() {
  [ -n "$SW" ] && kill "$SW" 2>/dev/null && wait "$SW" 2>/dev/null || true
  for n in a b br; do ip netns del $T-$n 2>/dev/null || true; done
  ip link del $T-a 2>/dev/null || true; ip link del $T-b 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "error: $*" >&2; [ -f "$DIR/sw.log" ] && cat "$DIR/sw.log" >&2; exit 1; }

ip netns add $T-a; ip netns add $T-b
MAC_a=02:00:00:09:00:01; MAC_b=02:00:00:09:00:02; IP_a=10.9.0.11; IP_b=10.9.0.12
for g in a b; do
  ip link add $T-$g type veth peer name eth0 netns $T-$g
  mac=MAC_$g; ip_=IP_$g
  ip netns exec $T-$g sh -c "sysctl -qw net.ipv6.conf.all.disable_ipv6=1; ip link set lo up; ip link set eth0 address ${!mac}; ip addr add ${!ip_}/24 dev eth0; ip link set eth0 up"
done
offloads() { # on|off
  for g in a b; do ip netns exec $T-$g ethtool -K eth0 tx "$1" tso "$1" gso "$1" gro "$1" >/dev/null 2>&1 || true; done
}
host_up() { ip link set $T-a up; ip link set $T-b up; }
host_up

measure() { # label offloads
  ip netns exec $T-a ping -q -c 2 -i 0.2 -W 1 $IP_b >/dev/null || fail "$1: no ping"
  local before after sent tcp udp
  before=$(ip netns exec $T-b cat /sys/class/net/eth0/statistics/rx_packets)
  sent=$(ip netns exec $T-a taskset -c 1 $GEN $IP_b:9 --secs "$SECS" --raw eth0 --src-ip $IP_a --dst-mac $MAC_b | sed -n 's/.*: \([0-9]*\) pps.*/\1/p')
  after=$(ip netns exec $T-b cat /sys/class/net/eth0/statistics/rx_packets)
  udp=$(( (after - before) / SECS / 1000 ))
  ip netns exec $T-b iperf3 -s -D -1 -p 5301 --pidfile "$DIR/s.pid" >/dev/null; sleep 0.3
  tcp=$(ip netns exec $T-a timeout $((SECS + 10)) iperf3 -J -c $IP_b -p 5301 -t "$SECS" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))') || tcp="failed"
  kill "$(cat "$DIR/s.pid" 2>/dev/null)" 2>/dev/null || true; sleep 0.2
  echo "| $1 | $2 | $udp | $(( sent / 1000 )) | $tcp |"
}

echo "| path | guest offloads | 64-byte UDP kpps received | kpps offered | TCP Gbit/s (iperf3, 1 flow) |"
echo "| --- | --- | --- | --- | --- |"

# the Linux bridge, in a namespace of its own, on the same veths
ip netns add $T-br
ip -n $T-br link add br0 type bridge; ip -n $T-br link set br0 up
for g in a b; do ip link set $T-$g netns $T-br; ip -n $T-br link set $T-$g master br0 up; done
offloads off; measure "Linux bridge" off
offloads on; measure "Linux bridge" on
for g in a b; do ip -n $T-br link set $T-$g netns 1; done
ip netns del $T-br; host_up

switch() { # label offloads backend...
  local label=$1 off=$2; shift 2
  cat > "$DIR/sw.toml" <<TOML
[switch]
workers = 1
pin_workers = true
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
mac = "$MAC_a"
ips = ["$IP_a"]
backend = { $1, ifname = "$T-a" }
[[ports]]
name = "b"
subnet = "s"
mac = "$MAC_b"
ips = ["$IP_b"]
backend = { $1, ifname = "$T-b" }
TOML
  rm -f "$DIR/ctl.sock"
  $BIN run -c "$DIR/sw.toml" 2>"$DIR/sw.log" & SW=$!
  for i in $(seq 50); do [ -S "$DIR/ctl.sock" ] && break; sleep 0.1; done
  [ -S "$DIR/ctl.sock" ] || fail "vpcswitch did not start"
  local be
  be=$($BIN ctl -s "$DIR/ctl.sock" --json ports | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backend"]["description"])')
  offloads "$off"
  measure "vpcswitch, $label ($be)" "$off"
  kill "$SW"; wait "$SW" 2>/dev/null || true; SW=""
}
switch "AF_XDP" off 'type = "af_xdp", mode = "auto"'
switch "AF_XDP" off 'type = "af_xdp", mode = "skb"'
switch "AF_PACKET" off 'type = "af_packet"'
switch "AF_PACKET" on 'type = "af_packet"'
switch "AF_PACKET, TPACKET_V3 ring" off 'type = "af_packet", ring = true'
switch "AF_PACKET, TPACKET_V3 ring" on 'type = "af_packet", ring = true'
