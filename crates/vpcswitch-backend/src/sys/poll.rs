//! Waiting for device readiness: an epoll set and an eventfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// Most readiness events one [`Epoll::wait`] reports (the rest stay pending: level
/// triggered, the next wait reports them).
pub const EPOLL_EVENTS: usize = 64;

/// An epoll set: the descriptors a sleeping worker waits on, kept up to date as queues
/// come and go (so a sleep costs one system call, however many ports there are).
/// Level-triggered, readable (`EPOLLIN`) interest; errors and hang-ups always wake.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// An empty set.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain flags; the result is checked.
        let raw = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a live epoll_event for the call (ignored by EPOLL_CTL_DEL); a
        // bad or closed `fd` is reported as an error, not undefined behaviour.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Adds `fd` (readable interest), tagged with `token`. Adding it twice is `EEXIST`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token)
    }

    /// Removes `fd` (`ENOENT` when it is not in the set; a closed descriptor has left
    /// the set by itself).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    /// Waits until a descriptor of the set is ready or `timeout_ms` passes; returns
    /// the number of ready descriptors (0 on timeout). `EINTR` counts as a timeout.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<usize> {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; EPOLL_EVENTS];
        // SAFETY: `ev` is a valid array of EPOLL_EVENTS events for the whole call.
        let r = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                ev.as_mut_ptr(),
                EPOLL_EVENTS as libc::c_int,
                timeout_ms,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(r as usize)
    }
}

/// An `eventfd(2)` counter: written by [`crate::Waker::wake`] to end a worker's sleep
/// in its [`Epoll`] set.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A non-blocking counter at zero.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain flags; the result is checked.
        let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `raw` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Makes the descriptor readable (wakes whoever waits on it).
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, live for the call. A full counter
        // (EAGAIN) is already readable, which is all a signal needs.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the counter (the descriptor is no longer readable).
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into `v`, live for the call; EAGAIN when zero.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// The descriptor, to add to an [`Epoll`] set.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
