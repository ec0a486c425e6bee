//! systemd's service notifications (sd_notify(3)), written by hand: a datagram of
//! `KEY=VALUE` lines to the socket `$NOTIFY_SOCKET` names (a path, or `@name` for an
//! abstract socket). `run` tells systemd when it is ready (after the control socket
//! listens), when it reloads (`RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`:
//! what `Type=notify-reload` waits for), that it is alive (`WATCHDOG=1` at half of
//! `$WATCHDOG_USEC`, sent by the monitor only while the workers are healthy: a switch
//! whose workers stopped is restarted by the watchdog even if its main thread lives),
//! and when it stops (`STOPPING=1`). Without `$NOTIFY_SOCKET` nothing is sent. A
//! notification that cannot be sent is logged once and otherwise ignored: systemd's
//! absence never stops the switch.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Where notifications go, from the environment systemd gives the service.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
    failed: AtomicBool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (and `$WATCHDOG_USEC`, when `$WATCHDOG_PID` is unset or
    /// this process); `None` without it, or when it names nothing usable (logged).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().to_string();
        let to = match address(&path) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(socket = %path, error = %e, "NOTIFY_SOCKET is not a usable socket address; no systemd notifications");
                return None;
            }
        };
        let sock = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the notification socket; no systemd notifications");
                return None;
            }
        };
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&us| us > 0 && for_us)
            .map(Duration::from_micros);
        Some(Notifier {
            sock,
            to,
            watchdog,
            failed: AtomicBool::new(false),
        })
    }

    /// How often to send `WATCHDOG=1` (half the watchdog's timeout), when systemd
    /// watches this process.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    /// Sends `msg` (lines of `KEY=VALUE`).
    pub fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.to) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot notify systemd (logged once)");
            }
        }
    }

    /// Started (or reloaded): ready to serve, with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A reload begins (`Type=notify-reload` waits for the [`Notifier::ready`] that
    /// follows).
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            vpcswitch::backend::sys::monotonic_usec()
        ));
    }

    /// Alive (the monitor, while the workers are healthy).
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Stopping.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }
}

/// A status value on one line (a newline would start another key).
fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// `$NOTIFY_SOCKET`'s address: an absolute path, or `@name` for Linux's abstract
/// namespace.
fn address(path: &str) -> std::io::Result<SocketAddr> {
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if path.starts_with('/') {
        SocketAddr::from_pathname(path)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(address("/run/systemd/notify").is_ok());
        assert!(address("@vpcswitch-test").is_ok());
        assert!(address("relative").is_err());
        assert_eq!(one_line("a\nb"), "a b");
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = std::env::temp_dir().join(format!("vpcswitch-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("n.sock");
        let _ = std::fs::remove_file(&p);
        let rx = UnixDatagram::bind(&p).unwrap();
        let n = Notifier {
            sock: UnixDatagram::unbound().unwrap(),
            to: address(p.to_str().unwrap()).unwrap(),
            watchdog: Some(Duration::from_secs(10)),
            failed: AtomicBool::new(false),
        };
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(5)));
        n.reloading();
        n.ready("running\n3 ports");
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        let m = String::from_utf8_lossy(&buf[..len]).to_string();
        assert!(m.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{m}");
        let us: u64 = m.lines().nth(1).unwrap()["MONOTONIC_USEC=".len()..]
            .parse()
            .unwrap();
        assert!(us > 0);
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=running 3 ports");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
