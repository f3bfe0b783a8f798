//! Map-Register, Map-Notify and Map-Notify-Ack (RFC 9301 §5.6, §5.7).
//!
//! ```text
//!     |Type=3 |P|S|I|        Reserved               |E|T|a|m|M| Record Count  |
//!     |Type=4/5|I|R|          Reserved                        | Record Count  |
//!     |                         Nonce . . .                           |
//!     |                         . . . Nonce                           |
//!     |    Key ID     |  Algorithm ID |  Authentication Data Length   |
//!     ~                     Authentication Data                       ~
//!     |                   EID-records ...                             |
//!     |         xTR-ID (128 bits) + Site-ID (64 bits), when I=1       |
//! ```
//!
//! From the nonce on the three share one layout. The Authentication Data is an HMAC over the
//! whole message with this field zeroed (see `crypto::auth`); its length is whatever the
//! sender declares (lispers.net and OOR send the full 20 / 32 byte digests).

use super::cursor::{Reader, fit};
use super::error::Result;
use super::record::{EidRecord, XtrTrailer, emit_records, parse_records};
use super::{Nonce, expect_type, flag, msg_type};

/// Key ID, Algorithm ID and Authentication Data (RFC 9301 §5.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Authentication {
    pub key_id: u8,
    /// 0 none, 1 HMAC-SHA-1-96, 2 HMAC-SHA-256-128.
    pub alg_id: u8,
    pub data: Vec<u8>,
}

impl Authentication {
    /// Byte offset of the Authentication Data in a Map-Register / Notify / Info message.
    pub const DATA_OFFSET: usize = 16;

    /// Zeroed authentication data of the full digest length of `alg_id`, to be filled in by
    /// `crypto::auth::sign` once the message is emitted.
    pub fn unsigned(key_id: u8, alg_id: u8) -> Self {
        let len = match alg_id {
            1 => 20,
            2 => 32,
            _ => 0,
        };
        Authentication {
            key_id,
            alg_id,
            data: vec![0; len],
        }
    }

    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Self> {
        let key_id = r.u8("Key ID")?;
        let alg_id = r.u8("Algorithm ID")?;
        let len = r.u16("Authentication Data Length")? as usize;
        Ok(Authentication {
            key_id,
            alg_id,
            data: r.bytes(len, "Authentication Data")?.to_vec(),
        })
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let len: u16 = fit(self.data.len(), "Authentication Data Length")?;
        out.extend_from_slice(&[self.key_id, self.alg_id]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.data);
        Ok(())
    }
}

/// A Map-Register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapRegister {
    /// P: the Map-Server should answer Map-Requests for these EIDs (proxy Map-Reply).
    pub proxy_reply: bool,
    /// S: LISP-SEC capable.
    pub security: bool,
    /// E: EID-notify.
    pub eid_notify: bool,
    /// T: Record TTL is the registration lifetime.
    pub use_ttl: bool,
    /// a: merge this registration with those of other xTR-IDs.
    pub merge: bool,
    /// M: the registrant wants a Map-Notify.
    pub want_notify: bool,
    /// Bits of the first word no flag names (lispers' private ones among them).
    pub reserved: u32,
    pub nonce: Nonce,
    pub auth: Authentication,
    pub records: Vec<EidRecord>,
    /// I bit.
    pub trailer: Option<XtrTrailer>,
}

const P: u32 = 0x0800_0000;
const S: u32 = 0x0400_0000;
const I: u32 = 0x0200_0000;
const E: u32 = 0x0000_1000;
const T: u32 = 0x0000_0800;
const LA: u32 = 0x0000_0400;
const M: u32 = 0x0000_0100;
pub const REGISTER_RESERVED_MASK: u32 = 0x01ff_e200;

/// Map-Notify and Map-Notify-Ack flags: I (trailer present) 0x08 of byte 0.
const NI: u32 = 0x0800_0000;
pub const NOTIFY_RESERVED_MASK: u32 = 0x07ff_ff00;

/// The part the three messages share after the first word: nonce, authentication, records
/// and, when the I bit is set, the trailer.
struct Body {
    nonce: Nonce,
    auth: Authentication,
    records: Vec<EidRecord>,
    trailer: Option<XtrTrailer>,
}

