//! Encapsulated Control Message (RFC 9301 §5.8).
//!
//! ```text
//!     |Type=8 |S|D|E|M|            Reserved                           |
//!     |                       IPv4 or IPv6 Header                     |
//!     |                  (uses RLOC or EID addresses)                 |
//!     |       Source Port = xxxx      |       Dest Port = 4342        |
//!     |           UDP Length          |        UDP Checksum           |
//!     |                      LISP Control Message                     |
//! ```
//!
//! S: LISP-SEC data follows; D: DDT-originated; E: forwarded by a Map-Server to an ETR;
//! M: sent to a co-located Map-Server. The inner message is decoded too; an ECM inside an ECM
//! is refused.

use super::cursor::Reader;
use super::error::Result;
use super::ip_udp::IpUdp;
use super::{ControlMessage, expect_type, flag, msg_type};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ecm {
    pub security: bool,
    pub ddt: bool,
    pub to_etr: bool,
    pub to_ms: bool,
    pub reserved: u32,
    pub inner_header: IpUdp,
    pub inner: Box<ControlMessage>,
}

const S: u32 = 0x0800_0000;
const D: u32 = 0x0400_0000;
const E: u32 = 0x0200_0000;
const M: u32 = 0x0100_0000;
pub const RESERVED_MASK: u32 = 0x00ff_ffff;

impl Ecm {
    /// An ECM around `inner` with every flag clear.
    pub fn new(inner_header: IpUdp, inner: ControlMessage) -> Self {
        Ecm {
            security: false,
            ddt: false,
            to_etr: false,
            to_ms: false,
            reserved: 0,
            inner_header,
            inner: Box::new(inner),
        }
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<Ecm> {
        let w = expect_type(r, msg_type::ECM)?;
        let (inner_header, mut payload) = IpUdp::parse(r)?;
        if payload.peek(1).map(|b| b[0] >> 4) == Some(msg_type::ECM) {
            return Err(payload.invalid("inner message type", "an ECM may not carry another ECM"));
        }
        let inner = ControlMessage::parse_from(&mut payload)?;
        payload.finish("inner LISP message")?;
        Ok(Ecm {
            security: w & S != 0,
            ddt: w & D != 0,
            to_etr: w & E != 0,
            to_ms: w & M != 0,
            reserved: w & RESERVED_MASK,
            inner_header,
            inner: Box::new(inner),
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let w = (u32::from(msg_type::ECM) << 28)
            | flag(self.security, S)
            | flag(self.ddt, D)
            | flag(self.to_etr, E)
            | flag(self.to_ms, M)
            | (self.reserved & RESERVED_MASK);
        out.extend_from_slice(&w.to_be_bytes());
        let mut inner = Vec::with_capacity(128);
        self.inner.emit(&mut inner)?;
        self.inner_header.emit(&inner, out)
    }
}
