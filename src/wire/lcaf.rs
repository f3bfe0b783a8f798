//! LISP Canonical Address Format (RFC 8060; Security Key: RFC 8061 §6).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           AFI = 16387         |     Rsvd1     |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Type       |     Rsvd2     |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    type-specific payload (Length bytes)       |
//! ```
//!
//! Length counts the bytes after the Length field. A type we do not know is kept as opaque
//! bytes, skipped by its Length and re-emitted unchanged (OOR drops the whole message instead,
//! and crashes on types of 16 and above). Rsvd2 is kept as it came: it is the Instance-ID
//! mask-length for type 2 (RFC 8060 §4.1), the R/L/J flags for type 9 (§4.5.2), the B bit for
//! type 14 (§4.10.2), and reserved elsewhere.

use std::fmt;
use std::net::IpAddr;

use super::address::{Address, MAX_NESTING};
use super::cursor::{Reader, fit};
use super::error::{Result, WireError};

/// LCAF type numbers (RFC 8060 §3, IANA "LISP Canonical Address Format (LCAF) Types").
pub mod lcaf_type {
    pub const AFI_LIST: u8 = 1;
    pub const INSTANCE_ID: u8 = 2;
    pub const GEO_COORDINATES: u8 = 5;
    pub const NAT_TRAVERSAL: u8 = 7;
    pub const MULTICAST_INFO: u8 = 9;
    pub const EXPLICIT_LOCATOR_PATH: u8 = 10;
    pub const SECURITY_KEY: u8 = 11;
    pub const SOURCE_DEST_KEY: u8 = 12;
    pub const REPLICATION_LIST: u8 = 13;
    pub const JSON: u8 = 14;
}

/// An LCAF: its header bytes and its typed payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lcaf {
    pub rsvd1: u8,
    pub flags: u8,
    /// Type-specific (see the module documentation).
    pub rsvd2: u8,
    pub body: LcafBody,
}

/// The payload of an LCAF, by type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LcafBody {
    /// Type 1, AFI List (RFC 8060 §4.16.1): addresses, possibly LCAFs themselves.
    AfiList(Vec<Address>),
    /// Type 2, Instance ID (RFC 8060 §4.1): a 32-bit Instance-ID (24 bits used by the data
    /// plane) and the address it scopes. Rsvd2 holds the IID mask-length.
    InstanceId { iid: u32, address: Address },
    /// Type 5, Geo Coordinates (RFC 8060 §4.3).
    Geo(GeoCoordinates),
    /// Type 7, NAT Traversal (RFC 8060 §4.4; draft-ermagan-lisp-nat-traversal).
    NatTraversal(NatTraversal),
    /// Type 9, Multicast Info (RFC 8060 §4.5.2).
    MulticastInfo(MulticastInfo),
    /// Type 10, Explicit Locator Path (RFC 8060 §4.9): the re-encapsulation hops in order.
    ExplicitLocatorPath(Vec<ElpHop>),
    /// Type 11, Security Key (RFC 8061 §6).
    SecurityKey(SecurityKey),
    /// Type 12, Source/Dest Key (RFC 8060 §4.11).
    SourceDest(SourceDest),
    /// Type 13, Replication List Entry (RFC 8060 §4.10.3; RFC 8378).
    ReplicationList(Vec<RleEntry>),
    /// Type 14, JSON Data Model (RFC 8060 §4.10.2). Rsvd2 bit 0x01 is the B (binary) bit.
    Json { json: Vec<u8>, address: Address },
    /// Any other type: the payload as it came.
    Unknown { lcaf_type: u8, payload: Vec<u8> },
}

