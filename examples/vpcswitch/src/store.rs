//! `run --etcd` (SPEC 11.2, 11.3, 11.5): the thread that turns what the store's watch
//! reports into reloads through the SIGHUP path ([`Running::apply_stored`]) and host
//! liveness into ports down ([`Running::set_alive`]). It never touches a worker: the
//! workers see each change with the next snapshot swap.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use vpcswitch::linux::one_line;
use vpcswitch_store::Update;

use crate::Running;

/// How often the thread looks whether the switch is stopping.
const POLL: Duration = Duration::from_millis(200);

/// Follows the store's updates until the switch stops or the store's thread ends.
pub fn follow(running: &Running, rx: &Receiver<Update>) {
    let Some(link) = &running.store else {
        return;
    };
    loop {
        let u = match rx.recv_timeout(POLL) {
            Ok(u) => u,
            Err(RecvTimeoutError::Timeout) => {
                if running.stopping.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if running.stopping.load(Ordering::SeqCst) {
            return;
        }
        match u {
            Update::Network(s) => {
                let running_rev = link
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .revision;
                // the revision the switch started with (or applied) is not news
                if s.revision != running_rev {
                    tracing::info!(
                        revision = s.revision,
                        generation = s.generation,
                        "the store holds a new network"
                    );
                    let _ = running.apply_stored(&s);
                }
            }
            Update::Invalid(e) => {
                running.reload_failures.fetch_add(1, Ordering::Relaxed);
                let e = e.to_string();
                tracing::error!(error = %one_line(&e), "the store's network is refused; the running one stays");
                *running.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            }
            Update::Alive(alive) => {
                running.set_alive(&alive);
            }
            Update::Lost(e) => {
                let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.lost.is_none() {
                    tracing::warn!(error = %one_line(&e.to_string()), "store lost; forwarding goes on with what is known (retrying)");
                }
                st.lost = Some(e.to_string());
            }
            Update::Synced(rev) => {
                let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.lost.take().is_some() {
                    tracing::info!(revision = rev, "store back: in sync again");
                }
                st.last_sync = Some(SystemTime::now());
                st.synced_revision = rev;
            }
        }
    }
}
