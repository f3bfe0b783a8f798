//! Map-Request (RFC 9301 §5.2; I bit and trailer: RFC 9437 §5).
//!
//! ```text
//!     |Type=1 |A|M|P|S|p|s|m|I|Reserved |L|D|   IRC   | Record Count  |
//!     |                         Nonce . . .                           |
//!     |                         . . . Nonce                           |
//!     |         Source-EID-AFI        |   Source EID Address  ...     |
//!     |         ITR-RLOC-AFI 1        |    ITR-RLOC Address 1  ...    |
//!     |                              ...                              |
//!     |         ITR-RLOC-AFI n        |    ITR-RLOC Address n  ...    |
//!   / |N|   Reserved  | EID mask-len  |        EID-prefix-AFI         |
//! Rec +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   \ |                       EID-prefix  ...                         |
//!     |                   Map-Reply Record  ... (M=1)                 |
//!     |                   xTR-ID (128) + Site-ID (64) (I=1)           |
//! ```
//!
//! IRC is the number of ITR-RLOCs minus one. lispers.net puts a Security Key LCAF (RFC 8061
//! §6) in place of the first ITR-RLOC, with the RLOC inside it.

use super::address::Address;
use super::cursor::{Reader, fit};
use super::error::{Result, WireError};
use super::record::{EidRecord, XtrTrailer};
use super::{Nonce, expect_type, flag, msg_type};

/// A Map-Request, RLOC-probes and SMRs included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapRequest {
    /// A: the request comes from the site (not through the mapping system).
    pub authoritative: bool,
    /// P: RLOC-probe.
    pub probe: bool,
    /// S: Solicit-Map-Request.
    pub smr: bool,
    /// p: sent by a PITR.
    pub pitr: bool,
    /// s: SMR-invoked.
    pub smr_invoked: bool,
    /// m: sent by a mobile node.
    pub mobile: bool,
    /// L: sent by a local xTR.
    pub local_xtr: bool,
    /// D: no Map-Reply wanted (with SMR).
    pub dont_reply: bool,
    /// The bits of the first word no flag names, as on the wire.
    pub reserved: u32,
    pub nonce: Nonce,
    pub source_eid: Address,
    /// At least one and at most 32.
    pub itr_rlocs: Vec<Address>,
    pub records: Vec<RequestRecord>,
    /// M bit: the requester's own mapping.
    pub map_reply: Option<EidRecord>,
    /// I bit.
    pub trailer: Option<XtrTrailer>,
}

/// One requested EID-prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestRecord {
    /// The reserved byte; 0x80 is the RFC 9437 N (notify / subscribe) bit.
    pub reserved: u8,
    pub mask_len: u8,
    pub eid: Address,
}

impl RequestRecord {
    pub fn eid_text(&self) -> String {
        super::address::eid_text(&self.eid, self.mask_len)
    }
}

const A: u32 = 0x0800_0000;
const M: u32 = 0x0400_0000;
const P: u32 = 0x0200_0000;
const S: u32 = 0x0100_0000;
const LP: u32 = 0x0080_0000;
const LS: u32 = 0x0040_0000;
const LM: u32 = 0x0020_0000;
const I: u32 = 0x0010_0000;
const L: u32 = 0x0000_4000;
const D: u32 = 0x0000_2000;
/// Bits of the first word not covered by type, flags, IRC or Record Count.
pub const RESERVED_MASK: u32 = 0x000f_8000;

impl MapRequest {
    /// A Map-Request for one EID-prefix with every flag clear.
    pub fn new(
        nonce: Nonce,
        source_eid: Address,
        itr_rloc: Address,
        eid: Address,
        mask_len: u8,
    ) -> Self {
        MapRequest {
            authoritative: false,
            probe: false,
            smr: false,
            pitr: false,
            smr_invoked: false,
            mobile: false,
            local_xtr: false,
            dont_reply: false,
            reserved: 0,
            nonce,
            source_eid,
            itr_rlocs: vec![itr_rloc],
            records: vec![RequestRecord {
                reserved: 0,
                mask_len,
                eid,
            }],
            map_reply: None,
            trailer: None,
        }
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<MapRequest> {
        let w = expect_type(r, msg_type::MAP_REQUEST)?;
        let irc = ((w >> 8) & 0x1f) as usize + 1;
        let count = w as u8;
        let nonce = r.array("Nonce")?;
        let source_eid = Address::parse(r, 0)?;
        let mut itr_rlocs = Vec::with_capacity(irc);
        for _ in 0..irc {
            itr_rlocs.push(Address::parse(r, 0)?);
        }
        let mut records = Vec::with_capacity((count as usize).min(r.remaining() / 4));
        for _ in 0..count {
            let reserved = r.u8("request record reserved")?;
            let mask_len = r.u8("request record EID mask-len")?;
            records.push(RequestRecord {
                reserved,
                mask_len,
                eid: Address::parse(r, 0)?,
            });
        }
        let map_reply = if w & M != 0 {
            Some(EidRecord::parse(r)?)
        } else {
            None
        };
        let trailer = if w & I != 0 {
            Some(XtrTrailer::parse(r)?)
        } else {
            None
        };
        Ok(MapRequest {
            authoritative: w & A != 0,
            probe: w & P != 0,
            smr: w & S != 0,
            pitr: w & LP != 0,
            smr_invoked: w & LS != 0,
            mobile: w & LM != 0,
            local_xtr: w & L != 0,
            dont_reply: w & D != 0,
            reserved: w & RESERVED_MASK,
            nonce,
            source_eid,
            itr_rlocs,
            records,
            map_reply,
            trailer,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if self.itr_rlocs.is_empty() || self.itr_rlocs.len() > 32 {
            return Err(WireError::emit("ITR-RLOC count", "must be 1 to 32"));
        }
        let count: u8 = fit(self.records.len(), "Record Count")?;
        let w = (u32::from(msg_type::MAP_REQUEST) << 28)
            | flag(self.authoritative, A)
            | flag(self.map_reply.is_some(), M)
            | flag(self.probe, P)
            | flag(self.smr, S)
            | flag(self.pitr, LP)
            | flag(self.smr_invoked, LS)
            | flag(self.mobile, LM)
            | flag(self.trailer.is_some(), I)
            | flag(self.local_xtr, L)
            | flag(self.dont_reply, D)
            | (self.reserved & RESERVED_MASK)
            | (((self.itr_rlocs.len() - 1) as u32) << 8)
            | u32::from(count);
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        self.source_eid.emit(out)?;
        self.itr_rlocs.iter().try_for_each(|a| a.emit(out))?;
        for rec in &self.records {
            out.extend_from_slice(&[rec.reserved, rec.mask_len]);
            rec.eid.emit(out)?;
        }
        if let Some(m) = &self.map_reply {
            m.emit(out)?;
        }
        if let Some(t) = &self.trailer {
            t.emit(out);
        }
        Ok(())
    }

    /// The ITR-RLOC a reply goes to: the first IP address among the ITR-RLOCs, looking inside
    /// a Security Key or AFI List LCAF as lispers.net sends them.
    pub fn reply_rloc(&self) -> Option<std::net::IpAddr> {
        self.itr_rlocs.iter().find_map(Address::ip)
    }
}
