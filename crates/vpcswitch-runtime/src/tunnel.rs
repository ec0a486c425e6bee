//! The overlay's tunnels (SPEC 10), opened with the switch: one [`Tunnel`] per worker
//! on this host's endpoint (each binds the endpoint's UDP port with `SO_REUSEPORT`, so
//! the kernel spreads tunnel packets over the workers by their outer addresses and
//! ports: one inner flow stays on one worker).
//!
//! The endpoint is fixed for the switch's life: a reload may add, move or remove
//! other hosts and ports, but not change this host's endpoint (refused, with the
//! running configuration kept: restart instead).

use std::net::SocketAddrV4;

use vpcswitch_core::Snapshot;
use vpcswitch_tunnel::{interface_mtu_of, Tunnel, TunnelConfig};

use crate::RuntimeError;

/// This switch's tunnel endpoint in `snap` (`None` without `[[hosts]]`).
pub(crate) fn endpoint(snap: &Snapshot) -> Option<SocketAddrV4> {
    snap.local_host()
        .and_then(|h| snap.host(h))
        .map(|h| h.endpoint)
}

/// One tunnel per worker, or none at all without `[[hosts]]`. The longest inner frame
/// is what the endpoint's interface MTU leaves after the encapsulation (SPEC 10.6).
pub(crate) fn open_all(
    snap: &Snapshot,
    workers: usize,
) -> Result<Vec<Option<Tunnel>>, RuntimeError> {
    let Some(host) = snap.local_host().and_then(|h| snap.host(h)) else {
        return Ok((0..workers).map(|_| None).collect());
    };
    let ep = host.endpoint;
    let err = |reason: String| RuntimeError::Tunnel {
        host: host.name.clone(),
        endpoint: ep,
        reason,
    };
    let (_, mtu) = interface_mtu_of(*ep.ip()).map_err(|e| {
        err(format!(
            "{e} (the endpoint must be an address of this host)"
        ))
    })?;
    let cfg = TunnelConfig::with_mtu(*ep.ip(), ep.port(), mtu);
    (0..workers)
        .map(|_| Tunnel::open(cfg).map(Some).map_err(|e| err(e.to_string())))
        .collect()
}