/// RFC 8060 §4.3 Geo Coordinates: degrees / minutes / seconds, altitude in metres.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeoCoordinates {
    /// N bit: set for the northern hemisphere.
    pub north: bool,
    /// 15-bit latitude degrees.
    pub lat_degrees: u16,
    pub lat_minutes: u8,
    pub lat_seconds: u8,
    /// E bit: set for the eastern hemisphere.
    pub east: bool,
    /// 15-bit longitude degrees.
    pub lon_degrees: u16,
    pub lon_minutes: u8,
    pub lon_seconds: u8,
    pub altitude: i32,
    pub address: Address,
}

/// RFC 8060 §4.4 NAT Traversal, as the Info-Reply carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NatTraversal {
    pub ms_port: u16,
    pub etr_port: u16,
    pub global_etr_rloc: Address,
    pub ms_rloc: Address,
    pub private_etr_rloc: Address,
    pub rtr_rlocs: Vec<Address>,
}

/// RFC 8060 §4.5.2 Multicast Info: an (S,G) entry in an Instance-ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MulticastInfo {
    pub iid: u32,
    pub reserved: u16,
    pub source_mask_len: u8,
    pub group_mask_len: u8,
    pub source: Address,
    pub group: Address,
    /// lispers.net inserts two zero bytes between Length and Instance-ID and does not count
    /// them in Length; parsed leniently and re-emitted the same way (PROTOCOL.md §3.11).
    pub lispers_padding: bool,
}

/// One hop of an Explicit Locator Path (RFC 8060 §4.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ElpHop {
    /// Rsvd3 and the L (lookup) 0x4, P (RLOC-probe) 0x2 and S (strict) 0x1 bits.
    pub flags: u16,
    pub address: Address,
}

impl ElpHop {
    pub const LOOKUP: u16 = 0x0004;
    pub const PROBE: u16 = 0x0002;
    pub const STRICT: u16 = 0x0001;
}

/// RFC 8061 §6 Security Key LCAF.
///
/// ```text
/// |   Key Count   |     Rsvd3     | Cipher Suite  |   Rsvd4     |R|
/// |         Key Length            |       Key Material ...        |
/// |        ...  (Key Count times Key Length + Key Material)       |
/// |              AFI = x          |       Locator Address ...     |
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecurityKey {
    pub rsvd3: u8,
    pub cipher_suite: u8,
    /// Rsvd4 and the R (revoke) bit 0x01.
    pub rsvd4: u8,
    /// Public key material, one entry per key (key-id 1..3 in order).
    pub keys: Vec<Vec<u8>>,
    pub locator: Address,
}

impl SecurityKey {
    pub const REVOKE: u8 = 0x01;
}

/// RFC 8060 §4.11 Source/Dest Key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceDest {
    pub reserved: u16,
    pub source_mask_len: u8,
    pub dest_mask_len: u8,
    pub source: Address,
    pub dest: Address,
}

/// One Replication List Entry (RFC 8060 §4.10.3; LISP-Decent uses level 128).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RleEntry {
    pub reserved: u16,
    pub rsvd3: u8,
    pub level: u8,
    pub address: Address,
    /// lispers.net may follow an entry with an AFI 17 name of the RLE node.
    pub name: Option<Vec<u8>>,
}

impl Lcaf {
    /// A plain LCAF (reserved fields zero) of the given body.
    pub fn new(body: LcafBody) -> Self {
        Lcaf {
            rsvd1: 0,
            flags: 0,
            rsvd2: 0,
            body,
        }
    }

    /// The LCAF type number of this body.
    pub fn lcaf_type(&self) -> u8 {
        use lcaf_type::*;
        match &self.body {
            LcafBody::AfiList(_) => AFI_LIST,
            LcafBody::InstanceId { .. } => INSTANCE_ID,
            LcafBody::Geo(_) => GEO_COORDINATES,
            LcafBody::NatTraversal(_) => NAT_TRAVERSAL,
            LcafBody::MulticastInfo(_) => MULTICAST_INFO,
            LcafBody::ExplicitLocatorPath(_) => EXPLICIT_LOCATOR_PATH,
            LcafBody::SecurityKey(_) => SECURITY_KEY,
            LcafBody::SourceDest(_) => SOURCE_DEST_KEY,
            LcafBody::ReplicationList(_) => REPLICATION_LIST,
            LcafBody::Json { .. } => JSON,
            LcafBody::Unknown { lcaf_type, .. } => *lcaf_type,
        }
    }

