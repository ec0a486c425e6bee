//! `run --etcd` (SPEC 11.2, 11.3, 11.5): the thread that turns what the store's watch
//! reports into reloads through the SIGHUP path ([`Running::apply_stored`]) and host
//! liveness into ports down ([`Running::set_alive`]). It never touches a worker: the
//! workers see each change with the next snapshot swap.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, SystemTime};

use vpcswitch::core::Doorbell;
use vpcswitch::linux::one_line;
use vpcswitch_store::Update;

use crate::running::{owner_name, StoreLink};
use crate::Running;

/// SPEC 11.4: the store's VIP owners, in store order. Each VIP whose owner the store
/// changed is set to it here ([`vpcswitch::core::Snapshot::set_vip_owner`], an atomic
/// store, no reload) unless this switch's datapath learned an owner since it last took
/// the store's in (a claim newer than the store's: it stays, and is published by its
/// host). A switch that starts (or restarts) thus gets the owners others learned.
fn take_vip_owners(
    running: &Running,
    link: &StoreLink,
    owners: std::collections::BTreeMap<String, vpcswitch_store::VipOwner>,
) {
    let snap = running.switch.snapshot();
    let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
    for (i, v) in snap.vips.iter().enumerate() {
        let cell = snap.vip_cell(i as u32);
        let Some(o) = owners.get(&v.name) else {
            continue;
        };
        let seen = st.vip_owners.get(&v.name).map(|x| x.revision);
        if seen == Some(o.revision) {
            continue;
        }
        st.vip_seen.insert(
            v.name.clone(),
            (o.revision, crate::running::unix_us(SystemTime::now())),
        );
        let cur = owner_name(&snap, cell);
        let moved_here = st
            .vip_marks
            .get(&v.name)
            .is_some_and(|&m| m != cell.moves());
        if cur.as_deref() != Some(o.port.as_str()) && !moved_here {
            if snap.set_vip_owner(&v.name, &o.port, running.switch.now_ns()) {
                tracing::info!(vip = %v.name, owner = %o.port, host = %o.host, revision = o.revision, "vip owner taken from the store");
            } else {
                tracing::warn!(vip = %v.name, owner = %o.port, revision = o.revision, "the store's vip owner is no port bound to the vip here; ignored");
            }
        }
        st.vip_marks.insert(v.name.clone(), cell.moves());
    }
    st.vip_owners = owners;
}

/// SPEC 11.4: publishes every VIP whose owner here is a port on this host (a claim
/// learned in this host's datapath) and that the store does not hold yet; again after
/// [`REPUBLISH`] while the store disagrees. Nothing while the store is lost.
fn publish_claims(running: &Running, link: &StoreLink) {
    let snap = running.switch.snapshot();
    let Some(host) = snap.local_host().and_then(|h| snap.host(h)) else {
        return;
    };
    let mut st = link.state.lock().unwrap_or_else(|e| e.into_inner());
    if st.lost.is_some() {
        return;
    }
    for (i, v) in snap.vips.iter().enumerate() {
        let cell = snap.vip_cell(i as u32);
        let Some(owner) = cell.owner() else { continue };
        if snap.location(owner) != Some(vpcswitch::core::Location::Local) {
            continue;
        }
        let Some(port) = snap.port(owner).map(|p| p.name.clone()) else {
            continue;
        };
        if st.vip_owners.get(&v.name).is_some_and(|o| o.port == port) {
            continue;
        }
        // this very claim (same port, same move) was sent lately: wait for its echo
        let moves = cell.moves();
        if st
            .published
            .get(&v.name)
            .is_some_and(|(p, m, t)| *p == port && *m == moves && t.elapsed() < REPUBLISH)
        {
            continue;
        }
        if link
            .store
            .publish_vip_owner(&v.name, &port, &host.name)
            .is_ok()
        {
            tracing::debug!(vip = %v.name, owner = %port, "vip owner published");
            // when the datapath learned it, on the wall clock
            let ago_us = running.switch.now_ns().saturating_sub(cell.last_move_ns()) / 1000;
            let at = crate::running::unix_us(SystemTime::now()).saturating_sub(ago_us);
            st.claims.insert(v.name.clone(), (port.clone(), at));
            st.published
                .insert(v.name.clone(), (port, moves, std::time::Instant::now()));
        }
    }
}

/// The longest the thread sleeps: how long a stop may wait for it, and how often a
/// claim the store has not echoed is looked at again ([`REPUBLISH`]). Updates and VIP
/// moves wake it at once.
const NAP: Duration = Duration::from_millis(50);
/// How often hosts without a lease are checked for having fallen silent.
const SILENCE_POLL: Duration = Duration::from_millis(250);
/// A publication the store has not echoed within this long is sent again.
const REPUBLISH: Duration = Duration::from_secs(1);
/// How long a clean stop waits for the store to revoke this host's lease.
pub const LEAVE_WITHIN: Duration = Duration::from_secs(1);

