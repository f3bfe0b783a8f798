//! Map-Reply (RFC 9301 §5.4).
//!
//! ```text
//!     |Type=2 |P|E|S|          Reserved               | Record Count  |
//!     |                         Nonce . . .                           |
//!     |                         . . . Nonce                           |
//!     |                   EID-records ...                             |
//! ```
//!
//! P: RLOC-probe reply; E: the ETR does echo-nonce; S: LISP-SEC data follows. lispers.net puts
//! a hop count in byte 2 of probe replies (`28 00 3f 01`); it is kept in `reserved`.

use super::cursor::{Reader, fit};
use super::error::Result;
use super::record::{EidRecord, emit_records, parse_records};
use super::{Nonce, expect_type, flag, msg_type};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapReply {
    pub probe: bool,
    pub echo_nonce: bool,
    pub security: bool,
    pub reserved: u32,
    pub nonce: Nonce,
    pub records: Vec<EidRecord>,
}

const P: u32 = 0x0800_0000;
const E: u32 = 0x0400_0000;
const S: u32 = 0x0200_0000;
pub const RESERVED_MASK: u32 = 0x01ff_ff00;

impl MapReply {
    pub fn new(nonce: Nonce, records: Vec<EidRecord>) -> Self {
        MapReply {
            probe: false,
            echo_nonce: false,
            security: false,
            reserved: 0,
            nonce,
            records,
        }
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<MapReply> {
        let w = expect_type(r, msg_type::MAP_REPLY)?;
        let nonce = r.array("Nonce")?;
        Ok(MapReply {
            probe: w & P != 0,
            echo_nonce: w & E != 0,
            security: w & S != 0,
            reserved: w & RESERVED_MASK,
            nonce,
            records: parse_records(r, w as u8)?,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let count: u8 = fit(self.records.len(), "Record Count")?;
        let w = (u32::from(msg_type::MAP_REPLY) << 28)
            | flag(self.probe, P)
            | flag(self.echo_nonce, E)
            | flag(self.security, S)
            | (self.reserved & RESERVED_MASK)
            | u32::from(count);
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        emit_records(&self.records, out)
    }
}
