//! Prometheus text exposition (format 0.0.4) of a running switch's counters.
//!
//! Rendering reads the same relaxed atomics as [`Switch::stats`]: no lock a worker
//! takes, so scraping never stalls forwarding. Names follow Prometheus conventions
//! (`_total` for counters, base units, labels for the port, reason, worker and VIP;
//! points in time as `_timestamp_seconds`, unix time, never "seconds since"; `_info`
//! series carry labels and the value 1), checked by `promtool check metrics` in the
//! tests. `vpcswitch_drops_total` has a series for every reason from the first scrape
//! (zero included), so a rate or an alert sees the first burst; per-port drop series
//! appear once non-zero (some 60 reasons × every port would be too many series).

use std::fmt::Write;

use crate::Switch;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unix time, in seconds, of the instant `t_ns` on the switch's clock
/// ([`Switch::now_ns`]), given that clock's `now_ns`.
fn unix_secs(now_ns: u64, t_ns: u64) -> f64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    wall - now_ns.saturating_sub(t_ns) as f64 / 1e9
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics of `sw`; `reload_failures` is kept by whoever reloads (the binary).
pub fn prometheus(sw: &Switch, reload_failures: u64) -> String {
    let s = sw.stats();
    let snap = sw.snapshot();
    let now = sw.now_ns();
    let mut o = String::with_capacity(8192);

    head(
        &mut o,
        "vpcswitch_build_info",
        "gauge",
        "The vpcswitch library's version; the value is 1.",
    );
    let _ = writeln!(
        o,
        "vpcswitch_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    head(
        &mut o,
        "vpcswitch_port_info",
        "gauge",
        "Each port of the network: its backend type, interface (empty for memory), host (empty without [[hosts]]) and whether it lives here; the value is 1.",
    );
    let cfg = &snap.config;
    let uplink = cfg.uplink.iter().map(|u| (&u.name, &u.backend, &u.host));
    for (name, backend, host) in cfg
        .ports
        .iter()
        .map(|p| (&p.name, &p.backend, &p.host))
        .chain(uplink)
    {
        let kind = match backend {
            vpcswitch_model::BackendSpec::Memory => "memory",
            vpcswitch_model::BackendSpec::Tap { .. } => "tap",
            vpcswitch_model::BackendSpec::AfXdp { .. } => "af_xdp",
            vpcswitch_model::BackendSpec::AfPacket { .. } => "af_packet",
            vpcswitch_model::BackendSpec::External { kind } => {
                kind.as_deref().unwrap_or("external")
            }
        };
        let _ = writeln!(
            o,
            "vpcswitch_port_info{{port=\"{}\",backend=\"{kind}\",interface=\"{}\",host=\"{}\",local=\"{}\"}} 1",
            esc(name),
            esc(backend.ifname().unwrap_or("")),
            esc(host.as_deref().unwrap_or("")),
            cfg.is_local(name)
        );
    }
    // what each local port's device is and can do, and the kernel's own counters
    let caps = sw.capabilities();
    let mut caps: Vec<(&String, &vpcswitch_backend::Capabilities)> = caps.iter().collect();
    caps.sort_by(|a, b| a.0.cmp(b.0));
    head(
        &mut o,
        "vpcswitch_port_device_info",
        "gauge",
        "Each local port's device as opened: kind, mode, and whether it does checksum and segmentation offload and zero-copy; the value is 1.",
    );
    for (name, c) in &caps {
        let _ = writeln!(
            o,
            "vpcswitch_port_device_info{{port=\"{}\",kind=\"{}\",mode=\"{}\",checksum_offload=\"{}\",segmentation_offload=\"{}\",zero_copy=\"{}\"}} 1",
            esc(name),
            esc(&c.kind),
            esc(c.mode.as_deref().unwrap_or("")),
            c.checksum_offload,
            c.segmentation_offload,
            c.zero_copy
        );
    }
    head(
        &mut o,
        "vpcswitch_port_device_queues",
        "gauge",
        "Device queues serving each local port.",
    );
    for (name, c) in &caps {
        let _ = writeln!(
            o,
            "vpcswitch_port_device_queues{{port=\"{}\"}} {}",
            esc(name),
            c.queues
        );
    }
    head(
        &mut o,
        "vpcswitch_port_device_mtu_bytes",
        "gauge",
        "Each local port's interface MTU when its device was opened (no series for devices without one).",
    );
    for (name, c) in caps.iter().filter(|(_, c)| c.mtu.is_some()) {
        let _ = writeln!(
            o,
            "vpcswitch_port_device_mtu_bytes{{port=\"{}\"}} {}",
            esc(name),
            c.mtu.unwrap_or(0)
        );
    }
    let dev = sw.device_counters();
    type DevField = fn(&vpcswitch_backend::DeviceCounters) -> (u64, u64);
    let dev_families: [(&str, &str, DevField); 3] = [
        (
            "vpcswitch_port_device_packets_total",
            "Packets the port's kernel interface counted, by direction as the kernel counts them on it (a TAP's tx is what its guest sent towards the switch; a veth end's rx is what its peer sent).",
            |d| (d.rx_packets, d.tx_packets),
        ),
        (
            "vpcswitch_port_device_dropped_total",
            "Packets the port's kernel interface dropped (a TAP's tx: the switch's queue was full; a full ring), by direction as the kernel counts them. Drops the switch never saw.",
            |d| (d.rx_dropped, d.tx_dropped),
        ),
        (
            "vpcswitch_port_device_errors_total",
            "Errors the port's kernel interface counted, by direction as the kernel counts them.",
            |d| (d.rx_errors, d.tx_errors),
        ),
    ];
    for (fam, help, f) in dev_families {
        head(&mut o, fam, "counter", help);
        for (name, d) in &dev {
            let (rx, tx) = f(d);
            let _ = writeln!(o, "{fam}{{port=\"{}\",direction=\"rx\"}} {rx}", esc(name));
            let _ = writeln!(o, "{fam}{{port=\"{}\",direction=\"tx\"}} {tx}", esc(name));
        }
    }

    type PortField = fn(&crate::PortStats) -> u64;
    let per_port: [(&str, &str, PortField); 4] = [
        (
            "vpcswitch_port_rx_packets_total",
            "Frames received from the port's guest.",
            |p| p.rx_packets,
        ),
        (
            "vpcswitch_port_rx_bytes_total",
            "Bytes received from the port's guest.",
            |p| p.rx_bytes,
        ),
        (
            "vpcswitch_port_tx_packets_total",
            "Frames sent to the port's guest.",
            |p| p.tx_packets,
        ),
        (
            "vpcswitch_port_tx_bytes_total",
            "Bytes sent to the port's guest.",
            |p| p.tx_bytes,
        ),
    ];
    for (name, help, f) in per_port {
        head(&mut o, name, "counter", help);
        for p in &s.ports {
            let _ = writeln!(o, "{name}{{port=\"{}\"}} {}", esc(&p.name), f(p));
        }
    }
    head(
        &mut o,
        "vpcswitch_port_up",
        "gauge",
        "1 while the port's device works, 0 when it went away.",
    );
    for p in &s.ports {
        let _ = writeln!(
            o,
            "vpcswitch_port_up{{port=\"{}\"}} {}",
            esc(&p.name),
            u8::from(!p.down)
        );
    }
    head(
        &mut o,
        "vpcswitch_port_drops_total",
        "counter",
        "Frames dropped, by the port they are charged to and the reason.",
    );
    for p in &s.ports {
        for (r, n) in &p.drops {
            let _ = writeln!(
                o,
                "vpcswitch_port_drops_total{{port=\"{}\",reason=\"{}\"}} {n}",
                esc(&p.name),
                r.name()
            );
        }
    }
    head(
        &mut o,
        "vpcswitch_drops_total",
        "counter",
        "Frames dropped, by reason, all ports; every reason has a series from the start.",
    );
    for r in vpcswitch_core::DropReason::ALL {
        let n = s.drops.iter().find(|d| d.0 == *r).map_or(0, |d| d.1);
        let _ = writeln!(o, "vpcswitch_drops_total{{reason=\"{}\"}} {n}", r.name());
    }

    // SPEC 10: the tunnel to each other host (nothing without [[hosts]])
    if !s.hosts.is_empty() {
        type HostField = fn(&crate::HostStats) -> u64;
        let per_host: [(&str, &str, HostField); 4] = [
            (
                "vpcswitch_host_rx_packets_total",
                "Inner frames received through the tunnel from the host.",
                |h| h.rx_packets,
            ),
            (
                "vpcswitch_host_rx_bytes_total",
                "Bytes of inner frames received through the tunnel from the host.",
                |h| h.rx_bytes,
            ),
            (
                "vpcswitch_host_tx_packets_total",
                "Inner frames sent through the tunnel to the host.",
                |h| h.tx_packets,
            ),
            (
                "vpcswitch_host_tx_bytes_total",
                "Bytes of inner frames sent through the tunnel to the host.",
                |h| h.tx_bytes,
            ),
        ];
        for (name, help, f) in per_host {
            head(&mut o, name, "counter", help);
            for h in &s.hosts {
                let _ = writeln!(o, "{name}{{host=\"{}\"}} {}", esc(&h.name), f(h));
            }
        }
        head(
            &mut o,
            "vpcswitch_host_drops_total",
            "counter",
            "Frames from or for the host's tunnel dropped, by reason (SPEC 10.3 checks among them).",
        );
        for h in &s.hosts {
            for (r, n) in &h.drops {
                let _ = writeln!(
                    o,
                    "vpcswitch_host_drops_total{{host=\"{}\",reason=\"{}\"}} {n}",
                    esc(&h.name),
                    r.name()
                );
            }
        }
        head(
            &mut o,
            "vpcswitch_host_last_rx_timestamp_seconds",
            "gauge",
            "When the last tunnel packet from the host arrived, unix time; absent: never.",
        );
        for h in &s.hosts {
            if let Some(t) = h.last_rx_ns {
                let _ = writeln!(
                    o,
                    "vpcswitch_host_last_rx_timestamp_seconds{{host=\"{}\"}} {:.3}",
                    esc(&h.name),
                    unix_secs(now, t)
                );
            }
        }
        let t = &s.tunnel;
        head(
            &mut o,
            "vpcswitch_tunnel_datagrams_total",
            "counter",
            "Tunnel datagrams by direction and outcome: rx ok/malformed/error, tx ok/refused.",
        );
        for (dir, outcome, n) in [
            ("rx", "ok", t.rx_datagrams.saturating_sub(t.rx_malformed)),
            ("rx", "malformed", t.rx_malformed),
            ("rx", "error", t.rx_errors),
            ("tx", "ok", t.tx_packets),
            ("tx", "refused", t.tx_errors),
        ] {
            let _ = writeln!(
                o,
                "vpcswitch_tunnel_datagrams_total{{direction=\"{dir}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut o,
            "vpcswitch_tunnel_offload_total",
            "counter",
            "Tunnel offload work: tx GSO trains sent, rx reads the kernel coalesced (GRO), rx TCP segments joined into super-frames.",
        );
        for (kind, n) in [
            ("tx_trains", t.tx_trains),
            ("rx_coalesced_reads", t.rx_coalesced),
            ("rx_joined_segments", t.rx_joined),
        ] {
            let _ = writeln!(o, "vpcswitch_tunnel_offload_total{{kind=\"{kind}\"}} {n}");
        }
    }

    head(
        &mut o,
        "vpcswitch_worker_loops_total",
        "counter",
        "Poll passes of each worker; state=\"busy\" passes found frames, \"idle\" ones did not.",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let idle = w.loops.saturating_sub(w.busy_loops);
        let _ = writeln!(
            o,
            "vpcswitch_worker_loops_total{{worker=\"{i}\",state=\"busy\"}} {}",
            w.busy_loops
        );
        let _ = writeln!(
            o,
            "vpcswitch_worker_loops_total{{worker=\"{i}\",state=\"idle\"}} {idle}"
        );
    }
    head(
        &mut o,
        "vpcswitch_worker_seconds_total",
        "counter",
        "Time each worker spent in passes that found frames (busy) and in the others, sleep included (idle).",
    );
    for (i, w) in s.workers.iter().enumerate() {
        for (state, ns) in [("busy", w.busy_ns), ("idle", w.idle_ns)] {
            let _ = writeln!(
                o,
                "vpcswitch_worker_seconds_total{{worker=\"{i}\",state=\"{state}\"}} {:.6}",
                ns as f64 / 1e9
            );
        }
    }
    head(
        &mut o,
        "vpcswitch_worker_sleeps_total",
        "counter",
        "Times each worker went to sleep waiting for traffic.",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let _ = writeln!(
            o,
            "vpcswitch_worker_sleeps_total{{worker=\"{i}\"}} {}",
            w.sleeps
        );
    }
    for (name, help, f) in [
        (
            "vpcswitch_worker_forwarded_total",
            "Frames each worker forwarded.",
            (|w| w.forwarded) as fn(&crate::WorkerStats) -> u64,
        ),
        (
            "vpcswitch_worker_dropped_total",
            "Frames each worker dropped in the pipeline.",
            |w| w.dropped,
        ),
        (
            "vpcswitch_worker_generated_total",
            "Answers each worker made (ICMP errors, ARP requests).",
            |w| w.generated,
        ),
        (
            "vpcswitch_worker_gso_segments_total",
            "Segments each worker cut from TCP super-frames in software (ports without offload).",
            |w| w.segments,
        ),
    ] {
        head(&mut o, name, "counter", help);
        for (i, w) in s.workers.iter().enumerate() {
            let _ = writeln!(o, "{name}{{worker=\"{i}\"}} {}", f(w));
        }
    }
    head(
        &mut o,
        "vpcswitch_worker_burst_size",
        "histogram",
        "Frames per received burst, per worker.",
    );
    for (i, w) in s.workers.iter().enumerate() {
        let (mut cum, mut sum) = (0u64, 0u64);
        for (size, n) in w.burst_hist.iter().enumerate().skip(1) {
            cum += n;
            sum += n * size as u64;
            if size.is_power_of_two() || size == w.burst_hist.len() - 1 {
                let _ = writeln!(
                    o,
                    "vpcswitch_worker_burst_size_bucket{{worker=\"{i}\",le=\"{size}\"}} {cum}"
                );
            }
        }
        let _ = writeln!(
            o,
            "vpcswitch_worker_burst_size_bucket{{worker=\"{i}\",le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(o, "vpcswitch_worker_burst_size_sum{{worker=\"{i}\"}} {sum}");
        let _ = writeln!(
            o,
            "vpcswitch_worker_burst_size_count{{worker=\"{i}\"}} {cum}"
        );
    }

    head(
        &mut o,
        "vpcswitch_vip_owner",
        "gauge",
        "1 for the port that owns each VIP now (no series while it has no owner).",
    );
    let mut moves = String::new();
    let mut since = String::new();
    let mut first = String::new();
    for (i, v) in snap.vips.iter().enumerate() {
        let cell = snap.vip_cell(i as u32);
        if let Some(owner) = cell.owner().and_then(|p| snap.port(p)) {
            let _ = writeln!(
                o,
                "vpcswitch_vip_owner{{vip=\"{}\",owner=\"{}\"}} 1",
                esc(&v.name),
                esc(&owner.name)
            );
        }
        let _ = writeln!(
            moves,
            "vpcswitch_vip_moves_total{{vip=\"{}\"}} {}",
            esc(&v.name),
            cell.moves()
        );
        if cell.moves() > 0 {
            let _ = writeln!(
                since,
                "vpcswitch_vip_last_move_timestamp_seconds{{vip=\"{}\"}} {:.3}",
                esc(&v.name),
                unix_secs(now, cell.last_move_ns())
            );
        }
        if let Some(ns) = cell.first_packet_ns() {
            let _ = writeln!(
                first,
                "vpcswitch_vip_failover_first_packet_seconds{{vip=\"{}\"}} {:.9}",
                esc(&v.name),
                ns as f64 / 1e9
            );
        }
    }
    head(
        &mut o,
        "vpcswitch_vip_moves_total",
        "counter",
        "Times each VIP's owner changed (SPEC 3.1).",
    );
    o.push_str(&moves);
    head(
        &mut o,
        "vpcswitch_vip_last_move_timestamp_seconds",
        "gauge",
        "When each VIP last moved, unix time (no series before its first move; moves carried over by reloads keep their time).",
    );
    o.push_str(&since);
    head(
        &mut o,
        "vpcswitch_vip_failover_first_packet_seconds",
        "gauge",
        "For each VIP's last move: seconds from the switch learning the new owner to the first frame it sent to that owner (no series before one).",
    );
    o.push_str(&first);

    head(
        &mut o,
        "vpcswitch_config_generation",
        "gauge",
        "The running configuration's generation (1 at start, +1 per reload).",
    );
    let _ = writeln!(o, "vpcswitch_config_generation {}", snap.generation);
    head(
        &mut o,
        "vpcswitch_config_reload_failures_total",
        "counter",
        "Reloads refused (the running configuration stayed).",
    );
    let _ = writeln!(
        o,
        "vpcswitch_config_reload_failures_total {reload_failures}"
    );
    head(
        &mut o,
        "vpcswitch_events_total",
        "counter",
        "Events the switch published (Switch::events: vip_moved, port_down, port_up, reloaded, reload_refused, worker_failed), subscribers or not; every kind present from the start.",
    );
    for (kind, n) in sw.events_published() {
        let _ = writeln!(o, "vpcswitch_events_total{{kind=\"{kind}\"}} {n}");
    }
    head(
        &mut o,
        "vpcswitch_observe_lost_total",
        "counter",
        "Capture records and drop samples lost (pool or queue full, sample rate).",
    );
    let _ = writeln!(o, "vpcswitch_observe_lost_total {}", sw.observe().lost());
    o
}
