//! The answers of the table commands (`ports`, `vips`, `eips`, `neighbors`, `routes`,
//! `stats`, `hosts`) and of `trace`: a text table for people and the same rows as JSON data.
//! They read the running snapshot and counters and change nothing. The JSON is the
//! types of [`super::schema`] (`docs/ctl-json.md`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value;
use vpcswitch::core::{Out, Snapshot, Verdict};

use super::schema::{self as js, DropsByReason};
use super::{err, ok_data, unhex};
use crate::running::owner_name;
use crate::Running;

/// A text column's width: its longest cell, at least `min` (the width an IPv4-only
/// table had; IPv6 addresses are up to 39 characters, prefixes up to 43).
fn column_width(cells: impl Iterator<Item = usize>, min: usize) -> usize {
    cells.max().unwrap_or(0).max(min)
}

/// `ports`: name (DOWN when its device is gone), subnet, MAC, IPs (IPv4, then IPv6),
/// src/dst check, backend, packet counters.
pub fn ports(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let stats = r.switch.stats();
    let backends = r.switch.backends();
    let caps = r.switch.capabilities();
    let counters: std::collections::HashMap<String, _> =
        r.switch.device_counters().into_iter().collect();
    let mut cells: Vec<[String; 8]> = vec![[
        "PORT", "SUBNET", "MAC", "IPS", "CHECK", "BACKEND", "RX", "TX",
    ]
    .map(String::from)];
    let mut rows = vec![];
    for p in snap.ports.iter().flatten() {
        let st = stats.port(&p.name).cloned().unwrap_or_default();
        let subnet = snap.subnets.get(p.subnet as usize).map(|s| s.name.clone());
        let ips: Vec<Ipv4Addr> = p.ips.iter().map(|i| Ipv4Addr::from(*i)).collect();
        let ips6: Vec<Ipv6Addr> = p.ips6.to_vec();
        let be = backends.get(&p.name).cloned().unwrap_or_default();
        let shown_ips: Vec<String> = ips
            .iter()
            .map(Ipv4Addr::to_string)
            .chain(ips6.iter().map(Ipv6Addr::to_string))
            .collect();
        let name = if st.down {
            format!("{} (DOWN)", p.name)
        } else {
            p.name.clone()
        };
        cells.push([
            name,
            subnet.clone().unwrap_or_else(|| "-".into()),
            p.mac.to_string(),
            shown_ips.join(","),
            if p.src_dst_check { "on" } else { "off" }.into(),
            be.clone(),
            st.rx_packets.to_string(),
            st.tx_packets.to_string(),
        ]);
        rows.push(js::PortRow {
            name: p.name.clone(),
            down: st.down,
            subnet,
            mac: p.mac.to_string(),
            ips,
            ips6,
            src_dst_check: p.src_dst_check,
            backend: (!be.is_empty()).then(|| {
                let c = caps.get(&p.name).cloned().unwrap_or_default();
                js::Backend {
                    kind: if c.kind.is_empty() {
                        be.split_whitespace().next().unwrap_or_default().to_string()
                    } else {
                        c.kind.clone()
                    },
                    description: be,
                    interface: c.interface,
                    queues: c.queues,
                    mtu_bytes: c.mtu,
                    checksum_offload: c.checksum_offload,
                    segmentation_offload: c.segmentation_offload,
                    zero_copy: c.zero_copy,
                    mode: c.mode,
                    device: counters.get(&p.name).map(|d| js::DeviceCounters {
                        rx_packets: d.rx_packets,
                        tx_packets: d.tx_packets,
                        rx_bytes: d.rx_bytes,
                        tx_bytes: d.tx_bytes,
                        rx_dropped_packets: d.rx_dropped,
                        tx_dropped_packets: d.tx_dropped,
                        rx_errors: d.rx_errors,
                        tx_errors: d.tx_errors,
                    }),
                }
            }),
            rx_packets: st.rx_packets,
            tx_packets: st.tx_packets,
            rx_bytes: st.rx_bytes,
            tx_bytes: st.tx_bytes,
        });
    }
    // the IPS column as wide as its longest list (an IPv6 address is up to 39)
    let w = column_width(cells.iter().map(|c| c[3].len()), 18);
    let text: String = cells
        .iter()
        .map(|c| {
            format!(
                "{:<12} {:<10} {:<17} {:<w$} {:<6} {:<16} {:>10} {:>10}\n",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
            )
        })
        .collect();
    ok_data(text, &rows)
}

