//! The control socket: one JSON request line in, one JSON response out.
//!
//! Request: `{"cmd": ["stats"], "json": false}`. Response:
//! `{"ok": true, "text": "...", "data": {...}}`. The socket is created mode 0600 (under
//! a 0o177 umask, so it is never reachable with wider permissions, see [`bind_private`]):
//! only root (or the switch's user) may command the switch. A request is capped at
//! 64 KiB and must arrive whole within [`deadline::REQUEST`] (however it is paced), a
//! reply is written within [`deadline::RESPONSE`], each line of a stream within
//! [`deadline::STREAM_LINE`]; anything malformed gets `ok: false` and a message, never a
//! crash. Up to 16 requests are served at once, each on its own thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use vpcswitch::core::Verdict;
use vpcswitch::model::RouteTarget as CfgTarget;

use crate::deadline::{self, Deadline};
use crate::listen::{accept_until_stopped, Slots, Stopper};
use crate::Running;
use vpcswitch::runtime::observe::PortIdentity;

const MAX_REQUEST: u64 = 64 * 1024;
/// Control requests served at once.
const MAX_CLIENTS: usize = 16;

/// The control server's accept thread, and the socket file it made.
#[derive(Debug)]
pub struct Server {
    thread: JoinHandle<()>,
    path: PathBuf,
    /// device and inode of the socket file as bound: only that file is removed at stop
    file: Option<(u64, u64)>,
}

