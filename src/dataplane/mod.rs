//! The sans-IO data plane (RFC 9300): per-packet work with no sockets and no clock: the flow
//! of an inner packet, the RLOC it takes, encapsulation and the ETR's decapsulation with its
//! drop reasons. The anti-replay window lives with lisp-crypto in `crypto`.

pub mod encap;
pub mod flow;
pub mod icmp;
pub mod keys;
pub mod select;
pub mod stats;
pub mod waiting;

pub use crate::crypto::replay::ReplayWindow;
pub use encap::{Decapsulated, DropReason, decapsulate, decapsulate_inner, encapsulate};
pub use flow::FlowKey;
pub use stats::{DataStats, Drop};
