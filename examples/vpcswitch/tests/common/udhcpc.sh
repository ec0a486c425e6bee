#!/bin/sh
# The udhcpc (busybox) event script of the DHCP tests (SPEC 13.1), in a netns guest and
# in the VM: applies the lease with ip(8) and appends what it got to $LEASE_FILE (the
# console when unset), one line per event.
out=${LEASE_FILE:-/dev/console}
event=$1
case "$event" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    ip addr add "$ip/$mask" dev "$interface" 2>/dev/null
    if [ -n "$staticroutes" ]; then
        # option 121: "destination/len gateway" pairs (the router option is ignored)
        set -- $staticroutes
        while [ $# -ge 2 ]; do
            ip route add "$1" via "$2" dev "$interface" 2>/dev/null
            shift 2
        done
    elif [ -n "$router" ]; then
        for r in $router; do ip route add default via "$r" dev "$interface" 2>/dev/null; done
    fi
    echo "DHCP $event ip=$ip mask=$mask router=$router dns=$dns domain=$domain mtu=$mtu staticroutes=$staticroutes lease=$lease serverid=$serverid" >> "$out"
    ;;
nak)
    echo "DHCP nak $message" >> "$out"
    ;;
esac
exit 0