impl Server {
    /// Waits for the accept thread (it ends at once once its [`Stopper`] is stopped) and
    /// removes the socket file if it is still the one this server bound: a file put in
    /// its place since (another switch's socket, anything else) is left alone.
    pub fn finish(self) {
        let _ = self.thread.join();
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if now.is_some() && now == self.file {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the socket and serves requests on a thread until `stop` is stopped. The
/// accept thread waits on the socket and on `stop` together, so stopping wakes it
/// whatever became of the socket file.
pub fn serve(path: &Path, running: Arc<Running>, stop: Arc<Stopper>) -> std::io::Result<Server> {
    if path.exists() {
        // a live switch answers; a stale socket file does not
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another switch is listening on this control socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let listener = bind_private(path)?;
    listener.set_nonblocking(true)?;
    let file = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let slots = Slots::new(MAX_CLIENTS);
    let thread = std::thread::Builder::new()
        .name("vpcswitch-ctl".into())
        .spawn(move || {
            let accept = || listener.accept().map(|(s, _)| s);
            let r = accept_until_stopped(listener.as_raw_fd(), &stop, accept, |s| {
                // accepted sockets are blocking (the deadlines set their timeouts)
                if s.set_nonblocking(false).is_err() {
                    return;
                }
                // one thread per connection, at most MAX_CLIENTS at once, so a slow or
                // silent client cannot hold the others up
                let Some(slot) = slots.take() else {
                    let mut out = err(&format!(
                        "busy: {MAX_CLIENTS} requests in progress, try again"
                    ))
                    .to_string();
                    out.push('\n');
                    // never blocks the accept loop: a client that does not read just
                    // loses the message
                    let _ = s.set_nonblocking(true);
                    let _ = (&s).write_all(out.as_bytes());
                    return;
                };
                let running = running.clone();
                Slots::serve_on_thread("vpcswitch-ctl-conn", slot, move || handle(s, &running));
            });
            if let Err(e) = r {
                tracing::error!(error = %e, "control socket: cannot wait for connections; control stopped");
            }
        })?;
    Ok(Server {
        thread,
        path: path.to_path_buf(),
        file,
    })
}

/// Binds the control socket so that it is mode 0600 from the moment it exists: the
/// socket file is created under a 0o177 umask (restored right after), instead of being
/// chmodded after `bind`, which left a window in which anyone could connect. The umask is
/// process-wide, but it only removes permissions: a file another thread creates during
/// the bind can only come out more private than asked, never less. The chmod after is
/// for a directory whose default ACL overrides the umask.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let old = vpcswitch::backend::sys::set_umask(0o177);
    let bound = UnixListener::bind(path);
    vpcswitch::backend::sys::set_umask(old);
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn handle(s: UnixStream, running: &Running) {
    let mut line = String::new();
    // the whole request within the deadline, however the client paces its bytes
    let mut req = Deadline::new(&s, deadline::REQUEST);
    let read = BufReader::new((&mut req).take(MAX_REQUEST)).read_line(&mut line);
    let reply = match read {
        Ok(0) => return,
        Err(_) if req.passed() => {
            tracing::debug!(
                "control request not complete within {:?}: connection closed",
                deadline::REQUEST
            );
            err(&format!(
                "request not complete within {} s",
                deadline::REQUEST.as_secs()
            ))
        }
        Ok(_) if !line.ends_with('\n') => err(&format!(
            "request too long or not terminated (limit {MAX_REQUEST} bytes, one line)"
        )),
        Ok(_) => match serde_json::from_str::<Value>(&line) {
            Ok(req) => {
                let cmd: Vec<&str> = req
                    .get("cmd")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match cmd.as_slice() {
                    ["capture", port, dir, count] => {
                        return stream_capture(&s, running, port, dir, count)
                    }
                    ["drops", secs] => return stream_drops(&s, running, secs, None),
                    ["drops", secs, port] => return stream_drops(&s, running, secs, Some(port)),
                    _ => dispatch(&req, running),
                }
            }
            Err(e) => err(&format!("request is not JSON: {e}")),
        },
        Err(e) => err(&format!("cannot read request: {e}")),
    };
    let mut out = reply.to_string();
    out.push('\n');
    let _ = Deadline::new(&s, deadline::RESPONSE).write_all(out.as_bytes());
}

/// Writes one JSON line within [`deadline::STREAM_LINE`]; false when the client is gone
/// or does not read.
fn send_line(s: &UnixStream, v: &Value) -> bool {
    let mut out = v.to_string();
    out.push('\n');
    Deadline::new(s, deadline::STREAM_LINE)
        .write_all(out.as_bytes())
        .is_ok()
}

/// The Unix time (µs) at which the switch's clock read 0: add a record's `ts_ns / 1000`.
/// Read once per stream, not per frame.
fn clock_base_us(running: &Running) -> u64 {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    now_unix.saturating_sub(running.switch.now_ns() / 1000)
}

/// `capture PORT DIR COUNT`: streams the port's frames, one JSON line each, until COUNT
/// (0: until the client goes away). One capture per port at a time. The capture is bound
/// to the port, not its id: a reload that deletes the port ends it (the last line says
/// so in `ended`), and a port that later gets the same id is never captured by it.
fn stream_capture(s: &UnixStream, running: &Running, port: &str, dir: &str, count: &str) {
    let (rx, tx) = match dir {
        "rx" => (true, false),
        "tx" => (false, true),
        "both" => (true, true),
        _ => {
            send_line(s, &err("direction must be rx, tx or both"));
            return;
        }
    };
    let Ok(count) = count.parse::<u64>() else {
        send_line(s, &err("count must be a number (0: until interrupted)"));
        return;
    };
    let Some(pid) = running.switch.port_identity(port) else {
        send_line(s, &err(&format!("no port named \"{port}\"")));
        return;
    };
    {
        let mut c = running.captures.lock().unwrap_or_else(|e| e.into_inner());
        if c.contains(&pid) {
            send_line(
                s,
                &err(&format!("port \"{port}\" is already being captured")),
            );
            return;
        }
        c.push(pid);
    }
    let obs = running.switch.observe();
    let release = || {
        running
            .captures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != pid);
    };
    if !obs.start_capture(pid, rx, tx) {
        release();
        send_line(s, &err(&format!("port \"{port}\" was just deleted")));
        return;
    }
    tracing::info!(port, direction = dir, count, "capture started");
    let lost0 = obs.lost();
    let base_us = clock_base_us(running);
    let mut sent = 0u64;
    let mut alive = send_line(
        s,
        &ok(
            format!("capturing {port} ({dir})\n"),
            json!({"snaplen": vpcswitch::runtime::observe::SNAPLEN}),
        ),
    );
    let mut frames = Vec::new();
    let mut last_beat = std::time::Instant::now();
    let mut ended = None;
    while alive && (count == 0 || sent < count) {
        if running.stopping.load(Ordering::SeqCst) {
            ended = Some("the switch is stopping".to_string());
            break;
        }
        let want = if count == 0 {
            64
        } else {
            (count - sent).min(64) as usize
        };
        // checked before taking: frames recorded before the port went are still sent
        let gone = !obs.is_current(pid);
        obs.take_frames(pid, want, &mut frames);
        if frames.is_empty() && gone {
            ended = Some(format!("port \"{port}\" was deleted by a reload"));
            break;
        }
        if frames.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            if last_beat.elapsed() > Duration::from_secs(1) {
                alive = send_line(s, &json!({"heartbeat": true}));
                last_beat = std::time::Instant::now();
            }
            continue;
        }
        for f in frames.drain(..) {
            if alive {
                let hex: String = f.data.iter().map(|b| format!("{b:02x}")).collect();
                alive = send_line(
                    s,
                    &json!({"ts_us": base_us + f.ts_ns / 1000, "len": f.orig_len, "dir": if f.direction == vpcswitch::runtime::observe::Direction::Rx { "rx" } else { "tx" }, "data": hex}),
                );
                sent += 1;
            }
            obs.recycle(f);
        }
    }
    obs.stop_capture(pid);
    // frames still queued for this port are given back
    obs.take_frames(pid, usize::MAX, &mut frames);
    for f in frames.drain(..) {
        obs.recycle(f);
    }
    release();
    tracing::info!(
        port,
        frames = sent,
        ended = ended.as_deref(),
        "capture ended"
    );
    if alive {
        send_line(
            s,
            &json!({"done": sent, "lost": obs.lost() - lost0, "ended": ended}),
        );
    }
}

/// A one-line decode of the start of a frame (it may be cut short).
fn decode(b: &[u8]) -> String {
    if b.len() < 14 {
        return format!("{} bytes", b.len());
    }
    let m = |o: usize| vpcswitch::wire::MacAddr::from_slice(&b[o..o + 6]).to_string();
    let et = u16::from_be_bytes([b[12], b[13]]);
    let ip4 = |o: usize| std::net::Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
    let l3 = match et {
        0x0800 if b.len() >= 34 => {
            let proto = match b[23] {
                1 => "icmp".to_string(),
                6 => "tcp".to_string(),
                17 => "udp".to_string(),
                p => format!("proto {p}"),
            };
            format!("IPv4 {} > {} {proto} ttl {}", ip4(26), ip4(30), b[22])
        }
        0x0806 if b.len() >= 42 => {
            let op = match u16::from_be_bytes([b[20], b[21]]) {
                1 => "request",
                2 => "reply",
                _ => "op?",
            };
            format!("ARP {op} {} > {}", ip4(28), ip4(38))
        }
        0x8100 | 0x88a8 => "802.1Q/802.1ad tagged".into(),
        0x86dd => "IPv6".into(),
        other => format!("ethertype {other:#06x}"),
    };
    format!("{} > {} {l3}", m(6), m(0))
}

/// `drops SECS [PORT]`: samples dropped frames for SECS seconds (0: until the client
/// goes away), one JSON line each, of every port or of PORT only. Sampling is on only
/// while someone reads it, and at most `DROP_SAMPLES_PER_SEC` per worker. Samples carry
/// the port's identity: each is named after the port it was charged to (`?` once that
/// port is deleted), and a PORT filter follows that port only, ending when a reload
/// deletes it (never showing the drops of a port that later gets its id).
fn stream_drops(s: &UnixStream, running: &Running, secs: &str, port: Option<&str>) {
    let Ok(secs) = secs.parse::<u64>() else {
        send_line(s, &err("seconds must be a number (0: follow)"));
        return;
    };
    let only: Option<PortIdentity> = match port {
        None => None,
        Some(p) => match running.switch.port_identity(p) {
            Some(who) => Some(who),
            None => {
                send_line(s, &err(&format!("no port named \"{p}\"")));
                return;
            }
        },
    };
    let obs = running.switch.observe();
    let end = (secs > 0).then(|| std::time::Instant::now() + Duration::from_secs(secs));
    let mut alive = send_line(s, &ok("sampling drops\n".into(), json!({})));
    let base_us = clock_base_us(running);
    let mut got = Vec::new();
    let mut last_beat = std::time::Instant::now();
    let mut ended = None;
    while alive && end.is_none_or(|e| std::time::Instant::now() < e) {
        if running.stopping.load(Ordering::SeqCst) {
            ended = Some("the switch is stopping".to_string());
            break;
        }
        obs.sample_drops_until(running.switch.now_ns() + 2_000_000_000);
        // checked before taking: drops sampled before the port went are still sent
        let gone = only.filter(|w| !obs.is_current(*w));
        obs.take_drops(&mut got);
        for d in got.drain(..) {
            if only.is_some_and(|w| w != d.identity()) {
                continue;
            }
            let port = running
                .switch
                .port_name(d.identity())
                .unwrap_or_else(|| "?".into());
            let head = &d.head[..d.head_len];
            alive = alive
                && send_line(
                    s,
                    &json!({"ts_us": base_us + d.ts_ns / 1000, "port": port, "reason": d.reason.name(), "len": d.len, "decode": decode(head), "head": head.iter().map(|b| format!("{b:02x}")).collect::<String>()}),
                );
        }
        if last_beat.elapsed() > Duration::from_secs(1) {
            alive = alive && send_line(s, &json!({"heartbeat": true}));
            last_beat = std::time::Instant::now();
        }
        if gone.is_some() {
            ended = port.map(|p| format!("port \"{p}\" was deleted by a reload"));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive {
        send_line(s, &json!({"done": true, "ended": ended}));
    }
}

fn err(msg: &str) -> Value {
    json!({"ok": false, "text": format!("error: {msg}\n"), "data": null})
}

fn ok(text: String, data: Value) -> Value {
    json!({"ok": true, "text": text, "data": data})
}

fn dispatch(req: &Value, r: &Running) -> Value {
    let args: Vec<&str> = match req.get("cmd").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).collect(),
        None => return err("request needs \"cmd\": [\"command\", args...]"),
    };
    let snap = r.switch.snapshot();
    match args.as_slice() {
        ["ports"] => {
            let stats = r.switch.stats();
            let backends = r.switch.backends();
            let mut text = format!("{:<12} {:<10} {:<17} {:<18} {:<6} {:<16} {:>10} {:>10}\n", "PORT", "SUBNET", "MAC", "IPS", "CHECK", "BACKEND", "RX", "TX");
            let mut rows = vec![];
            for p in snap.ports.iter().flatten() {
                let st = stats.port(&p.name).cloned().unwrap_or_default();
                let subnet = snap.subnets.get(p.subnet as usize).map_or("-", |s| s.name.as_str());
                let ips: Vec<String> = p.ips.iter().map(|i| std::net::Ipv4Addr::from(*i).to_string()).collect();
                let be = backends.get(&p.name).cloned().unwrap_or_default();
                text += &format!("{:<12} {:<10} {:<17} {:<18} {:<6} {:<16} {:>10} {:>10}\n", if st.down { format!("{} (DOWN)", p.name) } else { p.name.clone() }, subnet, p.mac, ips.join(","), if p.src_dst_check { "on" } else { "off" }, be, st.rx_packets, st.tx_packets);
                rows.push(json!({"name": p.name, "down": st.down, "subnet": subnet, "mac": p.mac.to_string(), "ips": ips, "src_dst_check": p.src_dst_check, "backend": be, "rx_packets": st.rx_packets, "tx_packets": st.tx_packets, "rx_bytes": st.rx_bytes, "tx_bytes": st.tx_bytes}));
            }
            ok(text, json!(rows))
        }
        ["vips"] => {
            let now = r.switch.now_ns();
            let mut text = format!("{:<14} {:<10} {:<15} {:<24} {:<10} {:>6} {:>14} {:>12}\n", "VIP", "SUBNET", "IP", "PORTS", "OWNER", "MOVES", "LAST MOVE", "FIRST PKT");
            let mut rows = vec![];
            for (i, v) in snap.vips.iter().enumerate() {
                let cell = snap.vip_cell(i as u32);
                let owner = cell.owner().and_then(|o| snap.port(o)).map(|p| p.name.clone());
                let ports: Vec<String> = v.ports.iter().filter_map(|p| snap.port(*p)).map(|p| p.name.clone()).collect();
                let ago = (cell.moves() > 0).then(|| now.saturating_sub(cell.last_move_ns()) as f64 / 1e9);
                // the switch's own failover time: new owner learned -> first frame sent to it
                let first_us = cell.first_packet_ns().map(|ns| ns as f64 / 1e3);
                text += &format!("{:<14} {:<10} {:<15} {:<24} {:<10} {:>6} {:>14} {:>12}\n", v.name, snap.subnets[v.subnet as usize].name, std::net::Ipv4Addr::from(v.ip), ports.join(","), owner.clone().unwrap_or_else(|| "-".into()), cell.moves(), ago.map_or("-".into(), |a| format!("{a:.1} s ago")), first_us.map_or("-".into(), |u| format!("{u:.1} µs")));
                rows.push(json!({"name": v.name, "ip": std::net::Ipv4Addr::from(v.ip).to_string(), "ports": ports, "owner": owner, "moves": cell.moves(), "seconds_since_move": ago, "first_packet_us": first_us}));
            }
            ok(text, json!(rows))
        }
        ["eips"] => {
            let mut text = String::new();
            let uplink = snap.uplink.as_ref().map(|u| {
                let nh = snap.next_hop_mac();
                text += &format!(
                    "uplink {} ({}), next hop {} at {}\n\n",
                    snap.port(u.port).map_or("?", |p| p.name.as_str()),
                    u.mac,
                    std::net::Ipv4Addr::from(u.next_hop),
                    nh.map_or("(not resolved yet)".to_string(), |m| m.to_string())
                );
                json!({"name": snap.port(u.port).map(|p| p.name.clone()), "mac": u.mac.to_string(), "next_hop": std::net::Ipv4Addr::from(u.next_hop).to_string(), "next_hop_mac": nh.map(|m| m.to_string()), "static_next_hop": u.static_next_hop})
            });
            text += &format!("{:<16} {:<22} {:<15} {}\n", "EIP", "TARGET", "PRIVATE IP", "NOW AT");
            let mut rows = vec![];
            for x in snap.config.all_eips() {
                let target = match (&x.vip, &x.port) {
                    (Some(v), _) => format!("vip {v}"),
                    (_, Some(p)) => format!("port {p}"),
                    _ => "-".into(),
                };
                let private = snap.config.eip_target(&x).map(|(_, ip)| ip);
                let at = match (&x.vip, &x.port) {
                    (Some(v), _) => snap.vip_owner_name(v).map(String::from),
                    (_, Some(p)) => Some(p.clone()),
                    _ => None,
                };
                let private = private.map(|i| i.to_string());
                text += &format!("{:<16} {:<22} {:<15} {}\n", x.ip, target, private.clone().unwrap_or_else(|| "-".into()), at.clone().unwrap_or_else(|| "(no owner)".into()));
                rows.push(json!({"eip": x.ip.to_string(), "target": target, "private_ip": private, "port": at}));
            }
            ok(text, json!({"uplink": uplink, "eips": rows}))
        }
        ["neighbors"] => {
            let mut text = format!("{:<10} {:<15} {:<17} {}\n", "VPC", "IP", "MAC", "WHAT");
            let mut rows = vec![];
            for s in &snap.subnets {
                let vpc = &snap.vpcs[s.vpc as usize].name;
                let mut add = |ip: u32, mac: String, what: String| {
                    text += &format!("{:<10} {:<15} {:<17} {}\n", vpc, std::net::Ipv4Addr::from(ip), mac, what);
                    rows.push(json!({"vpc": vpc, "ip": std::net::Ipv4Addr::from(ip).to_string(), "mac": mac, "what": what}));
                };
                add(s.gateway, snap.gateway_mac.to_string(), format!("gateway of {}", s.name));
                for p in s.ports.iter().filter_map(|p| snap.port(*p)) {
                    for ip in p.ips.iter() {
                        add(*ip, p.mac.to_string(), format!("port {}", p.name));
                    }
                }
                for (i, v) in snap.vips.iter().enumerate().filter(|(_, v)| snap.subnets[v.subnet as usize].name == s.name) {
                    let o = snap.vip_cell(i as u32).owner().and_then(|o| snap.port(o));
                    add(v.ip, o.map_or("(no owner)".into(), |p| p.mac.to_string()), format!("vip {} ({})", v.name, o.map_or("-", |p| p.name.as_str())));
                }
            }
            ok(text, json!(rows))
        }
        ["routes"] => {
            let mut text = format!("{:<10} {:<18} {}\n", "VPC", "DESTINATION", "TARGET");
            let mut rows = vec![];
            for s in &snap.subnets {
                let vpc = &snap.vpcs[s.vpc as usize].name;
                text += &format!("{:<10} {:<18} local subnet {}\n", vpc, s.cidr.to_string(), s.name);
                rows.push(json!({"vpc": vpc, "destination": s.cidr.to_string(), "target": format!("local:{}", s.name)}));
            }
            for rt in &snap.config.routes {
                let t = match rt.target() {
                    Some(CfgTarget::Peering(p)) => format!("peering {p}"),
                    Some(CfgTarget::Port(p)) => format!("port {p}"),
                    _ => "uplink".into(),
                };
                text += &format!("{:<10} {:<18} {}\n", rt.vpc, rt.destination.to_string(), t);
                rows.push(json!({"vpc": rt.vpc, "destination": rt.destination.to_string(), "target": t}));
            }
            ok(text, json!(rows))
        }
        ["stats"] => {
            let s = r.switch.stats();
            let mut text = String::from("PORT          RX_PKTS    RX_BYTES    TX_PKTS    TX_BYTES  DROPS\n");
            for p in &s.ports {
                let d: Vec<String> = p.drops.iter().map(|(r, n)| format!("{r}={n}")).collect();
                text += &format!("{:<12} {:>8} {:>11} {:>10} {:>11}  {}\n", p.name, p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes, d.join(" "));
            }
            text += "\nDROP REASON                 COUNT\n";
            for (r, n) in &s.drops {
                text += &format!("{:<26} {:>6}\n", r.name(), n);
            }
            text += "\nWORKER  FORWARDED    DROPPED  GENERATED      LOOPS     SLEEPS\n";
            for (i, w) in s.workers.iter().enumerate() {
                text += &format!("{:<6} {:>10} {:>10} {:>10} {:>10} {:>10}\n", i, w.forwarded, w.dropped, w.generated, w.loops, w.sleeps);
            }
            let last = r.last_error.lock().map(|e| e.clone()).unwrap_or(None);
            text += &format!("\ngeneration {}; last reload error: {}\n", snap.generation, last.clone().unwrap_or_else(|| "none".into()).trim_end());
            let data = json!({
                "generation": snap.generation,
                "last_reload_error": last,
                "ports": s.ports.iter().map(|p| json!({"name": p.name, "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes, "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "drops": p.drops.iter().map(|(r, n)| (r.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>()})).collect::<Vec<_>>(),
                "drops": s.drops.iter().map(|(r, n)| (r.name().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "workers": s.workers.iter().map(|w| json!({"forwarded": w.forwarded, "dropped": w.dropped, "generated": w.generated, "segments": w.segments, "loops": w.loops, "busy_loops": w.busy_loops, "busy_ns": w.busy_ns, "idle_ns": w.idle_ns, "sleeps": w.sleeps, "burst_hist": w.burst_hist})).collect::<Vec<_>>(),
            });
            ok(text, data)
        }
        ["trace", port, hex] => {
            let Some(frame) = unhex(hex) else {
                return err("HEXFRAME must be an even number of hex digits (spaces and colons allowed)");
            };
            match r.switch.trace(port, &frame) {
                Ok(t) => {
                    let v = match t.verdict {
                        Verdict::Forward(o) => format!("forward to {}", snap.out_name(o)),
                        Verdict::Drop(d) => format!("drop: {d}"),
                        Verdict::DropAndSend(d, o) => format!("drop: {d}; answer to {}", snap.out_name(o)),
                    };
                    let steps: Vec<Value> = t.trace.steps.iter().map(|(s, d)| json!({"stage": s, "detail": d})).collect();
                    ok(t.trace.to_string(), json!({"verdict": v, "steps": steps, "output": t.output.iter().map(|b| format!("{b:02x}")).collect::<String>()}))
                }
                Err(e) => err(&e.to_string()),
            }
        }
        ["reload"] => match r.reload() {
            Ok(g) => ok(format!("reloaded: generation {g}\n"), json!({"generation": g})),
            Err(e) => err(&format!("reload refused, the running configuration stays:\n{e}")),
        },
        [] => err("empty command"),
        other => err(&format!("unknown command {:?}; one of: ports, vips, eips, neighbors, routes, stats, trace PORT HEXFRAME, reload, capture PORT DIR COUNT, drops SECS [PORT]", other.join(" "))),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\n'))
        .collect();
    if !digits.len().is_multiple_of(2) || digits.len() > 2 * 9216 {
        return None;
    }
    digits
        .chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

/// A streamed request: the words sent, and where a capture is written.
type StreamRequest = (Vec<String>, Option<String>);

/// Options of `ctl capture` / `ctl drops`, parsed from the words after the command.
fn stream_request(cmd: &[String]) -> Result<Option<StreamRequest>, String> {
    let mut it = cmd.iter().skip(1);
    match cmd.first().map(String::as_str) {
        Some("capture") => {
            let (mut port, mut dir, mut count, mut out) =
                (None, "both".to_string(), "0".to_string(), None);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--direction" | "-d" => {
                        dir = it.next().ok_or("--direction needs rx, tx or both")?.clone()
                    }
                    "--count" | "-c" => count = it.next().ok_or("--count needs a number")?.clone(),
                    "-w" => out = Some(it.next().ok_or("-w needs a file name or -")?.clone()),
                    p if port.is_none() && !p.starts_with('-') => port = Some(p.to_string()),
                    other => return Err(format!("capture: unexpected {other:?}")),
                }
            }
            let port = port.ok_or(
                "usage: ctl capture PORT [--direction rx|tx|both] [--count N] -w FILE.pcap|-",
            )?;
            let out = out.ok_or("capture needs -w FILE.pcap (or -w - for stdout)")?;
            Ok(Some((vec!["capture".into(), port, dir, count], Some(out))))
        }
        Some("drops") => {
            let mut secs = "1".to_string();
            let mut port = None;
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--follow" | "-f" => secs = "0".into(),
                    "--secs" => secs = it.next().ok_or("--secs needs a number")?.clone(),
                    "--port" | "-p" => {
                        port = Some(it.next().ok_or("--port needs a port name")?.clone())
                    }
                    other => return Err(format!("drops: unexpected {other:?}")),
                }
            }
            let mut words = vec!["drops".into(), secs];
            words.extend(port);
            Ok(Some((words, None)))
        }
        _ => Ok(None),
    }
}

/// Reads the streamed answer of `capture` into a pcap file (or stdout) or prints the
/// dropped frames of `drops`.
fn stream_client(s: UnixStream, json_out: bool, out: Option<String>) -> ExitCode {
    let mut lines = BufReader::new(s).lines();
    let first: Value = match lines.next() {
        Some(Ok(l)) => serde_json::from_str(&l).unwrap_or(Value::Null),
        _ => return fail(json_out, "no answer from the switch", 2),
    };
    if first.get("ok").and_then(Value::as_bool) != Some(true) {
        return fail(json_out, first["text"].as_str().unwrap_or("error"), 1);
    }
    let mut pcap: Option<Box<dyn Write>> = match out.as_deref() {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout().lock())),
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => return fail(json_out, &format!("cannot write {path}: {e}"), 2),
        },
    };
    if let Some(w) = pcap.as_mut() {
        let snaplen = first["data"]["snaplen"].as_u64().unwrap_or(65535) as u32;
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&snaplen.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
        if w.write_all(&h).is_err() {
            return ExitCode::from(2);
        }
    }
    let mut n = 0u64;
    for l in lines {
        let Ok(l) = l else { break };
        let Ok(v) = serde_json::from_str::<Value>(&l) else {
            continue;
        };
        if v.get("heartbeat").is_some() {
            continue;
        }
        if let Some(done) = v.get("done") {
            if pcap.is_some() {
                eprintln!(
                    "{done} frames captured, {} lost",
                    v["lost"].as_u64().unwrap_or(0)
                );
            }
            if let Some(why) = v["ended"].as_str() {
                eprintln!("ended: {why}");
            }
            break;
        }
        n += 1;
        match pcap.as_mut() {
            Some(w) => {
                let data = unhex(v["data"].as_str().unwrap_or("")).unwrap_or_default();
                let ts = v["ts_us"].as_u64().unwrap_or(0);
                let mut r = Vec::with_capacity(16 + data.len());
                r.extend_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
                r.extend_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
                r.extend_from_slice(&(data.len() as u32).to_le_bytes());
                r.extend_from_slice(&(v["len"].as_u64().unwrap_or(0) as u32).to_le_bytes());
                r.extend_from_slice(&data);
                if w.write_all(&r).and_then(|_| w.flush()).is_err() {
                    break;
                }
            }
            None if json_out => println!("{v}"),
            None => println!(
                "{} {:<12} {:<26} {:>5} B  {}",
                v["ts_us"].as_u64().map_or("-".into(), |t| format!(
                    "{}.{:06}",
                    t / 1_000_000,
                    t % 1_000_000
                )),
                v["port"].as_str().unwrap_or("?"),
                v["reason"].as_str().unwrap_or("?"),
                v["len"].as_u64().unwrap_or(0),
                v["decode"].as_str().unwrap_or("")
            ),
        }
    }
    if pcap.is_none() && n == 0 && !json_out {
        eprintln!("no drops sampled");
    }
    ExitCode::SUCCESS
}

