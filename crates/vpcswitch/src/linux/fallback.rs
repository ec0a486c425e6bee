//! An `af_xdp` port with its AF_PACKET fallback.

use vpcswitch_backend::{Backend, BackendError, PortQueue, WorkerMem};
use vpcswitch_packet::PacketBackend;
use vpcswitch_xdp::{XdpBackend, XdpMode};

/// An `af_xdp` port: AF_XDP, and for `mode = "auto"` AF_PACKET on the same interface
/// when AF_XDP cannot be set up (old kernel, no BPF permission, an XDP program already
/// there), with the reason logged; other modes fail with the reason.
#[derive(Debug)]
pub(crate) struct XdpOrPacket {
    port: String,
    xdp: XdpBackend,
    fallback: Option<PacketBackend>,
    on_fallback: bool,
}

impl XdpOrPacket {
    pub(crate) fn new(port: &str, ifname: &str, queue: u32, mode: XdpMode) -> XdpOrPacket {
        XdpOrPacket {
            port: port.to_string(),
            xdp: XdpBackend::new(ifname, queue, mode),
            fallback: (mode == XdpMode::Auto).then(|| PacketBackend::new(ifname)),
            on_fallback: false,
        }
    }
}

impl Backend for XdpOrPacket {
    fn describe(&self) -> String {
        match &self.fallback {
            Some(p) if self.on_fallback => p.describe(),
            _ => self.xdp.describe(),
        }
    }

    fn queues(&mut self, workers: &[WorkerMem]) -> Result<Vec<Box<dyn PortQueue>>, BackendError> {
        match self.xdp.queues(workers) {
            Ok(q) => Ok(q),
            Err(e) => match &mut self.fallback {
                Some(p) => {
                    self.on_fallback = true;
                    tracing::warn!(
                        port = %self.port,
                        reason = %e,
                        "af_xdp: AF_XDP could not be set up; mode \"auto\" falls back to AF_PACKET on the same interface"
                    );
                    p.queues(workers)
                }
                None => Err(e),
            },
        }
    }

    fn capabilities(&self) -> vpcswitch_backend::Capabilities {
        match &self.fallback {
            Some(p) if self.on_fallback => p.capabilities(),
            _ => self.xdp.capabilities(),
        }
    }

    fn device_stats(&self) -> Option<Box<dyn vpcswitch_backend::DeviceStats>> {
        match &self.fallback {
            Some(p) if self.on_fallback => p.device_stats(),
            _ => self.xdp.device_stats(),
        }
    }
}
