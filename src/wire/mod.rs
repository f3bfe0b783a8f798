//! The wire layer: bytes to typed LISP messages and back (RFC 9300, 9301, 8060, 8061, 8111).
//!
//! No state, no I/O, no panics on any input. Every parser takes a bounds-checked [`Reader`];
//! every message type has a `parse` and an `emit`, and `parse(emit(m)) == m`. Fields the RFCs
//! leave reserved are kept as they came, so a parsed message from lispers.net or OOR re-emits
//! byte for byte (their private bits included).

pub mod address;
pub mod cursor;
pub mod data;
pub mod ecm;
pub mod error;
pub mod info;
pub mod ip;
pub mod ip_udp;
pub mod lcaf;
pub mod map_referral;
pub mod map_register;
pub mod map_reply;
pub mod map_request;
pub mod record;

pub use address::{Address, MAX_NESTING, afi, eid_text};
pub use cursor::Reader;
pub use data::{CONTROL_INSTANCE_ID, DataHeader};
pub use ecm::Ecm;
pub use error::{Result, WireError};
pub use info::InfoMessage;
pub use ip_udp::{Checksum, InnerIp, IpUdp};
pub use lcaf::{
    ElpHop, GeoCoordinates, Lcaf, LcafBody, MulticastInfo, NatTraversal, RleEntry, SecurityKey,
    SourceDest, lcaf_type,
};
pub use map_referral::{MapReferral, ReferralRecord, ReferralSignature};
pub use map_register::{Authentication, MapNotify, MapRegister};
pub use map_reply::MapReply;
pub use map_request::{MapRequest, RequestRecord};
pub use record::{EidRecord, RlocRecord, XtrTrailer, action};

/// A 64-bit nonce as the eight bytes on the wire. lispers.net writes its nonces little-endian
/// and OOR big-endian, so nonces are compared and echoed as opaque bytes, never as integers.
pub type Nonce = [u8; 8];

/// UDP port of LISP data packets (RFC 9300 §5.2).
pub const DATA_PORT: u16 = 4341;
/// UDP port of LISP control messages (RFC 9301 §5.1).
pub const CONTROL_PORT: u16 = 4342;

/// Control message types, the high nibble of byte 0 (RFC 9301 §5.1 / IANA).
pub mod msg_type {
    pub const MAP_REQUEST: u8 = 1;
    pub const MAP_REPLY: u8 = 2;
    pub const MAP_REGISTER: u8 = 3;
    pub const MAP_NOTIFY: u8 = 4;
    pub const MAP_NOTIFY_ACK: u8 = 5;
    pub const MAP_REFERRAL: u8 = 6;
    pub const INFO: u8 = 7;
    pub const ECM: u8 = 8;
}

/// `v` when the flag is set, else 0: how the message headers compose their first word.
pub(crate) fn flag(set: bool, v: u32) -> u32 {
    if set { v } else { 0 }
}

/// Reads the first word of a control message and checks its type.
pub(crate) fn expect_type(r: &mut Reader<'_>, t: u8) -> Result<u32> {
    let w = r.u32("message header")?;
    let got = (w >> 28) as u8;
    if got != t {
        return Err(r.invalid_at(4, "message type", format!("expected type {t}, found {got}")));
    }
    Ok(w)
}

/// Any LISP control message (what arrives on UDP 4342).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlMessage {
    MapRequest(MapRequest),
    MapReply(MapReply),
    MapRegister(MapRegister),
    MapNotify(MapNotify),
    MapNotifyAck(MapNotify),
    MapReferral(MapReferral),
    /// Info-Request or Info-Reply (the R bit tells which).
    Info(InfoMessage),
    Ecm(Ecm),
}

impl ControlMessage {
    /// Parses one whole control message; bytes left after it are an error.
    pub fn parse(bytes: &[u8]) -> Result<ControlMessage> {
        let mut r = Reader::new(bytes);
        let m = Self::parse_from(&mut r)?;
        r.finish("end of message")?;
        Ok(m)
    }