/// A failed `ctl` command: with `--json`, `{"ok": false, "error": "..."}` on stdout
/// (so a script always gets JSON), else the message on stderr; `code` is the status.
fn fail(json_out: bool, msg: &str, code: u8) -> ExitCode {
    let msg = msg.trim_end();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if json_out {
        println!("{}", json!({"ok": false, "error": msg}));
    } else {
        eprintln!("{msg}");
    }
    ExitCode::from(code)
}

/// `vpcswitch ctl`: sends one request and prints the answer. With `--json`, every
/// outcome prints JSON on stdout: the data on success, `{"ok": false, "error": ...}`
/// on failure (exit 1 when the switch refused, 2 when it could not be asked).
pub fn client(socket: &Path, json_out: bool, cmd: &[String]) -> ExitCode {
    let stream = match stream_request(cmd) {
        Ok(s) => s,
        Err(e) => return fail(json_out, &e, 2),
    };
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                json_out,
                &format!(
                    "cannot connect to {}: {e} (is the switch running? pass --socket)",
                    socket.display()
                ),
                2,
            )
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let cmd: Vec<String> = stream
        .as_ref()
        .map_or_else(|| cmd.to_vec(), |(c, _)| c.clone());
    let mut req = json!({"cmd": cmd, "json": json_out}).to_string();
    req.push('\n');
    if let Err(e) = s.write_all(req.as_bytes()) {
        return fail(json_out, &format!("cannot send: {e}"), 2);
    }
    if let Some((_, out)) = stream {
        return stream_client(s, json_out, out);
    }
    let mut resp = String::new();
    if let Err(e) = s.read_to_string(&mut resp) {
        return fail(json_out, &format!("cannot read the answer: {e}"), 2);
    }
    let v: Value = match serde_json::from_str(&resp) {
        Ok(v) => v,
        Err(e) => return fail(json_out, &format!("malformed answer: {e}"), 2),
    };
    let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if json_out && ok {
        println!(
            "{}",
            serde_json::to_string_pretty(&v["data"]).unwrap_or_default()
        );
    } else if ok {
        print!("{}", v["text"].as_str().unwrap_or_default());
    } else {
        return fail(json_out, v["text"].as_str().unwrap_or("error"), 1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    fn cfg(second: &str, mac2: &str) -> vpcswitch::model::Config {
        vpcswitch::model::ConfigBuilder::new()
            .workers(1)
            .vpc("a", &["10.0.0.0/16"])
            .subnet("a1", "a", "10.0.1.0/24")
            .port("p1", "a1", "02:00:00:00:01:01", &["10.0.1.11"])
            .port(second, "a1", mac2, &["10.0.1.12"])
            .build()
            .unwrap()
    }

    /// A switch on memory backends, wrapped as the binary wraps it.
    pub(crate) fn running() -> Arc<Running> {
        let c = cfg("p2", "02:00:00:00:01:02");
        let (b, _g) = vpcswitch::runtime::memory_backends(&c, 64);
        let sw = vpcswitch::runtime::Switch::start(&c, b).unwrap();
        Arc::new(Running::new(
            vpcswitch::linux::Host::new(sw),
            PathBuf::from("/nonexistent/vpcswitch.toml"),
        ))
    }

    pub(crate) fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vpcswitch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Sends `req` one byte per second on `s` (until the server closes), and reads what
    /// the server answers; returns when it closes the connection: (after how long, the
    /// answer).
    pub(crate) fn dribble<S>(s: S, req: &'static [u8]) -> (Duration, String)
    where
        S: Send + Sync + 'static,
        for<'a> &'a S: Read + Write,
    {
        let start = Instant::now();
        let s = Arc::new(s);
        let w = s.clone();
        let writer = std::thread::spawn(move || {
            for b in req {
                if (&*w).write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let mut r = &*s;
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let took = start.elapsed();
        let _ = writer.join();
        (took, String::from_utf8_lossy(&answer).into_owned())
    }

    /// Issue 15 item 11: a client pacing its request one byte a second (each read well
    /// within any per-read timeout) is closed at the whole-request deadline, and other
    /// clients are served meanwhile. Before the fix the 2 s timeout was per read: the
    /// connection stayed open for the whole dribble (12 s here) and then some.
    #[test]
    fn a_dribbling_control_client_is_cut_at_the_deadline_and_others_are_served() {
        let dir = tmpdir("ctl-dribble");
        let path = dir.join("ctl.sock");
        let stop = Arc::new(Stopper::new().unwrap());
        let h = serve(&path, running(), stop.clone()).unwrap();
        let slow = UnixStream::connect(&path).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let t = std::thread::spawn(move || dribble(slow, b"{\"cmd\": [\"stats\"]}  \n"));
        std::thread::sleep(Duration::from_millis(1500));
        // another client, while the slow one is still sending
        let mut c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t0 = Instant::now();
        c.write_all(b"{\"cmd\": [\"stats\"]}\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.contains("\"ok\":true"), "{out}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        let (took, answer) = t.join().unwrap();
        assert!(
            took >= deadline::REQUEST - Duration::from_millis(100)
                && took < deadline::REQUEST + Duration::from_millis(1500),
            "closed after {took:?}"
        );
        assert!(answer.contains("not complete within"), "{answer}");
        stop.stop();
        h.finish();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 15 item 11: the control socket is never reachable by group or others, not
    /// even for an instant. A thread stats the path as fast as it can while the socket is
    /// bound, 600 times over; before the fix (bind, then chmod) it saw the default mode
    /// (0755 under the usual umask) in the window between the two. The window is closed
    /// by construction: the file is created under a 0o177 umask, so the first mode it
    /// ever has is 0600, which is all this test can check from outside.
    #[test]
    fn the_control_socket_is_never_group_or_world_accessible() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tmpdir("ctl-mode");
        for i in 0..600 {
            let path = dir.join(format!("ctl{i}.sock"));
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let go = Arc::new(AtomicBool::new(true));
            let (p, s, g) = (path.clone(), seen.clone(), go.clone());
            let watcher = std::thread::spawn(move || {
                while g.load(Ordering::Relaxed) {
                    if let Ok(m) = std::fs::symlink_metadata(&p) {
                        if m.file_type().is_socket() {
                            s.lock().unwrap().push(m.permissions().mode() & 0o777);
                        }
                    }
                }
            });
            std::thread::sleep(Duration::from_millis(2));
            let l = bind_private(&path).unwrap();
            let t0 = Instant::now();
            while seen.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(2) {
                std::thread::yield_now();
            }
            go.store(false, Ordering::Relaxed);
            watcher.join().unwrap();
            drop(l);
            let modes = seen.lock().unwrap().clone();
            assert!(!modes.is_empty());
            assert!(
                modes.iter().all(|m| m & 0o077 == 0),
                "round {i}: modes seen {:?}",
                modes.iter().map(|m| format!("{m:o}")).collect::<Vec<_>>()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 15 item 10 over the control protocol: a capture streaming from p2 ends when
    /// a reload deletes p2 and gives its id to p3; the last line says why.
    #[test]
    fn a_capture_stream_ends_when_its_port_is_deleted() {
        let dir = tmpdir("ctl-capture");
        let path = dir.join("ctl.sock");
        let r = running();
        let stop = Arc::new(Stopper::new().unwrap());
        let h = serve(&path, r.clone(), stop.clone()).unwrap();
        let mut c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"{\"cmd\": [\"capture\", \"p2\", \"both\", \"0\"]}\n")
            .unwrap();
        let mut lines = BufReader::new(c.try_clone().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.contains("\"ok\":true"), "{first}");
        let next = cfg("p3", "02:00:00:00:01:03");
        let (b, _g) = vpcswitch::runtime::memory_backends(&next, 64);
        let b = b.into_iter().filter(|(n, _)| n == "p3").collect();
        r.switch.reload(&next, b).unwrap();
        let old = r.switch.snapshot();
        assert_eq!(old.port_id("p3"), Some(1), "p3 takes p2's id");
        let t0 = Instant::now();
        // heartbeats come every second: without the fix the stream never ends
        let last = lines
            .map_while(Result::ok)
            .take_while(|_| t0.elapsed() < Duration::from_secs(5))
            .find(|l| l.contains("\"done\""))
            .expect("the capture stream did not end");
        assert!(last.contains("p2") && last.contains("deleted"), "{last}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        assert!(r.captures.lock().unwrap().is_empty());
        stop.stop();
        h.finish();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
