//! Whole-request deadlines for the control socket and the metrics server.
//!
//! A socket timeout bounds one `read` or `write`, not a request: a client sending one
//! byte every 1.5 s under a 2 s read timeout holds its connection forever. Reading and
//! writing here go through [`Deadline`], which sets the socket timeout before each call
//! to the time left until one fixed instant and fails with `TimedOut` once it has
//! passed, so a request is read (and a reply written) within its deadline or the
//! connection is closed, however the client paces its bytes.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Time a client has to send its whole request (control line or HTTP head).
pub const REQUEST: Duration = Duration::from_secs(3);
/// Time a client has to take a whole reply (a big `stats` page or metrics scrape).
pub const RESPONSE: Duration = Duration::from_secs(10);
/// Time a streaming client (capture, drops) has to take one line.
pub const STREAM_LINE: Duration = Duration::from_secs(5);

/// A socket whose per-call timeouts can be set.
pub trait Timeouts {
    /// `set_read_timeout`
    fn read_timeout(&self, d: Duration) -> io::Result<()>;
    /// `set_write_timeout`
    fn write_timeout(&self, d: Duration) -> io::Result<()>;
}

impl Timeouts for UnixStream {
    fn read_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn write_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

impl Timeouts for TcpStream {
    fn read_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d))
    }
    fn write_timeout(&self, d: Duration) -> io::Result<()> {
        self.set_write_timeout(Some(d))
    }
}

/// Reads and writes `s` until `until`, then fails with `TimedOut`.
#[derive(Debug)]
pub struct Deadline<'a, S> {
    s: &'a S,
    until: Instant,
}

impl<'a, S: Timeouts> Deadline<'a, S> {
    /// Reads and writes on `s` within `limit` from now.
    pub fn new(s: &'a S, limit: Duration) -> Self {
        Deadline {
            s,
            until: Instant::now() + limit,
        }
    }

    /// Has the deadline passed?
    pub fn passed(&self) -> bool {
        Instant::now() >= self.until
    }

    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl<'a, S: Timeouts> Read for Deadline<'a, S>
where
    &'a S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.s.read_timeout(self.left()?)?;
        let mut s = self.s;
        s.read(buf)
    }
}

impl<'a, S: Timeouts> Write for Deadline<'a, S>
where
    &'a S: Write,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write_timeout(self.left()?)?;
        let mut s = self.s;
        s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 item 11: the deadline holds for the whole request, whatever the pace.
    #[test]
    fn a_dribbling_peer_is_cut_at_the_deadline() {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            for _ in 0..20 {
                if (&b).write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let start = Instant::now();
        let mut r = Deadline::new(&a, Duration::from_millis(500));
        let mut buf = [0u8; 1];
        let mut got = 0;
        let e = loop {
            match r.read(&mut buf) {
                Ok(0) => panic!("peer closed first"),
                Ok(n) => got += n,
                Err(e) => break e,
            }
        };
        let took = start.elapsed();
        assert!(got >= 3, "{got} bytes before the deadline");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            "{e}"
        );
        assert!(took < Duration::from_millis(800), "{took:?}");
        drop(a);
        let _ = t.join();
    }
}
