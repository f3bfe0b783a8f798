//! Info-Request and Info-Reply (type 7; RFC 9301 §5.8 reserves the type, the layout is
//! draft-ermagan-lisp-nat-traversal §5).
//!
//! ```text
//!     |Type=7 |R|            Reserved                                 |
//!     |                         Nonce . . .                           |
//!     |                      . . . Nonce                              |
//!     |    Key ID     |  Algorithm ID |  Authentication Data Length   |
//!     ~                     Authentication Data                       ~
//!     |                              TTL                              |
//!     |    Reserved   | EID mask-len  |        EID-prefix-AFI         |
//!     |                          EID-prefix                           |
//!     |   AFI = 0 (request) or NAT-Traversal LCAF (reply) ...         |
//! ```

use super::address::Address;
use super::cursor::Reader;
use super::error::Result;
use super::map_register::Authentication;
use super::{Nonce, expect_type, flag, msg_type};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InfoMessage {
    /// R bit: Info-Reply.
    pub reply: bool,
    pub reserved: u32,
    pub nonce: Nonce,
    pub auth: Authentication,
    /// Minutes.
    pub ttl: u32,
    pub reserved2: u8,
    pub mask_len: u8,
    pub eid: Address,
    /// AFI 0 in a request; the NAT-Traversal LCAF in a reply.
    pub payload: Address,
}

const R: u32 = 0x0800_0000;
pub const RESERVED_MASK: u32 = 0x07ff_ffff;

impl InfoMessage {
    pub fn parse(r: &mut Reader<'_>) -> Result<InfoMessage> {
        let w = expect_type(r, msg_type::INFO)?;
        let nonce = r.array("Nonce")?;
        let auth = Authentication::parse(r)?;
        Ok(InfoMessage {
            reply: w & R != 0,
            reserved: w & RESERVED_MASK,
            nonce,
            auth,
            ttl: r.u32("Info TTL")?,
            reserved2: r.u8("Info reserved")?,
            mask_len: r.u8("Info EID mask-len")?,
            eid: Address::parse(r, 0)?,
            payload: Address::parse(r, 0)?,
        })
    }

    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        let w = (u32::from(msg_type::INFO) << 28)
            | flag(self.reply, R)
            | (self.reserved & RESERVED_MASK);
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        self.auth.emit(out)?;
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&[self.reserved2, self.mask_len]);
        self.eid.emit(out)?;
        self.payload.emit(out)
    }
}
