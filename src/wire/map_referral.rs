//! Map-Referral (RFC 8111 §6.4). A LISP-Decent node does not run DDT; it parses referrals so
//! that they can be shown and ignored.
//!
//! ```text
//!     |Type=6 |                Reserved               | Record Count  |
//!     |                         Nonce . . .                           |
//!     |                         . . . Nonce                           |
//!     |                          Record TTL                           |
//!     | Referral Count| EID mask-len  | ACT |A|I|     Reserved        |
//!     | SigCnt|   Map Version Number  |            EID-AFI            |
//!     |                          EID-prefix ...                       |
//!     |                 Referral (RLOC-record) ...                    |
//!     ~                 Sig section (SigCnt times)                    ~
//! ```
//!
//! The record layout is an EID-record's ([`EidRecord`]): SigCnt is its `rsvd_version`, the I
//! (incomplete) bit is 0x0800 of its `reserved`.

use super::cursor::{Reader, fit};
use super::error::{Result, WireError};
use super::record::EidRecord;
use super::{Nonce, expect_type, msg_type};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapReferral {
    pub reserved: u32,
    pub nonce: Nonce,
    pub records: Vec<ReferralRecord>,
}

/// A referral record and its signatures.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralRecord {
    pub record: EidRecord,
    pub signatures: Vec<ReferralSignature>,
}

/// RFC 8111 §6.4.1 signature section.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReferralSignature {
    pub original_ttl: u32,
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    pub algorithm: u8,
    pub reserved: [u8; 3],
    pub signature: Vec<u8>,
}

pub const RESERVED_MASK: u32 = 0x0fff_ff00;

impl MapReferral {
    pub fn parse(r: &mut Reader<'_>) -> Result<MapReferral> {
        let w = expect_type(r, msg_type::MAP_REFERRAL)?;
        let nonce = r.array("Nonce")?;
        let count = w as u8;
        let mut records = Vec::with_capacity((count as usize).min(r.remaining() / 12));
        for _ in 0..count {
            let record = EidRecord::parse(r)?;
            let mut signatures = Vec::new();
            for _ in 0..record.rsvd_version {
                let original_ttl = r.u32("signature original TTL")?;
                let expiration = r.u32("signature expiration")?;
                let inception = r.u32("signature inception")?;
                let key_tag = r.u16("signature key tag")?;
                let len = r.u16("signature length")? as usize;
                let algorithm = r.u8("signature algorithm")?;
                let reserved = r.array("signature reserved")?;
                signatures.push(ReferralSignature {
                    original_ttl,
                    expiration,
                    inception,
                    key_tag,
                    algorithm,
                    reserved,
                    signature: r.bytes(len, "signature")?.to_vec(),
                });
            }
            records.push(ReferralRecord { record, signatures });
        }
        Ok(MapReferral {
            reserved: w & RESERVED_MASK,
            nonce,
            records,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let count: u8 = fit(self.records.len(), "Record Count")?;
        let w = (u32::from(msg_type::MAP_REFERRAL) << 28)
            | (self.reserved & RESERVED_MASK)
            | u32::from(count);
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        for rr in &self.records {
            if usize::from(rr.record.rsvd_version) != rr.signatures.len() {
                return Err(WireError::emit(
                    "SigCnt",
                    "does not match the number of signatures",
                ));
            }
            rr.record.emit(out)?;
            for s in &rr.signatures {
                out.extend_from_slice(&s.original_ttl.to_be_bytes());
                out.extend_from_slice(&s.expiration.to_be_bytes());
                out.extend_from_slice(&s.inception.to_be_bytes());
                out.extend_from_slice(&s.key_tag.to_be_bytes());
                let len: u16 = fit(s.signature.len(), "signature length")?;
                out.extend_from_slice(&len.to_be_bytes());
                out.push(s.algorithm);
                out.extend_from_slice(&s.reserved);
                out.extend_from_slice(&s.signature);
            }
        }
        Ok(())
    }
}