/// Makes `running` follow `store` (`run --etcd`): watches it from `stored` (the
/// network `running` started on) and registers the local host, if any, with a lease
/// of `ttl`. Returns the switch with its [`StoreLink`] and the watch's updates, for
/// [`follow`] ([`spawn_follow`]). Used by `run` and by the scale simulation.
pub fn attach(
    running: Running,
    store: vpcswitch_store::Store,
    stored: &vpcswitch_store::Stored,
    ttl: Duration,
) -> Result<(Running, Receiver<Update>), vpcswitch_store::StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let wake = std::sync::Arc::new(Doorbell::default());
    store.watch_waking(tx, {
        let wake = wake.clone();
        move || wake.ring()
    })?;
    let local = running
        .switch
        .snapshot()
        .config
        .local_host()
        .map(String::from);
    if let Some(h) = local {
        store.register_host(&h, ttl)?;
    }
    Ok((running.with_store(store, stored, ttl, wake), rx))
}

/// Starts the thread that runs [`follow`] for `running` until it stops.
pub fn spawn_follow(
    running: &std::sync::Arc<Running>,
    rx: Receiver<Update>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let running = running.clone();
    std::thread::Builder::new()
        .name("store-follow".into())
        .spawn(move || follow(&running, &rx))
}

/// A clean stop (`run`'s stop path): wakes the store thread so it ends now, and
/// revokes this host's lease ([`vpcswitch_store::Store::leave`], at most
/// [`LEAVE_WITHIN`]) so the other switches see it gone at once (SPEC 11.3).
pub fn leave(running: &Running) {
    let Some(link) = &running.store else {
        return;
    };
    link.wake.ring();
    match link.store.leave(LEAVE_WITHIN) {
        Ok(()) => tracing::info!("left the store: this host's lease is revoked"),
        Err(e) => {
            tracing::warn!(error = %one_line(&e.to_string()), "could not revoke this host's lease at stop; it expires after its TTL")
        }
    }
}

/// Of the updates waiting, the ones to act on, in order: a network revision (or a
/// refused one) followed by a later one is skipped, the later one is the whole
/// network (so revisions that queued up behind a slow reload cost one reload).
fn coalesce(mut batch: Vec<Update>) -> Vec<Update> {
    let is_network = |u: &Update| matches!(u, Update::Network(_) | Update::Invalid(_));
    if let Some(last) = batch.iter().rposition(is_network) {
        let mut i = 0;
        batch.retain(|u| {
            i += 1;
            i - 1 == last || !is_network(u)
        });
    }
    batch
}

/// Follows the store's updates until the switch stops or the store's thread ends.
/// Sleeps between them (at most [`NAP`]); woken by the watch ([`StoreLink::wake`]) and
/// by a VIP moving in the datapath (the switch's [`Doorbell`]), whose claim it then
/// publishes at once (SPEC 11.4).
pub fn follow(running: &Running, rx: &Receiver<Update>) {
    let Some(link) = &running.store else {
        return;
    };
    // one listener per bell: this thread
    link.wake.listen();
    running.switch.snapshot().vip_bell().listen();
    let mut last_silence_check = std::time::Instant::now();
    loop {
        if running.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut batch = Vec::new();
        let gone = loop {
            match rx.try_recv() {
                Ok(u) => batch.push(u),
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        for u in coalesce(batch) {
            if running.stopping.load(Ordering::SeqCst) {
                return;
            }
            take(running, link, u);
        }
        if gone {
            return;
        }
        publish_claims(running, link);
        // a host whose lease is gone but was still heard on the underlay goes down
        // once it falls silent (SPEC 11.5: not for being cut from the store alone)
        if last_silence_check.elapsed() >= SILENCE_POLL {
            last_silence_check = std::time::Instant::now();
            running.update_hosts_down();
        }
        std::thread::park_timeout(NAP);
    }
}

/// Acts on one update of the watch.
fn take(running: &Running, link: &StoreLink, u: Update) {
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
            let e = e.to_string();
            tracing::error!(error = %one_line(&e), "the store's network is refused; the running one stays");
            running.refused(e);
        }
        Update::Alive(alive) => {
            running.set_alive(&alive);
        }
        Update::VipOwners(owners) => take_vip_owners(running, link, owners),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Update]) -> Vec<String> {
        v.iter()
            .map(|u| match u {
                Update::Network(s) => format!("net{}", s.revision),
                Update::Invalid(_) => "invalid".into(),
                Update::Alive(_) => "alive".into(),
                Update::VipOwners(_) => "owners".into(),
                Update::Lost(_) => "lost".into(),
                Update::Synced(r) => format!("synced{r}"),
            })
            .collect()
    }

    fn net(revision: i64) -> Update {
        Update::Network(Box::new(vpcswitch_store::Stored {
            config: vpcswitch::model::Config::default(),
            revision,
            generation: 1,
            written_unix_us: 0,
        }))
    }

    #[test]
    fn queued_revisions_cost_one_reload_and_other_updates_keep_their_order() {
        let batch = vec![
            net(5),
            Update::Alive(Default::default()),
            Update::Invalid(vpcswitch_store::StoreError::Stopped),
            Update::VipOwners(Default::default()),
            net(7),
            Update::Synced(7),
        ];
        assert_eq!(
            names(&coalesce(batch)),
            ["alive", "owners", "net7", "synced7"]
        );
        // a refused revision after the last good one is what stands
        let batch = vec![
            net(5),
            Update::Invalid(vpcswitch_store::StoreError::Stopped),
        ];
        assert_eq!(names(&coalesce(batch)), ["invalid"]);
        assert_eq!(names(&coalesce(vec![net(3)])), ["net3"]);
        assert!(coalesce(Vec::new()).is_empty());
    }
}