/// `vips`: each VIP (IPv4 or IPv6, SPEC 12.1), its ports, learned owner (from its ARP,
/// or an IPv6 VIP's from its unsolicited neighbour advertisement, SPEC 12.4), moves,
/// time since the last move and the switch's own failover time (new owner learned ->
/// first frame sent to it).
pub fn vips(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let now = r.switch.now_ns();
    // the IP column as wide as its longest address (an IPv6 VIP's is up to 39)
    let w = column_width(snap.vips.iter().map(|v| v.addr().to_string().len()), 15);
    let row = |c: [&str; 8]| {
        format!(
            "{:<14} {:<10} {:<w$} {:<24} {:<10} {:>6} {:>14} {:>12}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let mut text = row([
        "VIP",
        "SUBNET",
        "IP",
        "PORTS",
        "OWNER",
        "MOVES",
        "LAST MOVE",
        "FIRST PKT",
    ]);
    let mut rows = vec![];
    for (i, v) in snap.vips.iter().enumerate() {
        let cell = snap.vip_cell(i as u32);
        let owner = owner_name(&snap, cell);
        let ports: Vec<String> = v
            .ports
            .iter()
            .filter_map(|p| snap.port(*p))
            .map(|p| p.name.clone())
            .collect();
        let ago = (cell.moves() > 0).then(|| now.saturating_sub(cell.last_move_ns()) as f64 / 1e9);
        let first_us = cell.first_packet_ns().map(|ns| ns as f64 / 1e3);
        let subnet = &snap.subnets[v.subnet as usize].name;
        text += &row([
            &v.name,
            subnet,
            &v.addr().to_string(),
            &ports.join(","),
            owner.as_deref().unwrap_or("-"),
            &cell.moves().to_string(),
            &ago.map_or("-".into(), |a| format!("{a:.1} s ago")),
            &first_us.map_or("-".into(), |u| format!("{u:.1} µs")),
        ]);
        rows.push(js::VipRow {
            name: v.name.clone(),
            subnet: subnet.clone(),
            ip: v.addr(),
            ports,
            owner,
            moves: cell.moves(),
            // the move's instant on the wall clock (comparable across switches)
            moved_unix_us: (cell.moves() > 0).then(|| {
                crate::running::unix_us(std::time::SystemTime::now())
                    .saturating_sub(now.saturating_sub(cell.last_move_ns()) / 1000)
            }),
            first_packet_us: first_us,
        });
    }
    ok_data(text, &rows)
}

