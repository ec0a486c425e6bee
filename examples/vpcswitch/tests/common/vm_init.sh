#!/bin/busybox sh
# /init of the VM test's initramfs (busybox-static): loads virtio-net, takes an address
# by DHCP from the switch (SPEC 13.1), pings a netns guest and one across subnets,
# exchanges TCP with the netns guest, prints every result as a "VMTEST" line on the
# serial console, and powers off. The test reads the console.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "VMTEST init $(uname -r)"
# when each step ended (seconds since boot), for the test's log
at() { echo "VMTIME $1 $(cut -d' ' -f1 /proc/uptime)"; }
at init
for m in $(cat /modules.order); do
    insmod "/lib/modules/$m.ko" || echo "VMTEST insmod $m failed"
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
echo "VMTEST eth0 $(cat /sys/class/net/eth0/address) driver $(basename "$(readlink /sys/class/net/eth0/device/driver)")"
ip link set eth0 up
at eth0
udhcpc -i eth0 -f -q -n -t 10 -T 2 -A 1 -s /udhcpc.sh -O mtu -O staticroutes
at dhcp
echo "VMTEST addr $(ip -4 -o addr show dev eth0)"
echo "VMTEST routes $(ip -4 route show | tr '\n' ';')"
if ping -c 3 -W 3 @PEER@ >/dev/null; then echo "VMTEST ping-subnet ok"; else echo "VMTEST ping-subnet failed"; fi
if ping -c 3 -W 3 @ROUTED@ >/dev/null; then echo "VMTEST ping-routed ok"; else echo "VMTEST ping-routed failed"; fi
# 2 MiB to the netns guest's server and its answer back: TCP both ways, through the
# guest driver's offloads (checksum, TSO)
at ping
r=$( { echo @BYTES@; dd if=/dev/zero bs=1024 count=@KIB@ 2>/dev/null; } | timeout 60 nc @PEER@ 7000)
echo "VMTEST tcp $r"
at tcp
echo "VMTEST done"
poweroff -f
