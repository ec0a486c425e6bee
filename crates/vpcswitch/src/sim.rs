//! Simulated guests: real TCP/IP stacks (smoltcp) on in-memory ports.
//!
//! A [`World`] holds guests and a simulated clock. Each [`World::step`] advances the
//! clock by 5 ms and polls every guest; the switch runs on its own worker threads in
//! real time. smoltcp rate-limits neighbour lookups in *simulated* time, so a generous
//! clock step keeps ARP retries quick.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{Config as IfConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
};

use vpcswitch_backend::memory::MemGuest;
use vpcswitch_backend::PacketBuf;
use vpcswitch_wire::MacAddr;

struct Dev {
    port: MemGuest,
}

/// Receive token.
struct Rx(PacketBuf);
/// Transmit token.
struct Tx<'a>(&'a MemGuest);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0.frame())
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0u8; len];
        let r = f(&mut v);
        self.0.send(&v);
        r
    }
}

impl Device for Dev {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let b = self.port.recv()?;
        Some((Rx(b), Tx(&self.port)))
    }
    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&self.port))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// One guest: a smoltcp interface on a switch port.
pub struct Guest {
    /// port name
    pub name: String,
    /// its MAC
    pub mac: MacAddr,
    iface: Interface,
    dev: Dev,
    sockets: SocketSet<'static>,
    prefix: u8,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guest({})", self.name)
    }
}

impl Guest {
    /// A guest with address `ip/prefix` and default gateway `gw`.
    pub fn new(
        name: &str,
        port: MemGuest,
        mac: MacAddr,
        ip: Ipv4Addr,
        prefix: u8,
        gw: Ipv4Addr,
    ) -> Guest {
        let mut dev = Dev { port };
        let cfg = IfConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_millis(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(gw);
        Guest {
            name: name.into(),
            mac,
            iface,
            dev,
            sockets: SocketSet::new(vec![]),
            prefix,
        }
    }
    /// Adds an address (a VIP taken over).
    pub fn add_ip(&mut self, ip: Ipv4Addr) {
        let p = self.prefix;
        self.iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), p));
        });
    }
    /// Removes an address (a VIP given up).
    pub fn remove_ip(&mut self, ip: Ipv4Addr) {
        self.iface
            .update_ip_addrs(|a| a.retain(|c| c.address() != IpAddress::Ipv4(ip)));
    }
    /// Sends a raw frame (GARP, spoofed frames) from this guest's port.
    pub fn send_raw(&self, frame: &[u8]) -> bool {
        self.dev.port.send(frame)
    }
    fn poll(&mut self, now: Instant) {
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
    }
}

/// Guests and a simulated clock.
#[derive(Debug, Default)]
pub struct World {
    /// the guests
    pub guests: Vec<Guest>,
    now_ms: i64,
}

/// Index of a guest in a [`World`].
pub type GuestId = usize;

