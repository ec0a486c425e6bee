//! Waiting for device readiness: the only `unsafe` in this crate.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

/// Most descriptors one wait covers (the rest are polled without waiting).
pub const MAX_FDS: usize = 64;

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns the number of
/// ready descriptors (0 on timeout). `EINTR` counts as a timeout.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
    let mut p = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    let n = fds.len().min(MAX_FDS);
    for (slot, fd) in p.iter_mut().zip(fds) {
        slot.fd = *fd;
        slot.events = libc::POLLIN;
    }
    // SAFETY: `p` is a valid array of at least `n` pollfd structs for the whole call.
    let r = unsafe { libc::poll(p.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}