    /// The name of the type, as RFC 8060 calls it.
    pub fn type_name(&self) -> &'static str {
        match &self.body {
            LcafBody::AfiList(_) => "afi-list",
            LcafBody::InstanceId { .. } => "instance-id",
            LcafBody::Geo(_) => "geo-coordinates",
            LcafBody::NatTraversal(_) => "nat-traversal",
            LcafBody::MulticastInfo(_) => "multicast-info",
            LcafBody::ExplicitLocatorPath(_) => "elp",
            LcafBody::SecurityKey(_) => "security-key",
            LcafBody::SourceDest(_) => "source-dest",
            LcafBody::ReplicationList(_) => "rle",
            LcafBody::Json { .. } => "json",
            LcafBody::Unknown { .. } => "unknown",
        }
    }

    /// Parses the LCAF that follows an AFI 16387 already read.
    pub fn parse(r: &mut Reader<'_>, depth: usize) -> Result<Lcaf> {
        if depth >= MAX_NESTING {
            return Err(WireError::TooDeep {
                field: "LCAF",
                offset: r.offset().saturating_sub(2),
                limit: MAX_NESTING,
            });
        }
        let rsvd1 = r.u8("LCAF Rsvd1")?;
        let flags = r.u8("LCAF Flags")?;
        let t = r.u8("LCAF Type")?;
        let rsvd2 = r.u8("LCAF Rsvd2")?;
        let len = r.u16("LCAF Length")? as usize;
        let d = depth + 1;
        let body = if t == lcaf_type::MULTICAST_INFO {
            MulticastInfo::parse_lenient(r, len, d)?
        } else {
            let mut p = r.sub(len, "LCAF payload")?;
            let body = Self::parse_body(t, &mut p, d)?;
            p.finish("LCAF payload")?;
            body
        };
        Ok(Lcaf {
            rsvd1,
            flags,
            rsvd2,
            body,
        })
    }

    fn parse_body(t: u8, p: &mut Reader<'_>, d: usize) -> Result<LcafBody> {
        use lcaf_type::*;
        Ok(match t {
            AFI_LIST => {
                let mut items = Vec::new();
                while !p.is_empty() {
                    items.push(Address::parse(p, d)?);
                }
                LcafBody::AfiList(items)
            }
            INSTANCE_ID => LcafBody::InstanceId {
                iid: p.u32("Instance-ID")?,
                address: Address::parse(p, d)?,
            },
            GEO_COORDINATES => {
                let lat = p.u16("Geo latitude degrees")?;
                let lat_minutes = p.u8("Geo latitude minutes")?;
                let lat_seconds = p.u8("Geo latitude seconds")?;
                let lon = p.u16("Geo longitude degrees")?;
                let lon_minutes = p.u8("Geo longitude minutes")?;
                let lon_seconds = p.u8("Geo longitude seconds")?;
                LcafBody::Geo(GeoCoordinates {
                    north: lat & 0x8000 != 0,
                    lat_degrees: lat & 0x7fff,
                    lat_minutes,
                    lat_seconds,
                    east: lon & 0x8000 != 0,
                    lon_degrees: lon & 0x7fff,
                    lon_minutes,
                    lon_seconds,
                    altitude: p.u32("Geo altitude")? as i32,
                    address: Address::parse(p, d)?,
                })
            }
            NAT_TRAVERSAL => {
                let ms_port = p.u16("NAT MS UDP port")?;
                let etr_port = p.u16("NAT ETR UDP port")?;
                let global_etr_rloc = Address::parse(p, d)?;
                let ms_rloc = Address::parse(p, d)?;
                let private_etr_rloc = Address::parse(p, d)?;
                let mut rtr_rlocs = Vec::new();
                while !p.is_empty() {
                    rtr_rlocs.push(Address::parse(p, d)?);
                }
                LcafBody::NatTraversal(NatTraversal {
                    ms_port,
                    etr_port,
                    global_etr_rloc,
                    ms_rloc,
                    private_etr_rloc,
                    rtr_rlocs,
                })
            }
            EXPLICIT_LOCATOR_PATH => {
                let mut hops = Vec::new();
                while !p.is_empty() {
                    let flags = p.u16("ELP hop flags")?;
                    hops.push(ElpHop {
                        flags,
                        address: Address::parse(p, d)?,
                    });
                }
                LcafBody::ExplicitLocatorPath(hops)
            }
            SECURITY_KEY => {
                let count = p.u8("Security Key count")?;
                let rsvd3 = p.u8("Security Key Rsvd3")?;
                let cipher_suite = p.u8("Security Key cipher suite")?;
                let rsvd4 = p.u8("Security Key Rsvd4")?;
                let mut keys = Vec::with_capacity(count.min(8) as usize);
                for _ in 0..count {
                    let klen = p.u16("Security Key length")? as usize;
                    keys.push(p.bytes(klen, "Security Key material")?.to_vec());
                }
                LcafBody::SecurityKey(SecurityKey {
                    rsvd3,
                    cipher_suite,
                    rsvd4,
                    keys,
                    locator: Address::parse(p, d)?,
                })
            }
            SOURCE_DEST_KEY => LcafBody::SourceDest(SourceDest {
                reserved: p.u16("Source/Dest reserved")?,
                source_mask_len: p.u8("Source/Dest source mask-len")?,
                dest_mask_len: p.u8("Source/Dest dest mask-len")?,
                source: Address::parse(p, d)?,
                dest: Address::parse(p, d)?,
            }),
            REPLICATION_LIST => {
                let mut entries = Vec::new();
                while !p.is_empty() {
                    let reserved = p.u16("RLE reserved")?;
                    let rsvd3 = p.u8("RLE Rsvd3")?;
                    let level = p.u8("RLE level")?;
                    let address = Address::parse(p, d)?;
                    let name = if p.peek_u16() == Some(super::address::afi::DISTINGUISHED_NAME) {
                        match Address::parse(p, d)? {
                            Address::Name(n) => Some(n),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    entries.push(RleEntry {
                        reserved,
                        rsvd3,
                        level,
                        address,
                        name,
                    });
                }
                LcafBody::ReplicationList(entries)
            }
            JSON => {
                let jlen = p.u16("JSON length")? as usize;
                let json = p.bytes(jlen, "JSON text")?.to_vec();
                LcafBody::Json {
                    json,
                    address: Address::parse(p, d)?,
                }
            }
            other => LcafBody::Unknown {
                lcaf_type: other,
                payload: p.rest().to_vec(),
            },
        })
    }

    /// Number of bytes [`emit`](Self::emit) writes, AFI included.
    pub fn wire_len(&self) -> usize {
        let pad =
            matches!(&self.body, LcafBody::MulticastInfo(m) if m.lispers_padding) as usize * 2;
        8 + pad + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        let list = |v: &[Address]| v.iter().map(Address::wire_len).sum::<usize>();
        match &self.body {
            LcafBody::AfiList(v) => list(v),
            LcafBody::InstanceId { address, .. } => 4 + address.wire_len(),
            LcafBody::Geo(g) => 12 + g.address.wire_len(),
            LcafBody::NatTraversal(n) => {
                4 + n.global_etr_rloc.wire_len()
                    + n.ms_rloc.wire_len()
                    + n.private_etr_rloc.wire_len()
                    + list(&n.rtr_rlocs)
            }
            LcafBody::MulticastInfo(m) => 8 + m.source.wire_len() + m.group.wire_len(),
            LcafBody::ExplicitLocatorPath(h) => h.iter().map(|h| 2 + h.address.wire_len()).sum(),
            LcafBody::SecurityKey(k) => {
                4 + k.keys.iter().map(|k| 2 + k.len()).sum::<usize>() + k.locator.wire_len()
            }
            LcafBody::SourceDest(sd) => 4 + sd.source.wire_len() + sd.dest.wire_len(),
            LcafBody::ReplicationList(e) => e
                .iter()
                .map(|e| 4 + e.address.wire_len() + e.name.as_ref().map_or(0, |n| n.len() + 3))
                .sum(),
            LcafBody::Json { json, address } => 2 + json.len() + address.wire_len(),
            LcafBody::Unknown { payload, .. } => payload.len(),
        }
    }

    /// Appends the LCAF, AFI 16387 included.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(&super::address::afi::LCAF.to_be_bytes());
        out.extend_from_slice(&[self.rsvd1, self.flags, self.lcaf_type(), self.rsvd2]);
        let len: u16 = fit(self.payload_len(), "LCAF Length")?;
        out.extend_from_slice(&len.to_be_bytes());
        let start = out.len();
        match &self.body {
            LcafBody::AfiList(v) => emit_all(v, out)?,
            LcafBody::InstanceId { iid, address } => {
                out.extend_from_slice(&iid.to_be_bytes());
                address.emit(out)?;
            }
            LcafBody::Geo(g) => {
                if g.lat_degrees > 0x7fff || g.lon_degrees > 0x7fff {
                    return Err(WireError::emit("Geo degrees", "more than 15 bits"));
                }
                let lat = g.lat_degrees | if g.north { 0x8000 } else { 0 };
                let lon = g.lon_degrees | if g.east { 0x8000 } else { 0 };
                out.extend_from_slice(&lat.to_be_bytes());
                out.extend_from_slice(&[g.lat_minutes, g.lat_seconds]);
                out.extend_from_slice(&lon.to_be_bytes());
                out.extend_from_slice(&[g.lon_minutes, g.lon_seconds]);
                out.extend_from_slice(&g.altitude.to_be_bytes());
                g.address.emit(out)?;
            }
            LcafBody::NatTraversal(n) => {
                out.extend_from_slice(&n.ms_port.to_be_bytes());
                out.extend_from_slice(&n.etr_port.to_be_bytes());
                n.global_etr_rloc.emit(out)?;
                n.ms_rloc.emit(out)?;
                n.private_etr_rloc.emit(out)?;
                emit_all(&n.rtr_rlocs, out)?;
            }
            LcafBody::MulticastInfo(m) => {
                if m.lispers_padding {
                    out.extend_from_slice(&[0, 0]);
                }
                out.extend_from_slice(&m.iid.to_be_bytes());
                out.extend_from_slice(&m.reserved.to_be_bytes());
                out.extend_from_slice(&[m.source_mask_len, m.group_mask_len]);
                m.source.emit(out)?;
                m.group.emit(out)?;
            }
            LcafBody::ExplicitLocatorPath(hops) => {
                for h in hops {
                    out.extend_from_slice(&h.flags.to_be_bytes());
                    h.address.emit(out)?;
                }
            }
            LcafBody::SecurityKey(k) => {
                let count: u8 = fit(k.keys.len(), "Security Key count")?;
                out.extend_from_slice(&[count, k.rsvd3, k.cipher_suite, k.rsvd4]);
                for key in &k.keys {
                    let klen: u16 = fit(key.len(), "Security Key length")?;
                    out.extend_from_slice(&klen.to_be_bytes());
                    out.extend_from_slice(key);
                }
                k.locator.emit(out)?;
            }
            LcafBody::SourceDest(sd) => {
                out.extend_from_slice(&sd.reserved.to_be_bytes());
                out.extend_from_slice(&[sd.source_mask_len, sd.dest_mask_len]);
                sd.source.emit(out)?;
                sd.dest.emit(out)?;
            }
            LcafBody::ReplicationList(entries) => {
                for e in entries {
                    out.extend_from_slice(&e.reserved.to_be_bytes());
                    out.extend_from_slice(&[e.rsvd3, e.level]);
                    e.address.emit(out)?;
                    if let Some(n) = &e.name {
                        Address::Name(n.clone()).emit(out)?;
                    }
                }
            }
            LcafBody::Json { json, address } => {
                let jlen: u16 = fit(json.len(), "JSON length")?;
                out.extend_from_slice(&jlen.to_be_bytes());
                out.extend_from_slice(json);
                address.emit(out)?;
            }
            LcafBody::Unknown { payload, .. } => out.extend_from_slice(payload),
        }
        debug_assert_eq!(
            out.len() - start,
            self.wire_len() - 8,
            "LCAF payload length mismatch"
        );
        Ok(())
    }

    /// The IP address inside an Instance-ID LCAF or an AFI List (its first IP item).
    pub fn inner_ip(&self) -> Option<IpAddr> {
        match &self.body {
            LcafBody::InstanceId { address, .. } => address.ip(),
            LcafBody::AfiList(items) => items.iter().find_map(Address::ip),
            LcafBody::SecurityKey(k) => k.locator.ip(),
            _ => None,
        }
    }

    /// The Instance-ID of a type 2 or type 9 LCAF.
    pub fn instance_id(&self) -> Option<u32> {
        match &self.body {
            LcafBody::InstanceId { iid, .. } => Some(*iid),
            LcafBody::MulticastInfo(m) => Some(m.iid),
            _ => None,
        }
    }
}

