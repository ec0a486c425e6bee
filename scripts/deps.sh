#!/usr/bin/env bash
# Installs the Debian packages the demo, the build and the tests use, when run as root
# on a Debian-like system. Sourced by scripts/test.sh and scripts/demo.sh.
# etcd-server: the store the control-plane tests start (crates/vpcswitch-store, SPEC 11);
# protobuf-compiler and libprotobuf-dev: the etcd-client crate's build (protoc and the
# well-known .proto files). prometheus: promtool, which checks the metrics page and the
# shipped alert rules (deploy/prometheus); on a host running systemd, installing it also
# starts a Prometheus server on :9090 (the tests never use it). systemd: systemd-analyze,
# which verifies the shipped unit (deploy/systemd).
# busybox-static: udhcpc, the DHCP client of the DHCP tests (SPEC 13), and the VM's
# userland; qemu-system-x86 and cpio: the VM test (a Debian kernel, fetched with
# apt-get download into the VM cache, booted on a busybox initramfs the test builds).
DEB_PACKAGES="iproute2 iputils-ping iperf3 keepalived tcpdump python3-scapy procps ethtool curl util-linux openvswitch-switch etcd-server protobuf-compiler libprotobuf-dev prometheus systemd dpkg-dev busybox-static qemu-system-x86 cpio"
install_deb_packages() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    local missing="" p
    for p in $DEB_PACKAGES; do
      dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
      echo "== installing Debian packages:$missing"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # shellcheck disable=SC2086
      apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
  else
    echo "note: not root (or no apt-get): the build, the demo and the netns tests need root and:$DEB_PACKAGES" >&2
  fi
}
