//! The control plane of a fleet on etcd (SPEC 11): the desired network, the hosts
//! alive and (later) the VIP owners, kept in a replicated store every switch watches.
//!
//! # Contract
//! * [`keys`]: the documented, versioned key layout (docs/store.md) and the diff of two
//!   networks. A network is one key per object; values are the model's own types.
//! * [`Store`]: a connection. [`Store::apply`] writes a valid network in one
//!   transaction that compares the revision it read (two appliers never interleave:
//!   the second gets [`StoreError::Conflict`] and writes nothing), or with `dry_run`
//!   returns the diff only. [`Store::load`] reads the network with its revision,
//!   validated whole. [`Store::watch`] sends every change as an [`Update`] through a
//!   std channel. [`Store::register_host`] keeps the host's lease alive.
//!
//! # The async boundary
//! etcd-client is async (tokio, tonic). All of it runs on one thread of this crate, a
//! current-thread tokio runtime; callers only make plain blocking calls (each bounded
//! by [`CALL_TIMEOUT`]) and read std `mpsc` channels. The datapath never sees any of
//! it: the binary turns each [`Update`] into a reload through the same path as SIGHUP.
//!
//! # Security intent
//! The store is trusted as the file is: what it holds is validated whole, exactly as a
//! file, before it reaches a switch; an invalid network in the store is refused and the
//! running one stays. Object names are percent-encoded into one key segment, so no
//! name can address another object's key.

pub mod keys;

mod client;
#[cfg(feature = "harness")]
pub mod harness;

pub use client::{
    transient, Applied, Store, StoreError, StoreStats, Stored, Update, VipOwner, CALL_TIMEOUT,
    DEFAULT_LEASE_TTL,
};
pub use keys::Change;
