//! LISP addresses: an AFI (RFC 9300 §5, the IANA Address Family Numbers) and its address.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |              AFI              |   Address ... (length by AFI) |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! AFI 0 carries nothing, 1 four bytes, 2 sixteen, 6 (IEEE 802 MAC) six, 17 (Distinguished
//! Name, RFC 8060 §3 / draft-farinacci-lisp-name-encoding) ASCII ended by a NUL, 16387 an LCAF
//! (RFC 8060) that states its own length. Any other AFI has no length we could know, so it is
//! kept as opaque bytes up to the end of the enclosing region (the LCAF or message holding it)
//! and re-emitted unchanged.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::Reader;
use super::error::{Result, WireError};
use super::lcaf::Lcaf;

/// AFI numbers used by LISP.
pub mod afi {
    pub const NONE: u16 = 0;
    pub const IPV4: u16 = 1;
    pub const IPV6: u16 = 2;
    pub const MAC: u16 = 6;
    pub const DISTINGUISHED_NAME: u16 = 17;
    pub const LCAF: u16 = 16387;
}

/// How deep LCAFs may nest inside each other (an AFI List in an Instance-ID in an AFI List...).
/// Real peers use at most three levels; the limit stops a hostile packet from recursing.
pub const MAX_NESTING: usize = 8;

/// An address with its family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// AFI 0: no address.
    None,
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    /// AFI 6: an IEEE 802 MAC address.
    Mac([u8; 6]),
    /// AFI 17: a distinguished name (the bytes, without the terminating NUL).
    Name(Vec<u8>),
    /// AFI 16387: an LCAF.
    Lcaf(Box<Lcaf>),
    /// Any other AFI: its bytes, to the end of the enclosing region.
    Unknown {
        afi: u16,
        bytes: Vec<u8>,
    },
}

impl Address {
    /// The AFI this address is sent with.
    pub fn afi(&self) -> u16 {
        match self {
            Address::None => afi::NONE,
            Address::Ipv4(_) => afi::IPV4,
            Address::Ipv6(_) => afi::IPV6,
            Address::Mac(_) => afi::MAC,
            Address::Name(_) => afi::DISTINGUISHED_NAME,
            Address::Lcaf(_) => afi::LCAF,
            Address::Unknown { afi, .. } => *afi,
        }
    }

    /// Parses an AFI and its address at `depth` levels of LCAF nesting.
    pub fn parse(r: &mut Reader<'_>, depth: usize) -> Result<Address> {
        let afi = r.u16("AFI")?;
        Self::parse_after_afi(r, afi, depth)
    }

    /// Parses the address that follows an AFI already read.
    pub fn parse_after_afi(r: &mut Reader<'_>, afi: u16, depth: usize) -> Result<Address> {
        Ok(match afi {
            afi::NONE => Address::None,
            afi::IPV4 => Address::Ipv4(Ipv4Addr::from(r.array::<4>("IPv4 address")?)),
            afi::IPV6 => Address::Ipv6(Ipv6Addr::from(r.array::<16>("IPv6 address")?)),
            afi::MAC => Address::Mac(r.array("MAC address")?),
            afi::DISTINGUISHED_NAME => {
                let start = r.offset();
                let rest = r.peek(r.remaining()).unwrap_or_default();
                let Some(nul) = rest.iter().position(|&b| b == 0) else {
                    return Err(WireError::Invalid {
                        field: "distinguished name",
                        offset: start,
                        reason: "no terminating NUL before the end of the enclosing field".into(),
                    });
                };
                let name = r.bytes(nul, "distinguished name")?.to_vec();
                r.u8("distinguished name NUL")?;
                Address::Name(name)
            }
            afi::LCAF => Address::Lcaf(Box::new(Lcaf::parse(r, depth)?)),
            other => Address::Unknown {
                afi: other,
                bytes: r.rest().to_vec(),
            },
        })
    }

    /// Number of bytes [`emit`](Self::emit) writes.
    pub fn wire_len(&self) -> usize {
        2 + match self {
            Address::None => 0,
            Address::Ipv4(_) => 4,
            Address::Ipv6(_) => 16,
            Address::Mac(_) => 6,
            Address::Name(n) => n.len() + 1,
            Address::Lcaf(l) => l.wire_len() - 2,
            Address::Unknown { bytes, .. } => bytes.len(),
        }
    }

    /// Appends AFI and address.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        if let Address::Lcaf(l) = self {
            return l.emit(out);
        }
        out.extend_from_slice(&self.afi().to_be_bytes());
        match self {
            Address::None | Address::Lcaf(_) => {}
            Address::Ipv4(a) => out.extend_from_slice(&a.octets()),
            Address::Ipv6(a) => out.extend_from_slice(&a.octets()),
            Address::Mac(m) => out.extend_from_slice(m),
            Address::Name(n) => {
                if n.contains(&0) {
                    return Err(WireError::emit("distinguished name", "contains a NUL byte"));
                }
                out.extend_from_slice(n);
                out.push(0);
            }
            Address::Unknown { bytes, .. } => out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// The IP address, if this is one (looking through an Instance-ID LCAF).
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ipv4(a) => Some(IpAddr::V4(*a)),
            Address::Ipv6(a) => Some(IpAddr::V6(*a)),
            Address::Lcaf(l) => l.inner_ip(),
            _ => None,
        }
    }
}

impl From<IpAddr> for Address {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Address::Ipv4(a),
            IpAddr::V6(a) => Address::Ipv6(a),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::None => f.write_str("no-address"),
            Address::Ipv4(a) => write!(f, "{a}"),
            Address::Ipv6(a) => write!(f, "{a}"),
            Address::Mac(m) => write!(
                f,
                "{:02x}{:02x}.{:02x}{:02x}.{:02x}{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            ),
            Address::Name(n) => write!(f, "'{}'", String::from_utf8_lossy(n).escape_debug()),
            Address::Lcaf(l) => write!(f, "{l}"),
            Address::Unknown { afi, bytes } => write!(f, "afi-{afi}:{}", hex::encode(bytes)),
        }
    }
}

/// The EID text operators know from lispers.net: `[iid]prefix/len`, `[iid]'name'` for a
/// distinguished name, `[iid](source/len, group/len)` for a multicast (S,G) entry.
pub fn eid_text(eid: &Address, mask_len: u8) -> String {
    use super::lcaf::LcafBody;
    let (iid, inner) = match eid {
        Address::Lcaf(l) => match &l.body {
            LcafBody::InstanceId { iid, address } => (*iid, address),
            LcafBody::MulticastInfo(m) => (m.iid, eid),
            _ => (0, eid),
        },
        _ => (0, eid),
    };
    format!("[{iid}]{}", eid_body_text(inner, mask_len))
}

fn eid_body_text(eid: &Address, mask_len: u8) -> String {
    use super::lcaf::LcafBody;
    match eid {
        Address::Name(_) | Address::None | Address::Unknown { .. } => eid.to_string(),
        Address::Lcaf(l) => match &l.body {
            LcafBody::MulticastInfo(m) => format!(
                "({}/{}, {}/{})",
                m.source, m.source_mask_len, m.group, m.group_mask_len
            ),
            LcafBody::SourceDest(sd) => format!(
                "({}/{}, {}/{})",
                sd.source, sd.source_mask_len, sd.dest, sd.dest_mask_len
            ),
            _ => l.to_string(),
        },
        _ => format!("{eid}/{mask_len}"),
    }
}
