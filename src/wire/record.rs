//! EID-records, RLOC-records and the xTR-ID / Site-ID trailer (RFC 9301 §5.4, §5.6).
//!
//! ```text
//!     |                          Record TTL                           |
//!     | Locator Count | EID mask-len  | ACT |A|      Reserved         |
//!     | Rsvd  |  Map-Version Number   |            EID-AFI            |
//!     |                          EID-prefix ...                       |
//!  L  |   Priority    |    Weight     |  M Priority   |   M Weight    |
//!  o  |        Unused Flags     |L|p|R|           Loc-AFI             |
//!  c  |                            Locator ...                        |
//! ```
//!
//! The reserved bits are kept as they came so a record re-emits byte for byte: lispers.net uses
//! byte 6 bit 0x08 (DDT incomplete, the Map-Referral I bit of RFC 8111) and the top four bits of
//! bytes 8-9 (a signature count; the Map-Referral SigCnt).

use super::address::{Address, eid_text};
use super::cursor::{Reader, fit};
use super::error::Result;

/// Map-Reply actions (RFC 9301 §5.4; 6 and 7 are used privately by lispers.net).
pub mod action {
    pub const NO_ACTION: u8 = 0;
    pub const NATIVELY_FORWARD: u8 = 1;
    pub const SEND_MAP_REQUEST: u8 = 2;
    pub const DROP_NO_REASON: u8 = 3;
    pub const DROP_POLICY_DENIED: u8 = 4;
    pub const DROP_AUTH_FAILURE: u8 = 5;

    /// The action's name as lispers.net logs print it.
    pub fn name(act: u8) -> &'static str {
        match act {
            NO_ACTION => "no-action",
            NATIVELY_FORWARD => "native-forward",
            SEND_MAP_REQUEST => "send-map-request",
            DROP_NO_REASON => "drop-action",
            DROP_POLICY_DENIED => "policy-denied",
            DROP_AUTH_FAILURE => "auth-failure",
            6 => "send-subscribe",
            _ => "not-registered-yet",
        }
    }
}

/// An EID-record of a Map-Reply, Map-Register, Map-Notify or Map-Referral.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EidRecord {
    /// Record TTL as on the wire: minutes (lispers.net: seconds when bit 31 is set).
    pub ttl: u32,
    pub mask_len: u8,
    /// ACT, three bits.
    pub action: u8,
    /// A bit: the record comes from the authoritative site.
    pub authoritative: bool,
    /// Byte 6 low four bits and byte 7, as on the wire (0x0800 is lispers' / DDT's I bit).
    pub reserved: u16,
    /// Top four bits of bytes 8-9 (Map-Referral: SigCnt).
    pub rsvd_version: u8,
    /// 12-bit Map-Version number.
    pub map_version: u16,
    pub eid: Address,
    pub rlocs: Vec<RlocRecord>,
}

/// An RLOC-record (Locator) of an EID-record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RlocRecord {
    pub priority: u8,
    pub weight: u8,
    pub m_priority: u8,
    pub m_weight: u8,
    /// Unused flags and the L, p, R bits, as on the wire.
    pub flags: u16,
    pub locator: Address,
}

impl RlocRecord {
    /// L: the locator is local to the site sending the message.
    pub const LOCAL: u16 = 0x0004;
    /// p: the locator the RLOC-probe reply is for.
    pub const PROBED: u16 = 0x0002;
    /// R: the sender can reach the locator.
    pub const REACHABLE: u16 = 0x0001;

    pub fn local(&self) -> bool {
        self.flags & Self::LOCAL != 0
    }
    pub fn probed(&self) -> bool {
        self.flags & Self::PROBED != 0
    }
    pub fn reachable(&self) -> bool {
        self.flags & Self::REACHABLE != 0
    }

