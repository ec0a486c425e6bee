//! Accept loops that stop when asked, whatever happened on disk.
//!
//! The control and metrics servers wait in `epoll_wait` on two descriptors: their
//! listening socket and the [`Stopper`]'s eventfd. Stopping writes the eventfd, so the
//! accept thread wakes at once; nothing depends on a path (the control socket file may
//! have been removed or replaced by then, and connecting to it would wake nobody).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vpcswitch::backend::sys::{Epoll, EventFd};

const LISTENER: u64 = 0;
const STOP: u64 = 1;

/// A stop request the accept loops (and anything else polling it) see at once.
#[derive(Debug)]
pub struct Stopper {
    flag: AtomicBool,
    efd: EventFd,
}

impl Stopper {
    /// Not stopped yet.
    pub fn new() -> io::Result<Stopper> {
        Ok(Stopper {
            flag: AtomicBool::new(false),
            efd: EventFd::new()?,
        })
    }

    /// Asks every loop waiting on this to end (they wake at once).
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.efd.signal();
    }

    /// Has [`Stopper::stop`] been called?
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Accepts connections on the listening socket `fd` until `stop`, handing each to
/// `on_conn`. `accept` must not block (the listener is non-blocking): it is called
/// until it says `WouldBlock`, after each wake-up.
pub fn accept_until_stopped<S>(
    fd: RawFd,
    stop: &Stopper,
    mut accept: impl FnMut() -> io::Result<S>,
    mut on_conn: impl FnMut(S),
) -> io::Result<()> {
    let ep = Epoll::new()?;
    ep.add(fd, LISTENER)?;
    ep.add(stop.efd.raw(), STOP)?;
    while !stop.stopped() {
        // the timeout is only a backstop: the eventfd wakes the wait
        ep.wait(1000)?;
        while !stop.stopped() {
            match accept() {
                Ok(s) => on_conn(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // out of descriptors or memory, an aborted connection: try again a
                    // little later rather than spin on a listener that stays readable
                    tracing::debug!(error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(20));
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Connections being served, at most `max` at once (control socket and metrics
/// server): a slow or silent client holds one place, never the accept loop.
#[derive(Debug, Clone)]
pub struct Slots {
    active: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

/// One place taken in [`Slots`]; given back when dropped, so also when the thread
/// meant to serve it could not be made.
#[derive(Debug)]
pub struct Slot(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    /// Room for `max` connections.
    pub fn new(max: usize) -> Slots {
        Slots {
            active: std::sync::Arc::default(),
            max,
        }
    }

    /// A place, or `None` when `max` connections are being served.
    pub fn take(&self) -> Option<Slot> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= self.max {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(self.active.clone()))
    }

    /// Serves one connection on a thread of its own named `name`, holding `slot` until
    /// `serve` returns.
    pub fn serve_on_thread(name: &str, slot: Slot, serve: impl FnOnce() + Send + 'static) {
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _slot = slot;
                serve();
            });
    }
}
