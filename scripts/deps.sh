#!/usr/bin/env bash
# Installs the Debian packages the demo and the netns end-to-end tests use, when run as
# root on a Debian-like system. Sourced by scripts/test.sh and scripts/demo.sh.
DEB_PACKAGES="iproute2 iputils-ping iperf3 keepalived tcpdump python3-scapy procps ethtool curl util-linux openvswitch-switch"
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
    echo "note: not root (or no apt-get): the demo and the netns tests need root and:$DEB_PACKAGES" >&2
  fi
}