/// `eips`: the uplink and its next hop, then each EIP, its target and where it is now.
pub fn eips(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let mut text = String::new();
    let uplink = snap.uplink.as_ref().map(|u| {
        let nh = snap.next_hop_mac();
        let name = snap.port(u.port).map(|p| p.name.clone());
        text += &format!(
            "uplink {} ({}), next hop {} at {}\n\n",
            name.as_deref().unwrap_or("?"),
            u.mac,
            Ipv4Addr::from(u.next_hop),
            nh.map_or("(not resolved yet)".to_string(), |m| m.to_string())
        );
        js::Uplink {
            name,
            mac: u.mac.to_string(),
            next_hop: Ipv4Addr::from(u.next_hop),
            next_hop_mac: nh.map(|m| m.to_string()),
            static_next_hop: u.static_next_hop,
        }
    });
    let row = |c: [&str; 4]| format!("{:<16} {:<22} {:<15} {}\n", c[0], c[1], c[2], c[3]);
    text += &row(["EIP", "TARGET", "PRIVATE IP", "NOW AT"]);
    let mut rows = vec![];
    for x in snap.config.all_eips() {
        let (target, at) = match (&x.vip, &x.port) {
            (Some(v), _) => (
                Some(js::EipTarget::Vip { vip: v.clone() }),
                snap.vip_owner_name(v).map(String::from),
            ),
            (_, Some(p)) => (
                Some(js::EipTarget::Port { port: p.clone() }),
                Some(p.clone()),
            ),
            _ => (None, None),
        };
        let shown = match &target {
            Some(js::EipTarget::Vip { vip }) => format!("vip {vip}"),
            Some(js::EipTarget::Port { port }) => format!("port {port}"),
            None => "-".into(),
        };
        let private = snap.config.eip_target(&x).map(|(_, ip)| ip);
        text += &row([
            &x.ip.to_string(),
            &shown,
            &private.map_or("-".into(), |ip| ip.to_string()),
            at.as_deref().unwrap_or("(no owner)"),
        ]);
        rows.push(js::EipRow {
            eip: x.ip,
            target,
            private_ip: private,
            owner_port: at,
        });
    }
    ok_data(text, &js::EipsAnswer { uplink, eips: rows })
}

/// `neighbors`: what the switch answers ARP and neighbour solicitations with (SPEC 3.4,
/// 12.3), per VPC and subnet: the gateway (IPv4, and for a dual-stack subnet its IPv6
/// and link-local addresses), ports' fixed IPs of both families, VIPs (their owner's
/// MAC).
pub fn neighbors(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let mut rows = vec![];
    for s in &snap.subnets {
        let vpc = &snap.vpcs[s.vpc as usize].name;
        let mut add = |ip: IpAddr, mac: Option<String>, of: js::NeighborOf| {
            rows.push(js::NeighborRow {
                vpc: vpc.clone(),
                ip,
                mac,
                answers_for: of,
            })
        };
        let gateway = || js::NeighborOf::Gateway {
            subnet: s.name.clone(),
        };
        let gw_mac = Some(snap.gateway_mac.to_string());
        add(Ipv4Addr::from(s.gateway).into(), gw_mac.clone(), gateway());
        if let Some(s6) = s.ipv6 {
            add(s6.gateway.into(), gw_mac.clone(), gateway());
            add(snap.gateway_ll.into(), gw_mac, gateway());
        }
        for p in s.ports.iter().filter_map(|p| snap.port(*p)) {
            let ips = p.ips.iter().map(|ip| Ipv4Addr::from(*ip).into());
            for ip in ips.chain(p.ips6.iter().map(|ip| (*ip).into())) {
                add(
                    ip,
                    Some(p.mac.to_string()),
                    js::NeighborOf::Port {
                        port: p.name.clone(),
                    },
                );
            }
        }
        let in_subnet = snap
            .vips
            .iter()
            .enumerate()
            .filter(|(_, v)| snap.subnets[v.subnet as usize].name == s.name);
        for (i, v) in in_subnet {
            let o = snap.vip_cell(i as u32).owner().and_then(|o| snap.port(o));
            add(
                v.addr(),
                o.map(|p| p.mac.to_string()),
                js::NeighborOf::Vip {
                    vip: v.name.clone(),
                    owner: o.map(|p| p.name.clone()),
                },
            );
        }
    }
    // the IP column as wide as its longest address (IPv6 ones are up to 39)
    let ips: Vec<String> = rows.iter().map(|n| n.ip.to_string()).collect();
    let w = column_width(ips.iter().map(String::len), 15);
    let row = |c: [&str; 4]| format!("{:<10} {:<w$} {:<17} {}\n", c[0], c[1], c[2], c[3]);
    let mut text = row(["VPC", "IP", "MAC", "WHAT"]);
    for (n, ip) in rows.iter().zip(&ips) {
        let what = match &n.answers_for {
            js::NeighborOf::Gateway { subnet } => format!("gateway of {subnet}"),
            js::NeighborOf::Port { port } => format!("port {port}"),
            js::NeighborOf::Vip { vip, owner } => {
                format!("vip {vip} ({})", owner.as_deref().unwrap_or("-"))
            }
        };
        text += &row([&n.vpc, ip, n.mac.as_deref().unwrap_or("(no owner)"), &what]);
    }
    ok_data(text, &rows)
}