impl World {
    /// An empty world.
    pub fn new() -> World {
        World::default()
    }
    /// Adds a guest; returns its index.
    pub fn add(&mut self, g: Guest) -> GuestId {
        self.guests.push(g);
        self.guests.len() - 1
    }
    /// Advances the clock 5 ms, polls every guest, and lets real time pass a little
    /// for the switch's workers.
    pub fn step(&mut self) {
        self.now_ms += 5;
        let now = Instant::from_millis(self.now_ms);
        for _ in 0..2 {
            for g in &mut self.guests {
                g.poll(now);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }

    /// Pings `dst` from guest `from` (`count` echoes, each resent every 40 steps until
    /// answered); returns how many were answered within `steps` steps each.
    pub fn ping(&mut self, from: GuestId, dst: Ipv4Addr, count: u16, steps: usize) -> u16 {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0; 1024]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 8], vec![0; 1024]);
        let mut s = icmp::Socket::new(rx, tx);
        let ident = 0x2200 + from as u16;
        let _ = s.bind(icmp::Endpoint::Ident(ident));
        let h = self.guests[from].sockets.add(s);
        let mut answered = 0;
        for seq in 0..count {
            let mut sent = false;
            for k in 0..steps {
                let sock = self.guests[from].sockets.get_mut::<icmp::Socket>(h);
                // smoltcp drops a packet whose neighbour is unresolved (it sends ARP
                // instead): resend the same echo every 200 ms of simulated time.
                if k % 40 == 0 {
                    sent = false;
                }
                if !sent && sock.can_send() {
                    let repr = Icmpv4Repr::EchoRequest {
                        ident,
                        seq_no: seq,
                        data: b"vpcswitch",
                    };
                    if let Ok(buf) = sock.send(repr.buffer_len(), IpAddress::Ipv4(dst)) {
                        let mut p = Icmpv4Packet::new_unchecked(buf);
                        repr.emit(&mut p, &Default::default());
                        sent = true;
                    }
                }
                let mut got = false;
                while let Ok((payload, _)) = sock.recv() {
                    if let Ok(p) = Icmpv4Packet::new_checked(payload) {
                        if let Ok(Icmpv4Repr::EchoReply { seq_no, .. }) =
                            Icmpv4Repr::parse(&p, &Default::default())
                        {
                            if seq_no == seq {
                                got = true;
                            }
                        }
                    }
                }
                if got {
                    answered += 1;
                    break;
                }
                self.step();
            }
        }
        self.guests[from].sockets.remove(h);
        answered
    }

    /// Opens a TCP listener on guest `server` port `port`.
    pub fn listen(&mut self, server: GuestId, port: u16) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let _ = s.listen(port);
        self.guests[server].sockets.add(s)
    }

    /// Connects from guest `client` to `to`, sends `bytes` bytes and waits until
    /// the server socket `srv` on guest `server` has received all of them (and echoed
    /// nothing). Returns the bytes the server received within `steps` steps.
    pub fn tcp_transfer(
        &mut self,
        client: GuestId,
        server: GuestId,
        srv: SocketHandle,
        to: std::net::SocketAddrV4,
        bytes: usize,
        steps: usize,
    ) -> usize {
        let (dst, port) = (*to.ip(), to.port());
        let mut c = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 65536]),
            tcp::SocketBuffer::new(vec![0; 65536]),
        );
        let local = 40000 + (client as u16) * 10 + (self.now_ms % 10) as u16;
        {
            let g = &mut self.guests[client];
            let cx = g.iface.context();
            if c.connect(cx, (IpAddress::Ipv4(dst), port), local).is_err() {
                return 0;
            }
        }
        let ch = self.guests[client].sockets.add(c);
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        let (mut sent, mut got) = (0usize, 0usize);
        let mut ok = true;
        for _ in 0..steps {
            let cs = self.guests[client].sockets.get_mut::<tcp::Socket>(ch);
            if cs.can_send() && sent < bytes {
                sent += cs.send_slice(&data[sent..]).unwrap_or(0);
            }
            let ss = self.guests[server].sockets.get_mut::<tcp::Socket>(srv);
            while ss.can_recv() {
                let before = got;
                let _ = ss.recv(|b| {
                    for (i, x) in b.iter().enumerate() {
                        if *x != ((before + i) % 251) as u8 {
                            ok = false;
                        }
                    }
                    got += b.len();
                    (b.len(), ())
                });
                if got == before {
                    break;
                }
            }
            if got >= bytes {
                break;
            }
            self.step();
        }
        self.guests[client]
            .sockets
            .get_mut::<tcp::Socket>(ch)
            .abort();
        self.step();
        self.guests[client].sockets.remove(ch);
        if ok {
            got
        } else {
            0
        }
    }

    /// Resets a listener so it accepts a new connection.
    pub fn relisten(&mut self, server: GuestId, h: SocketHandle, port: u16) {
        let s = self.guests[server].sockets.get_mut::<tcp::Socket>(h);
        s.abort();
        let _ = s.listen(port);
    }
}
