//! vpcswitch: a userspace virtual switch for cloud VPC networking.
//!
//! This facade re-exports the workspace crates:
//! * [`wire`]: checked zero-copy frame views;
//! * [`model`]: the configuration (SPEC 1) and its validation;
//! * [`core`]: compiled tables and the pipeline (SPEC 2–6, 8);
//! * [`backend`]: the backend trait, buffers, in-memory ports;
//! * [`runtime`]: poll-mode workers;
//! * `linux` (feature `linux`): the switch on TAP, AF_PACKET and AF_XDP devices, with
//!   reloads and reopening, as `vpcswitch run` does it.
//!
//! ```
//! use vpcswitch::model::ConfigBuilder;
//! use vpcswitch::runtime::{memory_backends, Switch};
//!
//! let cfg = ConfigBuilder::new()
//!     .vpc("prod", &["10.0.0.0/16"])
//!     .subnet("web", "prod", "10.0.1.0/24")
//!     .port("web1", "web", "02:00:00:00:01:01", &["10.0.1.11"])
//!     .port("web2", "web", "02:00:00:00:01:02", &["10.0.1.12"])
//!     .vip("vip", "web", "10.0.1.100", &["web1", "web2"])
//!     .build()
//!     .expect("valid");
//! let (backends, _guests) = memory_backends(&cfg, 256);
//! let switch = Switch::start(&cfg, backends).expect("started");
//! assert_eq!(switch.snapshot().vip_owner_name("vip"), None);
//! switch.stop();
//! ```

pub use vpcswitch_backend as backend;
pub use vpcswitch_core as core;
pub use vpcswitch_model as model;
pub use vpcswitch_runtime as runtime;
pub use vpcswitch_wire as wire;

#[cfg(feature = "linux")]
pub mod linux;
#[cfg(feature = "sim")]
pub mod sim;