/// `routes`: local subnets (a dual-stack one's IPv6 prefix after its IPv4 CIDR), then
/// the configured routes of both families (SPEC 12.5), from the configuration running.
pub fn routes(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let mut rows = vec![];
    for s in &snap.subnets {
        let vpc = &snap.vpcs[s.vpc as usize].name;
        let v6 = s.ipv6.map(|v6| v6.cidr.to_string());
        for destination in std::iter::once(s.cidr.to_string()).chain(v6) {
            rows.push(js::RouteRow {
                vpc: vpc.clone(),
                destination,
                target: js::RouteTarget::Local {
                    subnet: s.name.clone(),
                },
            });
        }
    }
    for rt in &snap.config.routes {
        use vpcswitch::model::RouteTarget as T;
        let target = match rt.target() {
            Some(T::Peering(p)) => js::RouteTarget::Peering {
                peering: p.to_string(),
            },
            Some(T::Port(p)) => js::RouteTarget::Port {
                port: p.to_string(),
            },
            // a validated route has exactly one target
            Some(T::Uplink) | None => js::RouteTarget::Uplink,
        };
        rows.push(js::RouteRow {
            vpc: rt.vpc.clone(),
            destination: rt.destination.to_string(),
            target,
        });
    }
    // the DESTINATION column as wide as its longest prefix (IPv6 ones are up to 43)
    let w = column_width(rows.iter().map(|x| x.destination.len()), 18);
    let row = |c: [&str; 3]| format!("{:<10} {:<w$} {}\n", c[0], c[1], c[2]);
    let mut text = row(["VPC", "DESTINATION", "TARGET"]);
    for x in &rows {
        let t = match &x.target {
            js::RouteTarget::Local { subnet } => format!("local subnet {subnet}"),
            js::RouteTarget::Peering { peering } => format!("peering {peering}"),
            js::RouteTarget::Port { port } => format!("port {port}"),
            js::RouteTarget::Uplink => "uplink".into(),
        };
        text += &row([&x.vpc, &x.destination, &t]);
    }
    ok_data(text, &rows)
}

/// Drop counts by reason name (JSON).
fn drops_by_name<'a>(
    d: impl IntoIterator<Item = &'a (vpcswitch::core::DropReason, u64)>,
) -> DropsByReason {
    d.into_iter()
        .map(|(r, n)| (r.name().to_string(), *n))
        .collect()
}

/// `stats`: per port, per drop reason, per worker; the generation and the last reload
/// error.
pub fn stats(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let s = r.switch.stats();
    let mut text =
        String::from("PORT          RX_PKTS    RX_BYTES    TX_PKTS    TX_BYTES  DROPS\n");
    for p in &s.ports {
        let d: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
        text += &format!(
            "{:<12} {:>8} {:>11} {:>10} {:>11}  {}\n",
            p.name,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            d.join(" ")
        );
    }
    text += "\nDROP REASON                 COUNT\n";
    for (r, n) in &s.drops {
        text += &format!("{:<26} {:>6}\n", r.name(), n);
    }
    text += "\nWORKER  FORWARDED    DROPPED  GENERATED      LOOPS     SLEEPS\n";
    for (i, w) in s.workers.iter().enumerate() {
        text += &format!(
            "{:<6} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            i, w.forwarded, w.dropped, w.generated, w.loops, w.sleeps
        );
    }
    let last = r.last_error.lock().map(|e| e.clone()).unwrap_or(None);
    text += &format!(
        "\ngeneration {}; last reload error: {}\n",
        snap.generation,
        last.as_deref().unwrap_or("none").trim_end()
    );
    let ports = s
        .ports
        .iter()
        .map(|p| js::PortStatsRow {
            name: p.name.clone(),
            rx_packets: p.rx_packets,
            rx_bytes: p.rx_bytes,
            tx_packets: p.tx_packets,
            tx_bytes: p.tx_bytes,
            drops: drops_by_name(&p.drops),
        })
        .collect();
    let workers = s
        .workers
        .iter()
        .map(|w| js::WorkerRow {
            forwarded_packets: w.forwarded,
            dropped_packets: w.dropped,
            generated_packets: w.generated,
            gso_segments: w.segments,
            loops: w.loops,
            busy_loops: w.busy_loops,
            busy_ns: w.busy_ns,
            idle_ns: w.idle_ns,
            sleeps: w.sleeps,
            burst_hist: w.burst_hist.clone(),
        })
        .collect();
    let store = store_view(r);
    if let Some(st) = &store {
        text += &store_line(st);
    }
    let data = js::StatsAnswer {
        generation: snap.generation,
        last_reload_error: last,
        ports,
        drops: drops_by_name(&s.drops),
        workers,
        store,
    };
    ok_data(text, &data)
}

