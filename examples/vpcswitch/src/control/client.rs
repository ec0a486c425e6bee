//! `vpcswitch ctl`: the client side of the control socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use super::cli::Format;
use super::unhex;

/// A field of a stream line by its name, or by the name a switch before schema version
/// 1 gave it (`ctl` may be newer than the switch it asks, during an upgrade).
fn field<'a>(v: &'a Value, name: &str, old: &str) -> &'a Value {
    v.get(name).unwrap_or(&v[old])
}

/// Reads the streamed answer of `capture` into a pcap file (or stdout) or prints the
/// dropped frames of `drops` (lines of [`super::schema`]).
fn stream_client(s: UnixStream, json_out: bool, out: Option<(String, Format)>) -> ExitCode {
    let mut lines = BufReader::new(s).lines();
    let first: Value = match lines.next() {
        Some(Ok(l)) => serde_json::from_str(&l).unwrap_or(Value::Null),
        _ => return fail(json_out, "no answer from the switch", 2),
    };
    if first.get("ok").and_then(Value::as_bool) != Some(true) {
        return fail(json_out, first["text"].as_str().unwrap_or("error"), 1);
    }
    let format = out.as_ref().map(|o| o.1);
    let mut pcap: Option<Box<dyn Write>> = match out.as_ref().map(|o| o.0.as_str()) {
        None => None,
        Some("-") => Some(Box::new(std::io::stdout().lock())),
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Some(Box::new(std::io::BufWriter::new(f))),
            Err(e) => return fail(json_out, &format!("cannot write {path}: {e}"), 2),
        },
    };
    let snaplen = field(&first["data"], "snaplen_bytes", "snaplen")
        .as_u64()
        .unwrap_or(65535) as u32;
    if let (Some(w), Some(Format::Pcapng)) = (pcap.as_mut(), format) {
        let port = first["data"]["port"].as_str().unwrap_or("?");
        let filter = first["data"]["filter"].as_str().unwrap_or("");
        let mut h = super::pcapng::section_header(&format!("vpcswitch ctl capture {port}"));
        h.extend(super::pcapng::interface(
            port,
            &format!("vpcswitch port {port}"),
            snaplen,
            filter,
        ));
        if super::pcapng::write(w, &h).is_err() {
            return ExitCode::from(2);
        }
    } else if let Some(w) = pcap.as_mut() {
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
                // before schema 1: "done" was the count
                let count = v["count"].as_u64().or(done.as_u64()).unwrap_or(0);
                let lost = field(&v, "lost_frames", "lost").as_u64().unwrap_or(0);
                eprintln!("{count} frames captured, {lost} lost");
            }
            if pcap.is_none() && json_out {
                // the script learns how it ended (docs/ctl-json.md)
                println!("{v}");
            } else if let Some(why) = v["ended"].as_str() {
                eprintln!("ended: {why}");
            }
            break;
        }
        n += 1;
        let ts_us = field(&v, "ts_unix_us", "ts_us").as_u64().unwrap_or(0);
        let orig_len = field(&v, "orig_len_bytes", "len").as_u64().unwrap_or(0);
        match pcap.as_mut() {
            Some(w) if format == Some(Format::Pcapng) => {
                let data = unhex(v["data"].as_str().unwrap_or("")).unwrap_or_default();
                let dir = if v["dir"] == "tx" {
                    super::pcapng::Dir::Outbound
                } else {
                    super::pcapng::Dir::Inbound
                };
                let b = super::pcapng::packet(0, ts_us, &data, orig_len as usize, dir);
                if super::pcapng::write(w, &b).is_err() {
                    break;
                }
            }
            Some(w) => {
                let data = unhex(v["data"].as_str().unwrap_or("")).unwrap_or_default();
                let ts = ts_us;
                let mut r = Vec::with_capacity(16 + data.len());
                r.extend_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
                r.extend_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
                r.extend_from_slice(&(data.len() as u32).to_le_bytes());
                r.extend_from_slice(&(orig_len as u32).to_le_bytes());
                r.extend_from_slice(&data);
                if w.write_all(&r).and_then(|_| w.flush()).is_err() {
                    break;
                }
            }
            None if json_out => println!("{v}"),
            None => println!(
                "{}.{:06} {:<12} {:<26} {:>5} B  {}",
                ts_us / 1_000_000,
                ts_us % 1_000_000,
                v["port"].as_str().unwrap_or("?"),
                v["reason"].as_str().unwrap_or("?"),
                orig_len,
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
pub(super) fn fail(json_out: bool, msg: &str, code: u8) -> ExitCode {
    let msg = msg.trim_end();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if json_out {
        let e = super::schema::ErrorAnswer {
            ok: false,
            error: msg.to_string(),
        };
        println!("{}", serde_json::to_string(&e).unwrap_or_default());
    } else {
        eprintln!("{msg}");
    }
    ExitCode::from(code)
}

/// `vpcswitch ctl`: sends one request (`cmd`: the protocol's words; `out`: where a
/// capture goes) and prints the answer. With `--json`, every outcome prints JSON on
/// stdout: the data on success, `{"ok": false, "error": ...}` on failure (exit 1 when
/// the switch refused, 2 when it could not be asked).
pub fn client(
    socket: &Path,
    json_out: bool,
    cmd: &[String],
    out: Option<(String, Format)>,
) -> ExitCode {
    let streamed = matches!(cmd.first().map(String::as_str), Some("capture" | "drops"));
    let mut s = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                json_out,
                &format!(
                    "cannot connect to {}: {e} (is the switch running? pass --socket or --config)",
                    socket.display()
                ),
                2,
            )
        }
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = json!({"cmd": cmd, "json": json_out}).to_string();
    req.push('\n');
    if let Err(e) = s.write_all(req.as_bytes()) {
        return fail(json_out, &format!("cannot send: {e}"), 2);
    }
    if streamed {
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
