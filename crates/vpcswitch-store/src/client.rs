//! The store's thread: one current-thread tokio runtime running the etcd client, and
//! the plain calls and channels the rest of the switch uses (docs/architecture.md,
//! "The control plane").

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use vpcswitch_model::Config;

use crate::keys::{
    self, Change, KeyMap, ALIVE, APPLIED, NETWORK, V1, VERSION, VERSION_KEY, VIP_OWNERS,
};

/// How long one call to the store may take before it is an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Default TTL of a host's lease (SPEC 11.3).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No member of the cluster answered.
    #[error("the store at {endpoints} is unreachable: {why}")]
    Unreachable {
        /// the endpoints tried
        endpoints: String,
        /// the client's message
        why: String,
    },
    /// The store answered with an error.
    #[error("store error: {0}")]
    Etcd(String),
    /// The store holds no network yet.
    #[error(
        "the store at {0} holds no network (write one with `vpcswitch apply -f FILE --etcd URL`)"
    )]
    Empty(String),
    /// The store holds a network this version cannot read, or an invalid one.
    #[error("the store holds an invalid network (revision {revision}): {why}")]
    Invalid {
        /// the network's revision
        revision: i64,
        /// what is wrong: a layout error, or every broken rule
        why: String,
    },
    /// Written in another layout version.
    #[error("the store's layout is version {0}; this vpcswitch reads version {VERSION}")]
    Version(String),
    /// Another apply changed the network between our read and our write.
    #[error("the network changed in the store while applying (revision {seen} read, now newer): nothing written; apply again")]
    Conflict {
        /// the revision this apply read
        seen: i64,
    },
    /// The store's thread is gone.
    #[error("the store's thread stopped")]
    Stopped,
}

/// Pause between two tries of a call that failed for a transient reason.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Is `e` one that another try may not meet: the cluster electing a leader, a member
/// gone (the client then uses another)?
pub fn transient(e: &StoreError) -> bool {
    match e {
        StoreError::Etcd(m) => {
            let m = m.to_ascii_lowercase();
            [
                "unavailable",
                "leader",
                "transport",
                "connection",
                "timed out",
                "deadline",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        _ => false,
    }
}

fn etcd(e: etcd_client::Error) -> StoreError {
    StoreError::Etcd(e.to_string())
}

/// A network read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// the network (validated whole; no local host set)
    pub config: Config,
    /// its revision: the store revision of the apply that wrote it
    pub revision: i64,
    /// how many applies wrote it (1 for the first)
    pub generation: u64,
    /// when the apply that wrote it committed it, on the applier's clock (unix µs; 0
    /// when unknown: written by an older version): a switch's
    /// "store → applied here" lag is measured from it
    pub written_unix_us: u64,
}

/// What an apply did (or, dry-run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// every change, in key order
    pub changes: Vec<Change>,
    /// the network's revision before
    pub from: i64,
    /// its revision after (`from` when nothing was written)
    pub revision: i64,
    /// whether anything was written
    pub wrote: bool,
}

/// A VIP's owner as published in the store (SPEC 11.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VipOwner {
    /// the owning port
    pub port: String,
    /// the host that published it (the one the port lives on)
    pub host: String,
    /// the store revision that set it: claims are ordered by it, never by clocks
    #[serde(skip)]
    pub revision: i64,
}

/// What the watch sends to the switch (in store order).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// the network at a new revision (the first one at start), validated whole
    Network(Box<Stored>),
    /// the store holds a network that cannot be used (the running one stays)
    Invalid(StoreError),
    /// the hosts whose lease is alive, by name
    Alive(BTreeSet<String>),
    /// every VIP owner published, by VIP name (at once, then at every change)
    VipOwners(BTreeMap<String, VipOwner>),
    /// the store cannot be read or watched now (retrying); what is known stays in force
    Lost(StoreError),
    /// the watch is (again) in sync at this store revision
    Synced(i64),
}

/// Counters of the store's thread (metrics, `ctl`).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// store revision of the last event seen
    pub revision: AtomicI64,
    /// the network revision last handed over
    pub network_revision: AtomicI64,
    /// lease keep-alives answered
    pub lease_renewals: AtomicU64,
    /// leases granted (1 + re-registrations after a lost lease)
    pub lease_grants: AtomicU64,
    /// errors talking to the store (each retry counts)
    pub errors: AtomicU64,
    /// VIP owners published (SPEC 11.4)
    pub vip_publications: AtomicU64,
    /// the lease of this host's registration while one is held, 0 otherwise
    pub lease_id: AtomicI64,
    /// when the lease was last granted or renewed (unix ms), 0 never
    pub lease_renewed_unix_ms: AtomicU64,
    /// set by [`Store::leave`]: the lease is not kept alive or granted again
    pub leaving: std::sync::atomic::AtomicBool,
}

