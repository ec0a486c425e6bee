//! The control socket: one JSON request line in, one JSON response out.
//!
//! Request: `{"cmd": ["stats"], "json": false}`. Response:
//! `{"ok": true, "schema_version": 1, "text": "...", "data": {...}}`; `data` is one of
//! the types of [`schema`] (`docs/ctl-json.md`). The socket is created mode 0600 (under
//! a 0o177 umask, so it is never reachable with wider permissions, see [`bind_private`]):
//! only root (or the switch's user) may command the switch. A request is capped at
//! 64 KiB and must arrive whole within [`deadline::REQUEST`] (however it is paced), a
//! reply is written within [`deadline::RESPONSE`], each line of a stream within
//! [`deadline::STREAM_LINE`]; anything malformed gets `ok: false` and a message, never a
//! crash. Up to 16 requests are served at once, each on its own thread.
//!
//! Here: the server and the dispatcher; `views` answers the table commands and
//! `trace`, `stream` the streamed `capture` and `drops`, `client` is `vpcswitch ctl`.

pub mod cli;
mod client;
mod flow;
pub mod pcapng;
pub mod schema;
mod stream;
#[cfg(test)]
pub(crate) mod tests;
mod views;

pub use client::client;

/// `ctl --json`'s failure answer (`{"ok": false, "error": msg}` on stdout), exit `code`.
pub fn client_fail_json(msg: &str, code: u8) -> std::process::ExitCode {
    client::fail(true, msg, code)
}

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{json, Value};

use crate::deadline::{self, Deadline};
use crate::listen::{accept_until_stopped, Slots, Stopper};
use crate::Running;

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
                        return stream::capture(&s, running, port, dir, count, "")
                    }
                    ["capture", port, dir, count, filter] => {
                        return stream::capture(&s, running, port, dir, count, filter)
                    }
                    ["drops", secs] => return stream::drops(&s, running, secs, None),
                    ["drops", secs, port] => return stream::drops(&s, running, secs, Some(port)),
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
pub(crate) fn send_line(s: &UnixStream, v: &Value) -> bool {
    let mut out = v.to_string();
    out.push('\n');
    Deadline::new(s, deadline::STREAM_LINE)
        .write_all(out.as_bytes())
        .is_ok()
}

pub(crate) fn err(msg: &str) -> Value {
    json!({"ok": false, "text": format!("error: {msg}\n"), "data": null})
}

pub(crate) fn ok(text: String, data: Value) -> Value {
    json!({"ok": true, "schema_version": schema::SCHEMA_VERSION, "text": text, "data": data})
}

/// [`ok`] with one of the [`schema`] types as its data.
pub(crate) fn ok_data<T: serde::Serialize>(text: String, data: &T) -> Value {
    match serde_json::to_value(data) {
        Ok(d) => ok(text, d),
        // the schema's maps are keyed by strings: never happens
        Err(e) => err(&format!("cannot encode the answer: {e}")),
    }
}

/// The commands, as an unknown one is told.
const COMMANDS: &str = "ports, vips, eips, neighbors, routes, stats, hosts, trace PORT HEXFRAME, \
    trace-flow PORT EXPR, \
    reload, capture PORT DIR COUNT [FILTER], drops SECS [PORT]";

/// One request, one answer: the table commands, `trace` and `reload`.
fn dispatch(req: &Value, r: &Running) -> Value {
    let args: Vec<&str> = match req.get("cmd").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).collect(),
        None => return err("request needs \"cmd\": [\"command\", args...]"),
    };
    match args.as_slice() {
        ["ports"] => views::ports(r),
        ["vips"] => views::vips(r),
        ["eips"] => views::eips(r),
        ["neighbors"] => views::neighbors(r),
        ["routes"] => views::routes(r),
        ["stats"] => views::stats(r),
        ["hosts"] => views::hosts(r),
        ["trace", port, hex] => views::trace(r, port, hex),
        ["trace-flow", port, expr] => views::trace_flow(r, port, expr),
        ["reload"] => match r.reload() {
            Ok(g) => ok_data(
                format!("reloaded: generation {g}\n"),
                &schema::ReloadAnswer { generation: g },
            ),
            Err(e) => err(&format!(
                "reload refused, the running configuration stays:\n{e}"
            )),
        },
        [] => err("empty command"),
        other => err(&format!(
            "unknown command {:?}; one of: {COMMANDS}",
            other.join(" ")
        )),
    }
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
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