fn emit_all(v: &[Address], out: &mut Vec<u8>) -> Result<()> {
    v.iter().try_for_each(|a| a.emit(out))
}

impl MulticastInfo {
    fn parse_fields(p: &mut Reader<'_>, d: usize, lispers_padding: bool) -> Result<MulticastInfo> {
        let iid = p.u32("Multicast-Info Instance-ID")?;
        let reserved = p.u16("Multicast-Info reserved")?;
        let source_mask_len = p.u8("Multicast-Info source mask-len")?;
        let group_mask_len = p.u8("Multicast-Info group mask-len")?;
        let source = Self::member(p, d, "Multicast-Info source AFI")?;
        let group = Self::member(p, d, "Multicast-Info group AFI")?;
        p.finish("Multicast-Info")?;
        Ok(MulticastInfo {
            iid,
            reserved,
            source_mask_len,
            group_mask_len,
            source,
            group,
            lispers_padding,
        })
    }

    fn member(p: &mut Reader<'_>, d: usize, field: &'static str) -> Result<Address> {
        let a = Address::parse(p, d)?;
        if let Address::Unknown { afi, .. } = a {
            return Err(p.invalid(field, format!("AFI {afi} is not an address family")));
        }
        Ok(a)
    }

    /// Parses the RFC 8060 layout; if that fails and the payload starts with two zero bytes
    /// and two more bytes are there, parses lispers.net's padded layout (PROTOCOL.md §3.11).
    fn parse_lenient(r: &mut Reader<'_>, len: usize, d: usize) -> Result<LcafBody> {
        let mut probe = r.clone();
        let rfc = probe
            .sub(len, "Multicast-Info payload")
            .and_then(|mut p| Self::parse_fields(&mut p, d, false));
        match rfc {
            Ok(m) => {
                *r = probe;
                Ok(LcafBody::MulticastInfo(m))
            }
            Err(e) => {
                if r.peek(2) != Some(&[0, 0]) || r.remaining() < len + 2 {
                    return Err(e);
                }
                let mut p = r.clone().sub(len + 2, "Multicast-Info payload")?;
                p.u16("Multicast-Info lispers padding")?;
                match Self::parse_fields(&mut p, d, true) {
                    Ok(m) => {
                        r.bytes(len + 2, "Multicast-Info payload")?;
                        Ok(LcafBody::MulticastInfo(m))
                    }
                    Err(_) => Err(e),
                }
            }
        }
    }
}

