//! The sans-IO data plane (RFC 9300): per-packet work with no sockets and no clock: the flow
//! of an inner packet, the RLOC it takes, encapsulation and the ETR's decapsulation with its
//! drop reasons, and the anti-replay window lisp-crypto will use. The TUN devices, routes
//! and lisp-crypto itself come with the rest of the data-plane issue.

pub mod encap;
pub mod flow;
pub mod replay;
pub mod select;

pub use encap::{Decapsulated, DropReason, decapsulate, encapsulate};
pub use flow::FlowKey;
pub use replay::ReplayWindow;
