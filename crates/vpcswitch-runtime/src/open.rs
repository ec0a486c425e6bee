//! Opening the backends of a snapshot's ports (in parallel, results in configuration
//! order), and the checks around it.

use super::*;
use vpcswitch_core::Location;

/// The ports (and the uplink) on this switch's host: the ones with backends here
/// (SPEC 10: every port, without `[[hosts]]`).
pub(crate) fn port_names(s: &Snapshot) -> Vec<String> {
    s.ports
        .iter()
        .flatten()
        .filter(|p| p.location == Location::Local)
        .map(|p| p.name.clone())
        .collect()
}

/// An open port's device as the control path sees it: its description, what it can
/// do, and where its kernel counters are read.
#[derive(Clone, Debug)]
pub(crate) struct PortDevice {
    pub desc: String,
    pub caps: Capabilities,
    pub stats: Option<Arc<dyn DeviceStats>>,
}

pub(crate) fn missing_backend(s: &Snapshot, descs: &HashMap<String, PortDevice>) -> Option<String> {
    port_names(s).into_iter().find(|n| !descs.contains_key(n))
}

type Opened = Vec<(PortId, Vec<Box<dyn PortQueue>>)>;
/// Attach these queues (one per worker) to a port id, or detach it (`None`).
pub(crate) type PortCmd = (PortId, Option<Vec<Box<dyn PortQueue>>>);

pub(crate) fn open_backends(
    snap: &Snapshot,
    backends: Backends,
    mem: &[WorkerMem],
    descs: &mut HashMap<String, PortDevice>,
) -> Result<Opened, RuntimeError> {
    let mut ids = Vec::with_capacity(backends.len());
    for (name, _) in &backends {
        ids.push(
            snap.port_id(name)
                .ok_or_else(|| RuntimeError::NoSuchPort(name.clone()))?,
        );
    }
    // Opening a device waits on the kernel (an XDP program's attach, socket binds, RCU
    // grace periods, ring allocation: 40 ms per AF_XDP port here): ports open on up to
    // OPENERS threads at once, so a start or restart costs about the slowest port's
    // time rather than the sum. Results are taken in configuration order.
    const OPENERS: usize = 16;
    let names: Vec<String> = backends.iter().map(|(n, _)| n.clone()).collect();
    let per = backends.len().div_ceil(OPENERS).max(1);
    type Chunk = Vec<(String, Box<dyn Backend>)>;
    type Done = Vec<(
        String,
        Box<dyn Backend>,
        Result<Vec<Box<dyn PortQueue>>, BackendError>,
    )>;
    let mut slots: Vec<Mutex<Option<Chunk>>> = Vec::new();
    let mut it = backends.into_iter().peekable();
    while it.peek().is_some() {
        slots.push(Mutex::new(Some(it.by_ref().take(per).collect())));
    }
    let take = |i: usize| -> Chunk {
        slots
            .get(i)
            .and_then(|m| m.lock().ok().and_then(|mut g| g.take()))
            .unwrap_or_default()
    };
    let open = |chunk: Chunk| -> Done {
        chunk
            .into_iter()
            .map(|(name, mut b)| {
                let r = b.queues(mem);
                (name, b, r)
            })
            .collect()
    };
    let done: Vec<Option<Done>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..slots.len())
            .map(|i| {
                std::thread::Builder::new().spawn_scoped(s, {
                    let (take, open) = (&take, &open);
                    move || open(take(i))
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| match h {
                Ok(h) => h.join().ok(),
                // no thread: the chunk is opened here
                Err(_) => Some(open(take(i))),
            })
            .collect()
    });
    let mut out = Vec::with_capacity(ids.len());
    for (k, d) in done.into_iter().enumerate() {
        let Some(d) = d else {
            let port = names.get(k * per).cloned().unwrap_or_default();
            return Err(RuntimeError::Backend {
                port,
                source: BackendError::Panicked,
            });
        };
        for ((name, b, r), id) in d.into_iter().zip(ids.iter().skip(k * per)) {
            let qs = r.map_err(|source| RuntimeError::Backend {
                port: name.clone(),
                source,
            })?;
            let dev = PortDevice {
                desc: b.describe(),
                caps: b.capabilities(),
                stats: b.device_stats().map(Arc::from),
            };
            descs.insert(name, dev);
            out.push((*id, qs));
        }
    }
    Ok(out)
}
