//! The sans-IO data plane (RFC 9300, RFC 8061): per-packet work with no sockets and no
//! clock. [`Xtr`] is the whole of it for one node (ITR and ETR, keys, waiting packets, GSO
//! batches); the modules below are its parts: the flow of an inner packet, the RLOC it
//! takes, the encapsulation, the ETR's keys, the ICMP errors of the tunnel. The anti-replay
//! window lives with lisp-crypto in `crypto`.

pub mod encap;
pub mod flow;
pub mod gro;
pub mod icmp;
pub mod keys;
pub mod liveness;
pub mod rtr;
pub mod select;
pub mod stats;
pub mod waiting;
pub mod xtr;

pub use crate::crypto::replay::ReplayWindow;
pub use flow::FlowKey;
pub use stats::{DataStats, Drop};
pub use xtr::{
    ControlRequest, DataReport, Datagrams, Decapsulated, Encapsulated, KeyEvent, Part, PreparedKey,
    Transmit, Xtr, XtrConfig,
};
