//! Reloading a running switch (SPEC 8.1, 3.2): validate and compile, open new
//! backends, hand queues to the workers, swap the snapshot, wait for every worker's
//! acknowledgement (the grace period), carry learned state over, retire removed ports.

use super::*;
use crate::open::{port_names, PortCmd};

impl Switch {
    /// Validates and compiles `cfg`, opens backends for new ports (and for ports whose
    /// backend changed), hands their queues to the workers, swaps the snapshot, carries
    /// learned VIP owners over (SPEC 3.2, 8.1), then retires removed ports. On any error
    /// the running configuration stays in force. Returns the new generation.
    /// Publishes [`EventKind::Reloaded`] or [`EventKind::ReloadRefused`], and has the
    /// event thread look at the ports (a reload brings ports up and takes them away).
    pub fn reload(&self, cfg: &Config, backends: Backends) -> Result<u64, RuntimeError> {
        let r = self.reload_inner(cfg, backends);
        self.shared.events.publish(match &r {
            Ok(g) => EventKind::Reloaded { generation: *g },
            Err(e) => EventKind::ReloadRefused {
                error: e.to_string(),
            },
        });
        self.shared.events.bell.ring();
        r
    }

    fn reload_inner(&self, cfg: &Config, backends: Backends) -> Result<u64, RuntimeError> {
        let mut ctl = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.health().map_err(RuntimeError::Failed)?;
        let old = self.shared.snap.load_full();
        if cfg.switch.workers != self.workers() {
            return Err(RuntimeError::WorkersChanged {
                running: self.workers(),
                wanted: cfg.switch.workers,
            });
        }
        let mut new = Snapshot::compile(cfg, Some(&old))?;
        new.set_tunnel_frame_max(self.tunnel_frame_max);
        new.set_hosts_down(&ctl.hosts_down);
        if new.port_slots() > self.max_ports {
            return Err(RuntimeError::TooManyPorts {
                have: new.port_slots(),
                max: self.max_ports,
            });
        }
        if new.hosts().len() > self.max_hosts {
            return Err(RuntimeError::TooManyHosts {
                have: new.hosts().len(),
                max: self.max_hosts,
            });
        }
        let (was, wants) = (crate::tunnel::endpoint(&old), crate::tunnel::endpoint(&new));
        if was != wants {
            let show =
                |e: Option<std::net::SocketAddrV4>| e.map_or("none".into(), |e| e.to_string());
            return Err(RuntimeError::EndpointChanged {
                running: show(was),
                wanted: show(wants),
            });
        }
        // Which ports need a (new) backend: new ports, and ports whose spec changed.
        // (SPEC 10: only ports on this host have backends; a port that moves here from
        // another host needs one, one that moves away loses its queues below)
        // (maps by name: linear in the ports, a reload of a large network stays cheap)
        let names = port_names(&new);
        let old_names = port_names(&old);
        let was: HashMap<&str, &BackendSpec> = old.config.local_backends().collect();
        let is: HashMap<&str, &BackendSpec> = new.config.local_backends().collect();
        let needs: Vec<&str> = names
            .iter()
            .filter(|n| old.port_id(n).is_none() || was.get(n.as_str()) != is.get(n.as_str()))
            .map(|n| n.as_str())
            .collect();
        let moved_away: Vec<(PortId, String)> = old_names
            .iter()
            .filter(|n| !is.contains_key(n.as_str()))
            .filter_map(|n| Some((new.port_id(n)?, n.clone())))
            .collect();
        let mut descs = ctl.backends.clone();
        for n in &needs {
            descs.remove(*n);
        }
        let given: Vec<String> = backends.iter().map(|b| b.0.clone()).collect();
        let attach = open_backends(&new, backends, &self.mem, &mut descs)?;
        if let Some(missing) = missing_backend(&new, &descs) {
            return Err(RuntimeError::MissingBackend(missing));
        }
        // Ports that go away, or whose device is replaced.
        let mut detach: Vec<PortId> = old_names
            .iter()
            .filter(|n| new.port_id(n).is_none())
            .filter_map(|n| old.port_id(n))
            .collect();
        for n in &given {
            if old.port_id(n).is_some() {
                if let Some(id) = new.port_id(n) {
                    detach.push(id);
                }
            }
        }
        // Replaced devices: detach the old queue first (its frames in flight are
        // counted as port_down); then attach the new one.
        self.send(
            &mut ctl,
            detach
                .iter()
                .filter(|id| new.port(**id).is_some())
                .map(|&id| (id, None))
                .collect(),
        )?;
        // Ids this reload takes from a deleted port and gives to a new one (the next
        // tenant): the deleted port's queues are gone (just above), so its identity ends
        // here: its capture stops and records made from now on carry the next epoch.
        // The new port's queues are attached only after the grace period below, so no
        // frame of the new port is ever handled under the old snapshot as the deleted
        // port's (its checks, its captures), and no frame meant for the deleted port
        // reaches the new one.
        let reused = |id: PortId| {
            old.port(id)
                .is_some_and(|p| new.port(id).is_some_and(|q| q.name != p.name))
        };
        for &(id, _) in attach.iter().filter(|(id, _)| reused(*id)) {
            self.shared.observe.retire(id);
        }
        let (later, now): (Vec<_>, Vec<_>) = attach.into_iter().partition(|(id, _)| reused(*id));
        // A port new to its id starts with zero counters: ids are recycled, so it would
        // otherwise inherit the figures of whichever port last held the id (one deleted
        // by an earlier reload). Next tenants are reset just before they attach, below.
        let fresh = now
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| old.port(*id).is_none());
        self.reset_counters(&mut ctl, fresh);
        let cmds: Vec<PortCmd> = now.into_iter().map(|(id, qs)| (id, Some(qs))).collect();
        self.send(&mut ctl, cmds)?;
        let gen = new.generation;
        let new = Arc::new(new);
        self.shared.snap.store(new.clone());
        // Grace period: once every worker acknowledges, no packet is processed under
        // the old snapshot any more, so the caller may rely on the new one.
        for w in 0..self.workers() {
            self.push_cmd(&mut ctl, w, Command::Sync);
        }
        let acked = self.wait_acks(&ctl);
        // Only now has the old snapshot learned all it ever will: carry over what it
        // learned after compile (a GARP processed by a worker still in an old pass),
        // unless the new one learned a newer owner meanwhile (SPEC 3.2). Found by the
        // soak test: reconciling before the grace period lost a failover.
        new.reconcile_learned(&old);
        // The new snapshot is live: every step below runs whatever happens (commands a
        // slow worker has not acknowledged yet still reach it, in order), and the first
        // error is reported at the end, so a late acknowledgement never leaves a deleted
        // port attached or a next tenant without its queues.
        let mut late = acked.err();
        // Removed ports: after the swap no packet is sent to them any more.
        let removed = self.send(
            &mut ctl,
            detach
                .iter()
                .filter(|id| new.port(**id).is_none())
                .map(|&id| (id, None))
                .collect(),
        );
        late = late.or(removed.err());
        for id in &detach {
            if new.port(*id).is_none() {
                // its queues are detached: its identity ends (see `reused` above)
                self.shared.observe.retire(*id);
                if let Some(p) = old.port(*id) {
                    descs.remove(&p.name);
                }
            }
        }
        // Ports now on another host: no frame is sent to their queues any more.
        let away = self.send(
            &mut ctl,
            moved_away.iter().map(|(id, _)| (*id, None)).collect(),
        );
        late = late.or(away.err());
        for (_, name) in &moved_away {
            descs.remove(name);
        }
        // New ports on reused ids: every worker is on the new snapshot now.
        self.reset_counters(&mut ctl, later.iter().map(|(id, _)| *id));
        let cmds: Vec<PortCmd> = later.into_iter().map(|(id, qs)| (id, Some(qs))).collect();
        let attached = self.send(&mut ctl, cmds);
        late = late.or(attached.err());
        ctl.backends = descs;
        late.map_or(Ok(gen), Err)
    }

    /// Sends attach (Some) / detach (None) commands to every worker and waits until all
    /// have applied them.
    #[allow(clippy::type_complexity)]
    fn send(
        &self,
        ctl: &mut Control,
        cmds: Vec<(PortId, Option<Vec<Box<dyn PortQueue>>>)>,
    ) -> Result<(), RuntimeError> {
        if cmds.is_empty() {
            return Ok(());
        }
        for (id, qs) in cmds {
            match qs {
                Some(qs) => {
                    for (w, q) in qs.into_iter().enumerate() {
                        self.push_cmd(ctl, w, Command::Attach(id, q));
                    }
                }
                None => {
                    for w in 0..self.workers() {
                        self.push_cmd(ctl, w, Command::Detach(id));
                    }
                }
            }
        }
        self.wait_acks(ctl)
    }

    fn wait_acks(&self, ctl: &Control) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for (w, ws) in self.shared.workers.iter().enumerate() {
            if let Some(k) = ws.waker.get() {
                k.wake();
            }
            while ws.cmd_done.load(Ordering::Acquire) < ctl.cmd_sent[w] {
                if Instant::now() > deadline {
                    return Err(RuntimeError::WorkerStuck(w));
                }
                if let Some(k) = ws.waker.get() {
                    k.wake();
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        Ok(())
    }

    /// Queues a counter reset of each of `ids` on every worker (applied with the next
    /// commands sent, in order).
    fn reset_counters(&self, ctl: &mut Control, ids: impl Iterator<Item = PortId>) {
        for id in ids {
            for w in 0..self.workers() {
                self.push_cmd(ctl, w, Command::ResetCounters(id));
            }
        }
    }

    fn push_cmd(&self, ctl: &mut Control, w: usize, mut c: Command) {
        loop {
            match self.shared.workers[w].cmds.push(c) {
                Ok(()) => break,
                Err(back) => {
                    c = back;
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        }
        ctl.cmd_sent[w] += 1;
    }
}