impl Body {
    fn parse(r: &mut Reader<'_>, count: u8, with_trailer: bool) -> Result<Body> {
        let nonce = r.array("Nonce")?;
        let auth = Authentication::parse(r)?;
        let records = parse_records(r, count)?;
        let trailer = if with_trailer {
            Some(XtrTrailer::parse(r)?)
        } else {
            None
        };
        Ok(Body {
            nonce,
            auth,
            records,
            trailer,
        })
    }
}

/// Writes the shared part; the first word is already out.
fn emit_body(
    nonce: &Nonce,
    auth: &Authentication,
    records: &[EidRecord],
    trailer: Option<&XtrTrailer>,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.extend_from_slice(nonce);
    auth.emit(out)?;
    emit_records(records, out)?;
    if let Some(t) = trailer {
        t.emit(out);
    }
    Ok(())
}

impl MapRegister {
    pub fn parse(r: &mut Reader<'_>) -> Result<MapRegister> {
        let w = expect_type(r, msg_type::MAP_REGISTER)?;
        let b = Body::parse(r, w as u8, w & I != 0)?;
        Ok(MapRegister {
            proxy_reply: w & P != 0,
            security: w & S != 0,
            eid_notify: w & E != 0,
            use_ttl: w & T != 0,
            merge: w & LA != 0,
            want_notify: w & M != 0,
            reserved: w & REGISTER_RESERVED_MASK,
            nonce: b.nonce,
            auth: b.auth,
            records: b.records,
            trailer: b.trailer,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let count: u8 = fit(self.records.len(), "Record Count")?;
        let w = (u32::from(msg_type::MAP_REGISTER) << 28)
            | flag(self.proxy_reply, P)
            | flag(self.security, S)
            | flag(self.trailer.is_some(), I)
            | flag(self.eid_notify, E)
            | flag(self.use_ttl, T)
            | flag(self.merge, LA)
            | flag(self.want_notify, M)
            | (self.reserved & REGISTER_RESERVED_MASK)
            | u32::from(count);
        out.extend_from_slice(&w.to_be_bytes());
        emit_body(
            &self.nonce,
            &self.auth,
            &self.records,
            self.trailer.as_ref(),
            out,
        )
    }
}

/// A Map-Notify or Map-Notify-Ack: the two differ only in their type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MapNotify {
    /// Bits of the first word other than type, I and Record Count (0x04 of byte 0 is R, "to
    /// an RTR", in the NAT-traversal draft).
    pub reserved: u32,
    pub nonce: Nonce,
    pub auth: Authentication,
    pub records: Vec<EidRecord>,
    /// I bit.
    pub trailer: Option<XtrTrailer>,
    /// The trailer came with the I bit clear: lispers.net's Map-Notify carries the xTR-ID /
    /// site-ID so, its HMAC covering them (captured in shared/vectors/interop, cell 1). Kept
    /// so the message re-emits as it came.
    pub unflagged_trailer: bool,
}

impl MapNotify {
    /// Parses a Map-Notify (`ack` false) or Map-Notify-Ack (`ack` true).
    pub fn parse(r: &mut Reader<'_>, ack: bool) -> Result<MapNotify> {
        let t = if ack {
            msg_type::MAP_NOTIFY_ACK
        } else {
            msg_type::MAP_NOTIFY
        };
        let w = expect_type(r, t)?;
        let mut b = Body::parse(r, w as u8, w & NI != 0)?;
        // Exactly a trailer's worth left without the I bit: lispers.net's xTR-ID / site-ID.
        let unflagged_trailer = b.trailer.is_none() && r.remaining() == XtrTrailer::LEN;
        if unflagged_trailer {
            b.trailer = Some(XtrTrailer::parse(r)?);
        }
        Ok(MapNotify {
            reserved: w & NOTIFY_RESERVED_MASK,
            nonce: b.nonce,
            auth: b.auth,
            records: b.records,
            trailer: b.trailer,
            unflagged_trailer,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>, ack: bool) -> Result<()> {
        let count: u8 = fit(self.records.len(), "Record Count")?;
        let t = if ack {
            msg_type::MAP_NOTIFY_ACK
        } else {
            msg_type::MAP_NOTIFY
        };
        let w = (u32::from(t) << 28)
            | flag(self.trailer.is_some() && !self.unflagged_trailer, NI)
            | (self.reserved & NOTIFY_RESERVED_MASK)
            | u32::from(count);
        out.extend_from_slice(&w.to_be_bytes());
        emit_body(
            &self.nonce,
            &self.auth,
            &self.records,
            self.trailer.as_ref(),
            out,
        )
    }
}
