//! The engine's one outbox: what its components (registrar, Map-Server, Map-Resolver,
//! prober) want sent, and the lisp-crypto key events for the data plane.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

/// A datagram the engine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Our address to send from (an RLOC); `None` lets the node choose.
    pub src: Option<IpAddr>,
    /// Our port to send from: 4342 for control messages, 4341 for LISP-data encapsulation.
    pub src_port: u16,
    pub dst: SocketAddr,
    /// IP TTL / hop limit (set for underlay multicast).
    pub ttl: Option<u8>,
    pub payload: Vec<u8>,
}

/// The one outbox every component of the engine writes into: datagrams to send, and
/// lisp-crypto key events for the data plane.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Transmit>,
    pub keys: VecDeque<crate::dataplane::KeyEvent>,
}

impl Outbox {
    pub fn push(&mut self, t: Transmit) {
        self.transmits.push_back(t);
    }

    /// A control message from our port 4342 (from our address `src`, or one the node
    /// chooses) to `dst`, with the default TTL.
    pub fn control(&mut self, src: Option<IpAddr>, dst: SocketAddr, payload: Vec<u8>) {
        self.push(Transmit {
            src,
            src_port: crate::wire::CONTROL_PORT,
            dst,
            ttl: None,
            payload,
        });
    }
}