/// The store's line of `ctl stats`.
fn store_line(st: &js::StoreView) -> String {
    format!(
        "store {}: network revision {} (generation {}{}), synced at store revision {} {}, \
         {}, store errors {}{}\n",
        st.endpoints,
        st.revision.unwrap_or(0),
        st.generation,
        st.lag_us.map_or(String::new(), |us| format!(
            ", running {:.1} ms after its apply",
            us as f64 / 1000.0
        )),
        st.synced_revision.unwrap_or(0),
        st.last_sync_unix_ms
            .map_or("never".to_string(), |ms| format!("(unix ms {ms})")),
        match st.lease.id {
            Some(id) => format!(
                "lease {id:x} held (ttl {} s, renewed {} times, last at unix ms {})",
                st.lease.ttl_s,
                st.lease_renewals,
                st.lease.renewed_unix_ms.unwrap_or(0)
            ),
            None if st.local_host.is_none() => "no lease (no local host)".to_string(),
            None => "lease NOT held (registering)".to_string(),
        },
        st.errors,
        st.lost.as_deref().map_or(String::new(), |e| format!(
            "; LOST: {}",
            vpcswitch::linux::one_line(e)
        )),
    )
}

/// Where the network came from when it is the store's (SPEC 11, `run --etcd`): its
/// revision, the last sync, the lease, the hosts alive and down; `None` for a file.
fn store_view(r: &Running) -> Option<js::StoreView> {
    use std::sync::atomic::Ordering::Relaxed;
    let link = r.store.as_ref()?;
    let st = link.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let stats = &link.store.stats;
    let ms = st
        .last_sync
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    // the state's zeros mean "not yet" / "unknown"
    let set_i = |v: i64| (v != 0).then_some(v);
    let set_u = |v: u64| (v != 0).then_some(v);
    Some(js::StoreView {
        endpoints: link.store.endpoints().to_string(),
        revision: set_i(st.revision),
        generation: st.generation,
        synced_revision: ms.and(Some(st.synced_revision)),
        last_sync_unix_ms: ms,
        applied_unix_us: set_u(st.applied_unix_us),
        written_unix_us: set_u(st.written_unix_us),
        lag_us: st.lag_us(),
        local_host: r.switch.snapshot().config.local_host().map(String::from),
        lease: js::Lease {
            id: set_i(stats.lease_id.load(Relaxed)),
            ttl_s: link.lease_ttl.as_secs(),
            renewed_unix_ms: set_u(stats.lease_renewed_unix_ms.load(Relaxed)),
        },
        lost: st.lost.clone(),
        alive: st.alive.iter().cloned().collect(),
        hosts_down: r.switch.hosts_down(),
        down_since_unix_us: st.down_since.clone(),
        lease_gone_unix_us: st.lease_gone.clone(),
        vip_owners: st
            .vip_owners
            .iter()
            .map(|(v, o)| {
                let seen = st.vip_seen.get(v).filter(|s| s.0 == o.revision);
                let owner = js::StoreVipOwner {
                    port: o.port.clone(),
                    host: o.host.clone(),
                    revision: o.revision,
                    seen_unix_us: seen.map(|s| s.1),
                };
                (v.clone(), owner)
            })
            .collect(),
        claims: st
            .claims
            .iter()
            .map(|(v, (p, at))| {
                let c = js::Claim {
                    port: p.clone(),
                    claimed_unix_us: *at,
                };
                (v.clone(), c)
            })
            .collect(),
        vip_publications: stats.vip_publications.load(Relaxed),
        lease_grants: stats.lease_grants.load(Relaxed),
        lease_renewals: stats.lease_renewals.load(Relaxed),
        errors: stats.errors.load(Relaxed),
    })
}