    /// L / p / R as letters, upper case when set (lispers.net style: `LpR`).
    pub fn flag_letters(&self) -> String {
        [
            (self.local(), 'L'),
            (self.probed(), 'P'),
            (self.reachable(), 'R'),
        ]
        .iter()
        .map(|&(on, c)| if on { c } else { c.to_ascii_lowercase() })
        .collect()
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<RlocRecord> {
        Ok(RlocRecord {
            priority: r.u8("RLOC priority")?,
            weight: r.u8("RLOC weight")?,
            m_priority: r.u8("RLOC M priority")?,
            m_weight: r.u8("RLOC M weight")?,
            flags: r.u16("RLOC flags")?,
            locator: Address::parse(r, 0)?,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&[self.priority, self.weight, self.m_priority, self.m_weight]);
        out.extend_from_slice(&self.flags.to_be_bytes());
        self.locator.emit(out)
    }
}

impl EidRecord {
    /// A record with the given EID-prefix and locators, every other field zero.
    pub fn new(eid: Address, mask_len: u8, ttl: u32, rlocs: Vec<RlocRecord>) -> Self {
        EidRecord {
            ttl,
            mask_len,
            action: 0,
            authoritative: false,
            reserved: 0,
            rsvd_version: 0,
            map_version: 0,
            eid,
            rlocs,
        }
    }

    /// `[iid]prefix/len`.
    pub fn eid_text(&self) -> String {
        eid_text(&self.eid, self.mask_len)
    }

    pub fn parse(r: &mut Reader<'_>) -> Result<EidRecord> {
        let ttl = r.u32("Record TTL")?;
        let count = r.u8("Locator Count")?;
        let mask_len = r.u8("EID mask-len")?;
        let flags = r.u16("ACT/A bits")?;
        let ver = r.u16("Map-Version")?;
        let eid = Address::parse(r, 0)?;
        // Each RLOC-record is at least 8 bytes: bound the allocation by what is there.
        let mut rlocs = Vec::with_capacity((count as usize).min(r.remaining() / 8));
        for _ in 0..count {
            rlocs.push(RlocRecord::parse(r)?);
        }
        Ok(EidRecord {
            ttl,
            mask_len,
            action: (flags >> 13) as u8,
            authoritative: flags & 0x1000 != 0,
            reserved: flags & 0x0fff,
            rsvd_version: (ver >> 12) as u8,
            map_version: ver & 0x0fff,
            eid,
            rlocs,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&self.ttl.to_be_bytes());
        let count: u8 = fit(self.rlocs.len(), "Locator Count")?;
        out.extend_from_slice(&[count, self.mask_len]);
        let flags = (u16::from(self.action & 7) << 13)
            | if self.authoritative { 0x1000 } else { 0 }
            | (self.reserved & 0x0fff);
        out.extend_from_slice(&flags.to_be_bytes());
        let ver = (u16::from(self.rsvd_version & 0xf) << 12) | (self.map_version & 0x0fff);
        out.extend_from_slice(&ver.to_be_bytes());
        self.eid.emit(out)?;
        self.rlocs.iter().try_for_each(|l| l.emit(out))
    }
}

/// The xTR-ID (128 bits) and Site-ID (64 bits) that follow the records when the I bit is set
/// (RFC 9301 §5.6; RFC 9437 for Map-Requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XtrTrailer {
    pub xtr_id: [u8; 16],
    pub site_id: [u8; 8],
}

impl XtrTrailer {
    pub const LEN: usize = 24;

    pub fn parse(r: &mut Reader<'_>) -> Result<XtrTrailer> {
        Ok(XtrTrailer {
            xtr_id: r.array("xTR-ID")?,
            site_id: r.array("Site-ID")?,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.xtr_id);
        out.extend_from_slice(&self.site_id);
    }
}

/// Parses `count` EID-records, bounding the allocation by the bytes left (a record is at
/// least 12 bytes).
pub(crate) fn parse_records(r: &mut Reader<'_>, count: u8) -> Result<Vec<EidRecord>> {
    let mut v = Vec::with_capacity((count as usize).min(r.remaining() / 12));
    for _ in 0..count {
        v.push(EidRecord::parse(r)?);
    }
    Ok(v)
}

/// Emits the records in order.
pub(crate) fn emit_records(records: &[EidRecord], out: &mut Vec<u8>) -> Result<()> {
    records.iter().try_for_each(|rec| rec.emit(out))
}
