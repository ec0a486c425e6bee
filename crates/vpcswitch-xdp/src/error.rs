//! Why an AF_XDP port could not be opened: one variant per operation.

use std::io;

use vpcswitch_backend::BackendError;

/// Why an AF_XDP port could not be opened: one variant per operation that can fail,
/// each naming the interface (and queue) and carrying the OS error, with the fix when
/// there is a usual one.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// No interface of that name (in the switch's network namespace).
    #[error("find interface {ifname} (AF_XDP attaches to an existing interface): {source}")]
    FindInterface {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Its receive queues could not be counted (sysfs).
    #[error("count the queues of {ifname}: {source}")]
    CountQueues {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Fewer receive queues from `first` up than there are workers.
    #[error("af_xdp on {ifname}: {workers} worker(s) need at least {workers} receive queues from queue {first} but it has {have} in all (a veth: ip link add ... numrxqueues {workers} numtxqueues {workers} type veth ...; a NIC: ethtool -L {ifname} combined {workers})")]
    TooFewQueues {
        /// the interface
        ifname: String,
        /// workers, one socket each at least
        workers: u32,
        /// the port's first queue
        first: u32,
        /// the interface's receive queues
        have: u32,
    },
    /// The queue → socket map could not be made.
    #[error("create the XSKMAP for {ifname}: {source}")]
    CreateMap {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// The kernel refused the program (`verifier`: its log, on one line).
    #[error("load the XDP program{}; verifier: {verifier}: {source}", needs_bpf(.source))]
    LoadProgram {
        /// the verifier's log
        verifier: String,
        /// the OS error
        source: io::Error,
    },
    /// The interface's MTU could not be read (sysfs).
    #[error("read the MTU of {ifname}: {source}")]
    ReadMtu {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Attaching the program in native (driver) mode failed (modes `zerocopy`, `copy`).
    #[error("attach XDP in native (driver) mode to {ifname}{}; mode \"skb\" works on any interface: {source}", busy(.ifname, .source))]
    AttachNative {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// Attaching the program in generic (skb) mode failed.
    #[error("attach XDP in generic (skb) mode to {ifname}{}: {source}", busy(.ifname, .source))]
    AttachGeneric {
        /// the interface
        ifname: String,
        /// the OS error
        source: io::Error,
    },
    /// A worker's buffers are not in one memory region (a heap pool).
    #[error("af_xdp on {ifname}: worker {worker}'s buffer pool is not in one memory region, so it cannot be a UMEM")]
    NotUmem {
        /// the interface
        ifname: String,
        /// the worker
        worker: usize,
    },
    /// The socket of `queue` could not be made, or its rings set up.
    #[error("open the AF_XDP socket for {ifname} queue {queue}: {source}")]
    Socket {
        /// the interface
        ifname: String,
        /// its queue
        queue: u32,
        /// the OS error
        source: io::Error,
    },
    /// The worker's buffer pool could not be registered as the socket's UMEM.
    #[error("open the AF_XDP socket for {ifname} queue {queue}: register the UMEM: {source}{}", pin_hint(.source))]
    RegisterUmem {
        /// the interface
        ifname: String,
        /// its queue
        queue: u32,
        /// the OS error
        source: io::Error,
    },
    /// Binding the socket to its queue in zero-copy mode failed (mode `zerocopy`).
    #[error("open the AF_XDP socket for {ifname} queue {queue}: bind in zero-copy mode: {source} (the driver has no AF_XDP zero-copy, a veth never has; use mode \"copy\" or \"auto\")")]
    BindZeroCopy {
        /// the interface
        ifname: String,
        /// its queue
        queue: u32,
        /// the OS error
        source: io::Error,
    },
    /// Binding the socket to its queue (copy mode) failed.
    #[error("open the AF_XDP socket for {ifname} queue {queue}: {source}")]
    Bind {
        /// the interface
        ifname: String,
        /// its queue
        queue: u32,
        /// the OS error
        source: io::Error,
    },
    /// The socket could not be put in the queue → socket map.
    #[error("add the {ifname} queue {queue} socket to the XSKMAP: {source}")]
    AddToMap {
        /// the interface
        ifname: String,
        /// its queue
        queue: u32,
        /// the OS error
        source: io::Error,
    },
}

impl From<XdpError> for BackendError {
    fn from(e: XdpError) -> BackendError {
        BackendError::device(e)
    }
}

fn needs_bpf(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(libc::EPERM) {
        " (needs CAP_BPF and CAP_NET_ADMIN)"
    } else {
        ""
    }
}

fn busy(ifname: &str, e: &io::Error) -> String {
    if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) {
        format!(
            " (another XDP program is attached: `ip link set dev {ifname} xdp off` if it is stale)"
        )
    } else {
        String::new()
    }
}

fn pin_hint(e: &io::Error) -> &'static str {
    if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EPERM)) {
        " (pinning the worker's buffer pool needs CAP_IPC_LOCK or a higher RLIMIT_MEMLOCK)"
    } else {
        ""
    }
}