/// A host is "reachable" when a tunnel packet from it arrived within this many
/// seconds (VRRP adverts, ARP and traffic cross tunnels all the time in a live VPC;
/// the control plane's leases, SPEC 11, are the real liveness signal).
const HOST_SEEN_SECS: u64 = 10;

/// `hosts` (SPEC 10): every host of the network, its tunnel endpoint, which one is
/// this switch, its ports here, whether a tunnel packet came from it lately, and the
/// tunnel counters per host; the tunnel sockets' totals.
pub fn hosts(r: &Running) -> Value {
    let snap = r.switch.snapshot();
    let s = r.switch.stats();
    let now = r.switch.now_ns();
    let local = snap.local_host();
    let mut text = format!(
        "{:<12} {:<21} {:<6} {:>5} {:<9} {:>10} {:>10} {:>8}  DROPS\n",
        "HOST", "ENDPOINT", "LOCAL", "PORTS", "SEEN", "RX_PKTS", "TX_PKTS", "LAST_RX"
    );
    let mut rows = vec![];
    for h in snap.hosts() {
        let is_local = Some(h.id) == local;
        let st = s.hosts.iter().find(|x| x.name == h.name);
        let ago_ms = st
            .and_then(|x| x.last_rx_ns)
            .map(|t| now.saturating_sub(t) / 1_000_000);
        let seen = match (is_local, ago_ms) {
            (true, _) => "-",
            // SPEC 11.3: its lease expired
            (false, _) if snap.host_down(h.id) => "DOWN",
            (false, Some(ms)) if ms <= HOST_SEEN_SECS * 1000 => "yes",
            (false, _) => "no",
        };
        let d: Vec<String> = st
            .map(|x| x.drops.iter().map(|(r, n)| format!("{r}={n}")).collect())
            .unwrap_or_default();
        text += &format!(
            "{:<12} {:<21} {:<6} {:>5} {:<9} {:>10} {:>10} {:>8}  {}\n",
            h.name,
            h.endpoint.to_string(),
            if is_local { "yes" } else { "no" },
            h.ports.len(),
            seen,
            st.map_or(0, |x| x.rx_packets),
            st.map_or(0, |x| x.tx_packets),
            ago_ms.map_or("-".into(), |ms| format!("{ms}ms")),
            d.join(" ")
        );
        rows.push(js::HostRow {
            name: h.name.clone(),
            endpoint: h.endpoint,
            local: is_local,
            down: snap.host_down(h.id),
            port_count: h.ports.len() as u64,
            reachable: (!is_local).then_some(seen == "yes"),
            // the switch clock's instant on the wall clock
            last_rx_unix_ms: st.and_then(|x| x.last_rx_ns).map(|t| {
                (crate::running::unix_us(std::time::SystemTime::now()) / 1000)
                    .saturating_sub(now.saturating_sub(t) / 1_000_000)
            }),
            rx_packets: st.map_or(0, |x| x.rx_packets),
            rx_bytes: st.map_or(0, |x| x.rx_bytes),
            tx_packets: st.map_or(0, |x| x.tx_packets),
            tx_bytes: st.map_or(0, |x| x.tx_bytes),
            drops: st.map(|x| drops_by_name(&x.drops)).unwrap_or_default(),
        });
    }
    let t = &s.tunnel;
    if snap.hosts().is_empty() {
        text = "no [[hosts]]: every port is on this switch\n".into();
    } else {
        text += &format!(
            "\ntunnel: {} datagrams in ({} malformed, {} errors), {} packets out ({} refused)\n\
             offload: {} GSO trains out, {} coalesced reads in, {} TCP segments joined\n",
            t.rx_datagrams,
            t.rx_malformed,
            t.rx_errors,
            t.tx_packets,
            t.tx_errors,
            t.tx_trains,
            t.rx_coalesced,
            t.rx_joined
        );
    }
    let data = js::HostsAnswer {
        hosts: rows,
        tunnel: js::Tunnel {
            rx_datagrams: t.rx_datagrams,
            rx_malformed_datagrams: t.rx_malformed,
            rx_errors: t.rx_errors,
            tx_packets: t.tx_packets,
            tx_errors: t.tx_errors,
            tx_trains: t.tx_trains,
            rx_coalesced_reads: t.rx_coalesced,
            rx_joined_segments: t.rx_joined,
        },
    };
    ok_data(text, &data)
}