impl fmt::Display for Lcaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[Address]| {
            v.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.body {
            LcafBody::AfiList(v) => write!(f, "afi-list({})", join(v)),
            LcafBody::InstanceId { iid, address } => write!(f, "[{iid}]{address}"),
            LcafBody::Geo(g) => write!(
                f,
                "geo({}-{}-{}-{}-{}-{}-{}-{}, alt {}, {})",
                g.lat_degrees,
                g.lat_minutes,
                g.lat_seconds,
                if g.north { 'N' } else { 'S' },
                g.lon_degrees,
                g.lon_minutes,
                g.lon_seconds,
                if g.east { 'E' } else { 'W' },
                g.altitude,
                g.address
            ),
            LcafBody::NatTraversal(n) => write!(
                f,
                "nat(ms-port {}, etr-port {}, global-etr {}, ms {}, private-etr {}, rtrs [{}])",
                n.ms_port,
                n.etr_port,
                n.global_etr_rloc,
                n.ms_rloc,
                n.private_etr_rloc,
                join(&n.rtr_rlocs)
            ),
            LcafBody::MulticastInfo(m) => write!(
                f,
                "[{}]({}/{}, {}/{}){}",
                m.iid,
                m.source,
                m.source_mask_len,
                m.group,
                m.group_mask_len,
                if m.lispers_padding {
                    " lispers-padded"
                } else {
                    ""
                }
            ),
            LcafBody::ExplicitLocatorPath(h) => {
                let hops: Vec<String> = h
                    .iter()
                    .map(|h| {
                        let letters: String = [
                            (ElpHop::LOOKUP, 'l'),
                            (ElpHop::PROBE, 'p'),
                            (ElpHop::STRICT, 's'),
                        ]
                        .iter()
                        .filter(|(bit, _)| h.flags & bit != 0)
                        .map(|(_, c)| *c)
                        .collect();
                        if letters.is_empty() {
                            h.address.to_string()
                        } else {
                            format!("{}({letters})", h.address)
                        }
                    })
                    .collect();
                write!(f, "elp({})", hops.join(" -> "))
            }
            LcafBody::SecurityKey(k) => write!(
                f,
                "security-key(cipher-suite {}, {} key(s) of {} bytes{}, locator {})",
                k.cipher_suite,
                k.keys.len(),
                k.keys
                    .iter()
                    .map(|k| k.len().to_string())
                    .collect::<Vec<_>>()
                    .join("/"),
                if k.rsvd4 & SecurityKey::REVOKE != 0 {
                    ", revoke"
                } else {
                    ""
                },
                k.locator
            ),
            LcafBody::SourceDest(sd) => write!(
                f,
                "({}/{}, {}/{})",
                sd.source, sd.source_mask_len, sd.dest, sd.dest_mask_len
            ),
            LcafBody::ReplicationList(e) => {
                let items: Vec<String> = e
                    .iter()
                    .map(|e| match &e.name {
                        Some(n) => format!(
                            "{}({}) level {}",
                            e.address,
                            String::from_utf8_lossy(n),
                            e.level
                        ),
                        None => format!("{} level {}", e.address, e.level),
                    })
                    .collect();
                write!(f, "rle({})", items.join(", "))
            }
            LcafBody::Json { json, address } => {
                write!(f, "json({}", String::from_utf8_lossy(json))?;
                if !matches!(address, Address::None) {
                    write!(f, ", {address}")?;
                }
                f.write_str(")")
            }
            LcafBody::Unknown { lcaf_type, payload } => {
                write!(f, "lcaf-type-{lcaf_type}({})", hex::encode(payload))
            }
        }
    }
}
