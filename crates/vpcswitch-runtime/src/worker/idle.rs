//! The idle side of a worker: the adaptive policy's linger ([`Idle`]), the sleep in
//! `epoll_wait`, and the set of descriptors it sleeps on.

use vpcswitch_backend::Waker;
use vpcswitch_model::IdlePolicy;

use super::*;

/// The adaptive idle policy's state: how long to keep polling after the last frame.
///
/// A worker that sleeps pays a wake-up on the next frame (the scheduler, and in a VM
/// the halted vCPU's exit: ~20 µs and a long tail here, docs/architecture.md "Where
/// the time goes"). Polling on costs a core. So the linger follows the traffic: when a
/// sleep ends with frames that came `gap` after the previous ones, and `gap` is under
/// half of [`LINGER_MAX`], the next linger is `2 × gap` (so a steady flow of a frame
/// every `gap` keeps the worker awake, without a wake-up per frame); a larger gap (a
/// sparse flow, which polling would not serve any better per core spent) brings it back
/// to [`QUIET`]. With no traffic, a worker sleeps [`LINGER_MAX`] at the latest after
/// its last frame.
#[derive(Debug)]
pub(super) struct Idle {
    /// the switch clock at the last pass that found frames
    last_frames_ns: u64,
    /// time without frames before sleeping
    linger_ns: u64,
    /// a sleep happened since the last frames
    slept: bool,
}

impl Idle {
    pub(super) fn new() -> Idle {
        Idle {
            last_frames_ns: 0,
            linger_ns: QUIET.as_nanos() as u64,
            slept: false,
        }
    }

    /// A pass at `now_ns` found frames.
    #[inline]
    pub(super) fn frames(&mut self, now_ns: u64) {
        if self.slept {
            self.slept = false;
            let gap = now_ns.saturating_sub(self.last_frames_ns);
            let max = LINGER_MAX.as_nanos() as u64;
            self.linger_ns = if gap < max / 2 {
                (2 * gap).max(QUIET.as_nanos() as u64)
            } else {
                QUIET.as_nanos() as u64
            };
        }
        self.last_frames_ns = now_ns;
    }

    /// The worker goes to sleep.
    pub(super) fn slept(&mut self) {
        self.slept = true;
    }

    /// Whether a worker whose queues are empty at `now_ns` may sleep under `policy`.
    pub(super) fn may_sleep(&self, policy: IdlePolicy, now_ns: u64) -> bool {
        match policy {
            IdlePolicy::BusyPoll => false,
            IdlePolicy::Adaptive => now_ns.saturating_sub(self.last_frames_ns) >= self.linger_ns,
        }
    }
}

impl Worker {
    /// Sleeps until traffic may have arrived: in `epoll_wait` on the worker's set (the
    /// queues' descriptors and the waker's eventfd), for at most [`FD_SLEEP`], or
    /// [`MAX_SLEEP`] while a queue without descriptors is attached. False when the
    /// sleep ran out with nothing ready.
    pub(super) fn sleep(&mut self, waker: &Waker) -> bool {
        let bound = if self.no_fd > 0 || waker.event_fd().is_none() {
            MAX_SLEEP
        } else {
            FD_SLEEP
        };
        let Some(ep) = &self.epoll else {
            // no epoll set: descriptors cannot wake us, so sleep in short steps
            let has_fds = self.watch.iter().any(|w| matches!(w, Watch::Fds(_)));
            std::thread::park_timeout(if has_fds { FALLBACK_SLEEP } else { MAX_SLEEP });
            return true;
        };
        match ep.wait(bound.as_millis() as i32) {
            Ok(0) => false,
            Ok(_) => {
                waker.clear();
                true
            }
            Err(_) => {
                std::thread::park_timeout(FALLBACK_SLEEP);
                true
            }
        }
    }

    /// Adds port `pid`'s queue to the sleep set (its descriptors, or [`Watch::NoFd`]).
    pub(super) fn watch(&mut self, pid: usize) {
        self.unwatch(pid);
        let Some(q) = self.queues.get(pid).and_then(Option::as_ref) else {
            return;
        };
        let mut fds = Vec::new();
        q.poll_fds(&mut fds);
        let added = match &self.epoll {
            Some(ep) if !fds.is_empty() => {
                let mut ok = true;
                for (k, &fd) in fds.iter().enumerate() {
                    if ep.add(fd, pid as u64).is_err() {
                        for &f in &fds[..k] {
                            let _ = ep.remove(f);
                        }
                        ok = false;
                        break;
                    }
                }
                ok
            }
            _ => false,
        };
        self.watch[pid] = if added {
            Watch::Fds(fds)
        } else {
            self.no_fd += 1;
            Watch::NoFd
        };
    }

    /// Takes port `pid`'s queue out of the sleep set (before the queue is dropped, or
    /// when its device is down: a deleted device's descriptor is always "ready").
    #[cold]
    pub(super) fn unwatch(&mut self, pid: usize) {
        match self.watch.get_mut(pid).map(std::mem::take) {
            Some(Watch::Fds(fds)) => {
                if let Some(ep) = &self.epoll {
                    for fd in fds {
                        let _ = ep.remove(fd);
                    }
                }
            }
            Some(Watch::NoFd) => self.no_fd = self.no_fd.saturating_sub(1),
            Some(Watch::Off) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn busy_poll_never_sleeps() {
        let idle = Idle::new();
        assert!(!idle.may_sleep(IdlePolicy::BusyPoll, 3_600_000 * MS));
    }

    #[test]
    fn adaptive_lingers_quiet_then_follows_a_steady_flow_and_forgets_it() {
        let q = QUIET.as_nanos() as u64;
        let mut idle = Idle::new();
        idle.frames(1000 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1000 * MS + q - 1));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 1000 * MS + q));
        // it slept; a frame 10 ms after the last: stay awake 20 ms from now on
        idle.slept();
        idle.frames(1010 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1029 * MS));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 1030 * MS));
        // frames while awake do not change the linger (the flow is served)
        idle.frames(1020 * MS);
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, 1039 * MS));
        // a sparse flow (a frame a second) brings it back to QUIET
        idle.slept();
        idle.frames(2020 * MS);
        assert!(idle.may_sleep(IdlePolicy::Adaptive, 2020 * MS + q));
        // a gap just under half the bound gives the bound, never more
        let max = LINGER_MAX.as_nanos() as u64;
        idle.slept();
        idle.frames(2020 * MS + max / 2 - 1);
        let t = 2020 * MS + max / 2 - 1;
        assert!(!idle.may_sleep(IdlePolicy::Adaptive, t + max - 3));
        assert!(idle.may_sleep(IdlePolicy::Adaptive, t + max));
    }
}