type Task = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A connection to the store. Every method is a plain blocking call (bounded by
/// [`CALL_TIMEOUT`]) or starts a background task on the store's thread that reports
/// through a std channel; nothing async leaves this type.
#[derive(Debug)]
pub struct Store {
    tasks: Option<tokio::sync::mpsc::UnboundedSender<Task>>,
    thread: Option<JoinHandle<()>>,
    endpoints: String,
    /// counters of the thread's work
    pub stats: Arc<StoreStats>,
}

impl Store {
    /// Connects to the cluster at `endpoints` (`http://IP:PORT` each) and checks that
    /// it answers; an error names the endpoints.
    pub fn connect(endpoints: &[String]) -> Result<Store, StoreError> {
        let shown = endpoints.join(",");
        let unreachable = |why: String| StoreError::Unreachable {
            endpoints: shown.clone(),
            why,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start the store's runtime: {e}")))?;
        let eps = endpoints.to_vec();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Task>();
        let thread = std::thread::Builder::new()
            .name("vpcswitch-store".into())
            .spawn(move || {
                rt.block_on(async move {
                    // HTTP/2 pings find a member that went away without closing its
                    // connections; etcd refuses pings more often than every 5 s
                    // (--grpc-keepalive-min-time) by closing the connection, so 10 s
                    let opts = ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(2))
                        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(3))
                        .with_keep_alive_while_idle(true);
                    let client =
                        match tokio::time::timeout(CALL_TIMEOUT, Client::connect(&eps, Some(opts)))
                            .await
                        {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => {
                                let _ = ready_tx.send(Err(e.to_string()));
                                return;
                            }
                            Err(_) => {
                                let _ = ready_tx.send(Err("connect timed out".into()));
                                return;
                            }
                        };
                    let _ = ready_tx.send(Ok(()));
                    while let Some(t) = rx.recv().await {
                        tokio::spawn(t(client.clone()));
                    }
                });
            })
            .map_err(|e| unreachable(format!("cannot start the store's thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => return Err(unreachable("the store's thread stopped".into())),
        }
        let s = Store {
            tasks: Some(tx),
            thread: Some(thread),
            endpoints: shown.clone(),
            stats: Arc::default(),
        };
        // reachable: one read answered by a member
        s.call(|mut c| async move { c.get(VERSION_KEY, None).await.map(|_| ()).map_err(etcd) })
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(s)
    }

    /// The endpoints, as given (comma-separated).
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    fn spawn<F, Fut>(&self, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let t: Task = Box::new(move |c| Box::pin(f(c)));
        self.tasks
            .as_ref()
            .ok_or(StoreError::Stopped)?
            .send(t)
            .map_err(|_| StoreError::Stopped)
    }

    /// Runs `f` on the store's thread and waits for its result (at most
    /// [`CALL_TIMEOUT`]). A transient error (no leader, a leader change, a member
    /// gone: [`transient`]) runs `f` again after a pause, while time is left: one
    /// member of three down changes nothing for the caller (SPEC 11.5). Every `f` here
    /// is safe to repeat: reads, and transactions guarded by a compare.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let shown = self.endpoints.clone();
        self.spawn(move |c| async move {
            let end = tokio::time::Instant::now() + CALL_TIMEOUT;
            let r = loop {
                let r = match tokio::time::timeout_at(end, f(c.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Unreachable {
                        endpoints: shown.clone(),
                        why: format!("no answer within {CALL_TIMEOUT:?}"),
                    }),
                };
                match &r {
                    Err(e) if transient(e) && tokio::time::Instant::now() + RETRY_PAUSE < end => {
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    _ => break r,
                }
            };
            let _ = tx.send(r);
        })?;
        let r = rx
            .recv_timeout(CALL_TIMEOUT + Duration::from_secs(1))
            .unwrap_or(Err(StoreError::Stopped));
        if r.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// The network in the store with its revision; [`StoreError::Empty`] when there is
    /// none, [`StoreError::Invalid`] when it cannot be read or is refused by validation.
    pub fn load(&self) -> Result<Stored, StoreError> {
        let shown = self.endpoints.clone();
        let snap = self.call(|mut c| async move { read(&mut c).await })?;
        snap.stored(&shown)
    }

    /// Compares `cfg` (valid) with the store's network and, unless `dry_run`, writes
    /// the difference in one transaction that succeeds only if the network did not
    /// change since it was read ([`StoreError::Conflict`] otherwise: nothing written).
    /// Nothing is written when nothing changed.
    pub fn apply(&self, cfg: &Config, dry_run: bool) -> Result<Applied, StoreError> {
        self.apply_from(cfg, dry_run, None)
    }

    /// [`Store::apply`] that writes only if the network's revision is still `seen` (one
    /// read before, by [`Store::load`]): the transaction compares it, so a network
    /// changed meanwhile is never overwritten ([`StoreError::Conflict`]).
    pub fn apply_expecting(&self, cfg: &Config, seen: i64) -> Result<Applied, StoreError> {
        self.apply_from(cfg, false, Some(seen))
    }

    fn apply_from(
        &self,
        cfg: &Config,
        dry_run: bool,
        expect: Option<i64>,
    ) -> Result<Applied, StoreError> {
        let new = keys::network_keys(cfg).map_err(|e| StoreError::Invalid {
            revision: 0,
            why: e.to_string(),
        })?;
        self.call(move |mut c| {
            let new = new.clone();
            async move {
                let snap = read(&mut c).await?;
                if let Some(v) = &snap.version {
                    if v != VERSION {
                        return Err(StoreError::Version(v.clone()));
                    }
                }
                let changes = keys::diff(&snap.network, &new);
                let from = expect.unwrap_or(snap.applied_revision);
                if dry_run || changes.is_empty() {
                    return Ok(Applied {
                        changes,
                        from,
                        revision: from,
                        wrote: false,
                    });
                }
                let mut ops: Vec<TxnOp> = changes
                    .iter()
                    .map(|ch| match ch {
                        Change::Add(k, v) | Change::Change(k, _, v) => {
                            TxnOp::put(k.as_str(), v.as_str(), None)
                        }
                        Change::Remove(k) => TxnOp::delete(k.as_str(), None),
                    })
                    .collect();
                let marker = AppliedMarker {
                    generation: snap.generation + 1,
                    objects: new.len(),
                    written_unix_us: unix_us_now(),
                };
                ops.push(TxnOp::put(
                    APPLIED,
                    serde_json::to_string(&marker).unwrap_or_default(),
                    None,
                ));
                let mut when = vec![Compare::mod_revision(APPLIED, CompareOp::Equal, from)];
                if snap.version.is_none() {
                    when.push(Compare::version(VERSION_KEY, CompareOp::Equal, 0));
                    ops.push(TxnOp::put(VERSION_KEY, VERSION, None));
                } else {
                    when.push(Compare::value(VERSION_KEY, CompareOp::Equal, VERSION));
                }
                let r = c
                    .txn(Txn::new().when(when).and_then(ops))
                    .await
                    .map_err(etcd)?;
                if !r.succeeded() {
                    return Err(StoreError::Conflict { seen: from });
                }
                let revision = r.header().map_or(0, |h| h.revision());
                Ok(Applied {
                    changes,
                    from,
                    revision,
                    wrote: true,
                })
            }
        })
    }

    /// Writes `value` at `key` as it is, bypassing every check (tests: a store holding
    /// what no apply would write).
    #[cfg(feature = "harness")]
    pub fn put_raw(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (k, v) = (key.to_string(), value.to_string());
        self.call(move |mut c| {
            let (k, v) = (k.clone(), v.clone());
            async move { c.put(k, v, None).await.map(|_| ()).map_err(etcd) }
        })
    }

    /// Watches the store: sends the network (at once, then at every change), the live
    /// hosts (at once, then at every change) and losses of the store to `sink`, in
    /// store order, until the store is dropped or `sink` is gone. Survives the store
    /// going away: it reconnects, reads everything again and sends what differs
    /// ([`Update::Lost`] in between; nothing known is withdrawn).
    pub fn watch(&self, sink: mpsc::Sender<Update>) -> Result<(), StoreError> {
        self.watch_waking(sink, || {})
    }

    /// [`Store::watch`], calling `wake` after each update sent (after it is in `sink`),
    /// so a thread that sleeps between updates and other work (the switch's store
    /// thread: `std::thread::park_timeout` and an unpark here) takes each at once.
    pub fn watch_waking(
        &self,
        sink: mpsc::Sender<Update>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<(), StoreError> {
        let shown = self.endpoints.clone();
        let stats = self.stats.clone();
        let wake: Waker = Arc::new(wake);
        self.spawn(move |c| watch_loop(c, shown, sink, wake, stats))
    }

    /// SPEC 11.4: publishes that `port` on `host` owns VIP `vip` (a claim learned in the
    /// datapath), in the background: the call returns at once; the outcome comes back
    /// through the watch (the store's revision orders claims). Failures are counted in
    /// [`Store::stats`] and left to the caller to retry (it republishes while the store
    /// disagrees with a claim it holds).
    pub fn publish_vip_owner(&self, vip: &str, port: &str, host: &str) -> Result<(), StoreError> {
        let key = format!("{VIP_OWNERS}{}", keys::encode(vip));
        let value = serde_json::to_string(&VipOwner {
            port: port.to_string(),
            host: host.to_string(),
            revision: 0,
        })
        .unwrap_or_default();
        let stats = self.stats.clone();
        self.spawn(move |mut c| async move {
            let put = tokio::time::timeout(CALL_TIMEOUT, c.put(key, value, None)).await;
            if !matches!(put, Ok(Ok(_))) {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.vip_publications.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    /// Registers host `name` as alive with a lease of `ttl` (at least 1 s), kept alive
    /// every third of it, re-registered when lost (the store away longer than `ttl`).
    /// Runs until the store is dropped; renewals are counted in [`Store::stats`].
    pub fn register_host(&self, name: &str, ttl: Duration) -> Result<(), StoreError> {
        let key = format!("{ALIVE}{}", keys::encode(name));
        let stats = self.stats.clone();
        let ttl = ttl.max(Duration::from_secs(1));
        self.spawn(move |c| lease_loop(c, key, ttl, stats))
    }

    /// A clean stop (SPEC 11.3): ends the registration of [`Store::register_host`] and
    /// revokes its lease, so the other switches see this host gone at once instead of
    /// after the TTL. Waits at most `within` (a stop must not hang on a lost store):
    /// when the store cannot be reached in time the lease simply expires. Nothing to do
    /// without a registration.
    pub fn leave(&self, within: Duration) -> Result<(), StoreError> {
        self.stats.leaving.store(true, Ordering::SeqCst);
        let id = self.stats.lease_id.swap(0, Ordering::SeqCst);
        if id == 0 {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        self.spawn(move |mut c| async move {
            let r = match tokio::time::timeout(within, c.lease_revoke(id)).await {
                Ok(Ok(_)) => Ok(()),
                // already expired: gone all the same
                Ok(Err(e)) if e.to_string().to_ascii_lowercase().contains("not found") => Ok(()),
                Ok(Err(e)) => Err(etcd(e)),
                Err(_) => Err(StoreError::Etcd(format!("no answer within {within:?}"))),
            };
            let _ = tx.send(r);
        })?;
        let r = rx
            .recv_timeout(within + Duration::from_millis(100))
            .unwrap_or(Err(StoreError::Stopped));
        if r.is_err() {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // ends the thread's loop; the runtime drops with every task
        self.tasks.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The value of [`APPLIED`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AppliedMarker {
    generation: u64,
    objects: usize,
    /// the applier's clock when it sent the transaction (absent before this field)
    #[serde(default)]
    written_unix_us: u64,
}

/// Now on the wall clock, in unix µs (0 before 1970).
fn unix_us_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Everything of layout v1 at one revision.
#[derive(Debug, Default)]
struct Snap {
    version: Option<String>,
    network: KeyMap,
    applied_revision: i64,
    generation: u64,
    written_unix_us: u64,
    alive: BTreeSet<String>,
    vip_owners: BTreeMap<String, VipOwner>,
    /// the store revision read at
    revision: i64,
}

impl Snap {
    fn take(&mut self, key: &str, value: &[u8], mod_revision: i64) {
        let v = String::from_utf8_lossy(value).to_string();
        if key == VERSION_KEY {
            self.version = Some(v);
        } else if key == APPLIED {
            self.applied_revision = mod_revision;
            let m = serde_json::from_str::<AppliedMarker>(&v).ok();
            self.generation = m.as_ref().map_or(0, |m| m.generation);
            self.written_unix_us = m.map_or(0, |m| m.written_unix_us);
        } else if key.starts_with(NETWORK) {
            self.network.insert(key.to_string(), v);
        } else if let Some(h) = key.strip_prefix(ALIVE) {
            self.alive
                .insert(keys::decode(h).unwrap_or_else(|| h.to_string()));
        } else if let Some(name) = key.strip_prefix(VIP_OWNERS) {
            // a value that is not an owner is ignored (never applied)
            if let Ok(mut o) = serde_json::from_str::<VipOwner>(&v) {
                o.revision = mod_revision;
                self.vip_owners
                    .insert(keys::decode(name).unwrap_or_else(|| name.to_string()), o);
            }
        }
    }

    fn forget(&mut self, key: &str) {
        if key == APPLIED {
            self.applied_revision = 0;
            self.generation = 0;
        } else if key.starts_with(NETWORK) {
            self.network.remove(key);
        } else if let Some(h) = key.strip_prefix(ALIVE) {
            self.alive
                .remove(&keys::decode(h).unwrap_or_else(|| h.to_string()));
        } else if let Some(v) = key.strip_prefix(VIP_OWNERS) {
            self.vip_owners
                .remove(&keys::decode(v).unwrap_or_else(|| v.to_string()));
        }
    }

    fn stored(&self, endpoints: &str) -> Result<Stored, StoreError> {
        if let Some(v) = &self.version {
            if v != VERSION {
                return Err(StoreError::Version(v.clone()));
            }
        }
        if self.applied_revision == 0 {
            return Err(StoreError::Empty(endpoints.to_string()));
        }
        let invalid = |why: String| StoreError::Invalid {
            revision: self.applied_revision,
            why,
        };
        let config = keys::network_from_keys(&self.network).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(|e| invalid(e.to_string()))?;
        Ok(Stored {
            config,
            revision: self.applied_revision,
            generation: self.generation,
            written_unix_us: self.written_unix_us,
        })
    }
}

/// Reads the version key and everything under [`V1`] at one revision.
async fn read(c: &mut Client) -> Result<Snap, StoreError> {
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::get(VERSION_KEY, None),
            TxnOp::get(V1, Some(GetOptions::new().with_prefix())),
        ]))
        .await
        .map_err(etcd)?;
    let mut s = Snap {
        revision: r.header().map_or(0, |h| h.revision()),
        ..Default::default()
    };
    for op in r.op_responses() {
        if let TxnOpResponse::Get(g) = op {
            for kv in g.kvs() {
                let k = String::from_utf8_lossy(kv.key()).to_string();
                s.take(&k, kv.value(), kv.mod_revision());
            }
        }
    }
    Ok(s)
}

/// Called after each update the watch sends ([`Store::watch_waking`]).
type Waker = Arc<dyn Fn() + Send + Sync>;

/// What the watch sends to the switch, and what it sent last (nothing is sent twice).
struct Outbox {
    sink: mpsc::Sender<Update>,
    wake: Waker,
    endpoints: String,
    stats: Arc<StoreStats>,
    network: Option<i64>,
    alive: Option<BTreeSet<String>>,
    owners: Option<BTreeMap<String, VipOwner>>,
}

impl Outbox {
    /// Counts an error and reports the store lost; false when the receiver is gone.
    fn lost(&self, why: String) -> bool {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.send(Update::Lost(StoreError::Unreachable {
            endpoints: self.endpoints.clone(),
            why,
        }))
    }

    fn send(&self, u: Update) -> bool {
        let sent = self.sink.send(u).is_ok();
        (self.wake)();
        sent
    }

    /// Sends what changed since the last send; false when the receiver is gone.
    fn emit(&mut self, snap: &Snap) -> bool {
        if self.network != Some(snap.applied_revision) && snap.applied_revision != 0 {
            self.network = Some(snap.applied_revision);
            let u = match snap.stored(&self.endpoints) {
                Ok(s) => {
                    self.stats
                        .network_revision
                        .store(s.revision, Ordering::Relaxed);
                    Update::Network(Box::new(s))
                }
                Err(e) => Update::Invalid(e),
            };
            if !self.send(u) {
                return false;
            }
        }
        if self.alive.as_ref() != Some(&snap.alive) {
            self.alive = Some(snap.alive.clone());
            if !self.send(Update::Alive(snap.alive.clone())) {
                return false;
            }
        }
        // an owner counts as changed when its revision did (the same claim again)
        let owners_changed = self.owners.as_ref().is_none_or(|s| {
            s.len() != snap.vip_owners.len()
                || s.iter()
                    .zip(&snap.vip_owners)
                    .any(|(a, b)| a.0 != b.0 || a.1 != b.1 || a.1.revision != b.1.revision)
        });
        if owners_changed {
            self.owners = Some(snap.vip_owners.clone());
            if !self.send(Update::VipOwners(snap.vip_owners.clone())) {
                return false;
            }
        }
        true
    }
}

async fn watch_loop(
    mut c: Client,
    endpoints: String,
    sink: mpsc::Sender<Update>,
    wake: Waker,
    stats: Arc<StoreStats>,
) {
    let mut out = Outbox {
        sink,
        wake,
        endpoints,
        stats: stats.clone(),
        network: None,
        alive: None,
        owners: None,
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut snap = match tokio::time::timeout(CALL_TIMEOUT, read(&mut c)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                if !out.lost(e.to_string()) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(_) => {
                if !out.lost("read timed out".into()) {
                    return;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        if !out.emit(&snap) || !out.send(Update::Synced(snap.revision)) {
            return;
        }
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(snap.revision + 1);
        let mut stream = match c.watch(V1, Some(opts)).await {
            Ok(s) => s,
            Err(e) => {
                if !out.lost(e.to_string()) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        loop {
            let why = match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        // compacted past our revision, or the watch was refused: read all again
                        break;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let k = String::from_utf8_lossy(kv.key()).to_string();
                        match ev.event_type() {
                            EventType::Put => snap.take(&k, kv.value(), kv.mod_revision()),
                            EventType::Delete => snap.forget(&k),
                        }
                        snap.revision = snap.revision.max(kv.mod_revision());
                    }
                    stats.revision.store(snap.revision, Ordering::Relaxed);
                    if !out.emit(&snap) {
                        return;
                    }
                    continue;
                }
                Ok(None) => "the watch ended".to_string(),
                Err(e) => e.to_string(),
            };
            if !out.lost(why) {
                return;
            }
            break;
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn lease_loop(mut c: Client, key: String, ttl: Duration, stats: Arc<StoreStats>) {
    let value = serde_json::json!({ "pid": std::process::id() }).to_string();
    let every = ttl / 3;
    loop {
        if stats.leaving.load(Ordering::SeqCst) {
            return;
        }
        let granted = async {
            let g = c.lease_grant(ttl.as_secs() as i64, None).await?;
            let id = g.id();
            c.put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(id)),
            )
            .await?;
            c.lease_keep_alive(id).await
        };
        let (mut keeper, mut answers) = match tokio::time::timeout(CALL_TIMEOUT, granted).await {
            Ok(Ok(k)) => k,
            _ => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
                continue;
            }
        };
        stats.lease_grants.fetch_add(1, Ordering::Relaxed);
        stats.lease_id.store(keeper.id(), Ordering::SeqCst);
        stats
            .lease_renewed_unix_ms
            .store(unix_us_now() / 1000, Ordering::Relaxed);
        // a leave() that came during the grant found no lease to revoke: revoke it here
        if stats.leaving.load(Ordering::SeqCst) {
            if stats.lease_id.swap(0, Ordering::SeqCst) != 0 {
                let _ = tokio::time::timeout(CALL_TIMEOUT, c.lease_revoke(keeper.id())).await;
            }
            return;
        }
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(every).await;
            if stats.leaving.load(Ordering::SeqCst) {
                return;
            }
            let renewed = async {
                keeper.keep_alive().await?;
                answers.message().await
            };
            match tokio::time::timeout(every.max(Duration::from_millis(500)), renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    stats.lease_renewals.fetch_add(1, Ordering::Relaxed);
                    stats
                        .lease_renewed_unix_ms
                        .store(unix_us_now() / 1000, Ordering::Relaxed);
                    last_ok = Instant::now();
                }
                // the lease expired (the store was away longer than the TTL): register again
                Ok(Ok(Some(_))) => {
                    stats.lease_id.store(0, Ordering::SeqCst);
                    break;
                }
                _ => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    if last_ok.elapsed() >= ttl {
                        break;
                    }
                }
            }
        }
    }
}