    /// Parses a control message from the reader, leaving anything after it.
    pub fn parse_from(r: &mut Reader<'_>) -> Result<ControlMessage> {
        let Some(first) = r.peek(1) else {
            return Err(WireError::Truncated {
                field: "message header",
                offset: r.offset(),
                need: 4,
                have: 0,
            });
        };
        Ok(match first[0] >> 4 {
            msg_type::MAP_REQUEST => ControlMessage::MapRequest(MapRequest::parse(r)?),
            msg_type::MAP_REPLY => ControlMessage::MapReply(MapReply::parse(r)?),
            msg_type::MAP_REGISTER => ControlMessage::MapRegister(MapRegister::parse(r)?),
            msg_type::MAP_NOTIFY => ControlMessage::MapNotify(MapNotify::parse(r, false)?),
            msg_type::MAP_NOTIFY_ACK => ControlMessage::MapNotifyAck(MapNotify::parse(r, true)?),
            msg_type::MAP_REFERRAL => ControlMessage::MapReferral(MapReferral::parse(r)?),
            msg_type::INFO => ControlMessage::Info(InfoMessage::parse(r)?),
            msg_type::ECM => ControlMessage::Ecm(Ecm::parse(r)?),
            t => {
                let what = match t {
                    9 => "lispers.net private LISP-Trace",
                    15 => "LISP Shared Extension Message",
                    _ => "unassigned",
                };
                return Err(r.invalid(
                    "message type",
                    format!("type {t} ({what}) is not supported"),
                ));
            }
        })
    }

    /// Appends the message.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        match self {
            ControlMessage::MapRequest(m) => m.emit(out),
            ControlMessage::MapReply(m) => m.emit(out),
            ControlMessage::MapRegister(m) => m.emit(out),
            ControlMessage::MapNotify(m) => m.emit(out, false),
            ControlMessage::MapNotifyAck(m) => m.emit(out, true),
            ControlMessage::MapReferral(m) => m.emit(out),
            ControlMessage::Info(m) => m.emit(out),
            ControlMessage::Ecm(m) => m.emit(out),
        }
    }

    /// The message as a new byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(256);
        self.emit(&mut v)?;
        Ok(v)
    }

    /// The message type's name as the `decent decode` JSON uses it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ControlMessage::MapRequest(_) => "map-request",
            ControlMessage::MapReply(_) => "map-reply",
            ControlMessage::MapRegister(_) => "map-register",
            ControlMessage::MapNotify(_) => "map-notify",
            ControlMessage::MapNotifyAck(_) => "map-notify-ack",
            ControlMessage::MapReferral(_) => "map-referral",
            ControlMessage::Info(i) if i.reply => "info-reply",
            ControlMessage::Info(_) => "info-request",
            ControlMessage::Ecm(_) => "ecm",
        }
    }

    /// The nonce, for every type that has one (all but the ECM, whose inner message has it).
    pub fn nonce(&self) -> Option<&Nonce> {
        match self {
            ControlMessage::MapRequest(m) => Some(&m.nonce),
            ControlMessage::MapReply(m) => Some(&m.nonce),
            ControlMessage::MapRegister(m) => Some(&m.nonce),
            ControlMessage::MapNotify(m) | ControlMessage::MapNotifyAck(m) => Some(&m.nonce),
            ControlMessage::MapReferral(m) => Some(&m.nonce),
            ControlMessage::Info(m) => Some(&m.nonce),
            ControlMessage::Ecm(_) => None,
        }
    }

    /// The authentication field of the types that carry one.
    pub fn authentication(&self) -> Option<&Authentication> {
        match self {
            ControlMessage::MapRegister(m) => Some(&m.auth),
            ControlMessage::MapNotify(m) | ControlMessage::MapNotifyAck(m) => Some(&m.auth),
            ControlMessage::Info(m) => Some(&m.auth),
            _ => None,
        }
    }
}