/// `trace PORT HEXFRAME`: every step the pipeline would take for the frame and the
/// verdict in words ([`vpcswitch::core::Snapshot::describe`], as the trace's own
/// verdict step); changes nothing.
pub fn trace(r: &Running, port: &str, hex: &str) -> Value {
    let Some(frame) = unhex(hex) else {
        return err("HEXFRAME must be an even number of hex digits (spaces and colons allowed)");
    };
    trace_frame(r, port, &frame)
}

/// `trace-flow PORT EXPR`: the frame the flow expression describes
/// ([`super::flow`]), traced; the text starts with the frame built, in hex.
pub fn trace_flow(r: &Running, port: &str, expr: &str) -> Value {
    let snap = r.switch.snapshot();
    let frame = match super::flow::frame(&snap, port, expr) {
        Ok(f) => f,
        Err(e) => return err(&e),
    };
    let mut v = trace_frame(r, port, &frame);
    if let Some(t) = v.get_mut("text") {
        let hex = hex(&frame);
        *t = Value::String(format!("frame {hex}\n{}", t.as_str().unwrap_or("")));
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a traced frame goes, by name.
fn trace_out(snap: &Snapshot, o: Out) -> js::TraceOut {
    match o {
        Out::Port(p) => js::TraceOut::Port {
            port: snap.port(p).map(|p| p.name.clone()),
            host: match snap.location(p) {
                Some(vpcswitch::core::Location::Remote(h)) => snap.host(h).map(|h| h.name.clone()),
                _ => None,
            },
        },
        Out::Flood(s) => js::TraceOut::Flood {
            subnet: snap.subnets.get(s as usize).map(|s| s.name.clone()),
        },
        Out::VipPorts(v) => js::TraceOut::VipPorts {
            vip: snap.vips.get(v as usize).map(|v| v.name.clone()),
        },
    }
}

fn trace_frame(r: &Running, port: &str, frame: &[u8]) -> Value {
    let snap = r.switch.snapshot();
    match r.switch.trace(port, frame) {
        Ok(t) => {
            let steps = t
                .trace
                .steps
                .iter()
                .map(|(s, d)| js::TraceStep {
                    stage: s.name().to_string(),
                    detail: d.clone(),
                })
                .collect();
            let verdict = match t.verdict {
                Verdict::Forward(o) => js::TraceVerdict::Forward {
                    to: trace_out(&snap, o),
                },
                Verdict::Drop(r) => js::TraceVerdict::Drop {
                    reason: r.name().to_string(),
                },
                Verdict::DropAndSend(r, o) => js::TraceVerdict::DropAndSend {
                    reason: r.name().to_string(),
                    to: trace_out(&snap, o),
                },
            };
            let data = js::TraceAnswer {
                verdict,
                description: snap.describe(t.verdict),
                steps,
                frame: hex(frame),
                output: hex(&t.output),
            };
            ok_data(t.trace.to_string(), &data)
        }
        Err(e) => err(&e.to_string()),
    }
}
