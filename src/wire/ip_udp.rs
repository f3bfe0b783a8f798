//! The inner IPv4 or IPv6 header plus UDP header that an Encapsulated Control Message carries
//! (RFC 9301 §5.8), and that LISP-Decent head-end replication puts inside a LISP data packet
//! with Instance-ID 0xFFFFFF (RFC 9962 §4).
//!
//! Lengths are derived from the payload when emitting; checksums are recorded as
//! [`Checksum::Valid`] when they verified, so a parsed header re-emits the same bytes and a
//! built one gets correct checksums.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cursor::{Reader, fit};
use super::error::{Result, WireError};

/// How a checksum field was found, and will be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// Zero on the wire (UDP over IPv4: no checksum).
    Zero,
    /// Correct for the contents; recomputed on emit.
    Valid,
    /// Some other value, kept as it came.
    Other(u16),
}

/// IPv4 (RFC 791) or IPv6 (RFC 8200) header fields that are not derived from the payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InnerIp {
    V4 {
        tos: u8,
        identification: u16,
        /// Flags (DF 0x4000, MF 0x2000) and fragment offset.
        flags_fragment: u16,
        ttl: u8,
        checksum: Checksum,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        options: Vec<u8>,
    },
    V6 {
        traffic_class: u8,
        flow_label: u32,
        hop_limit: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

/// An IP header followed by a UDP header (RFC 768).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IpUdp {
    pub ip: InnerIp,
    pub sport: u16,
    pub dport: u16,
    pub udp_checksum: Checksum,
}

const UDP: u8 = 17;

/// RFC 1071 one's complement sum of 16-bit words.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

impl InnerIp {
    pub fn src(&self) -> IpAddr {
        match self {
            InnerIp::V4 { src, .. } => IpAddr::V4(*src),
            InnerIp::V6 { src, .. } => IpAddr::V6(*src),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            InnerIp::V4 { dst, .. } => IpAddr::V4(*dst),
            InnerIp::V6 { dst, .. } => IpAddr::V6(*dst),
        }
    }

    pub fn ttl(&self) -> u8 {
        match self {
            InnerIp::V4 { ttl, .. } => *ttl,
            InnerIp::V6 { hop_limit, .. } => *hop_limit,
        }
    }

    fn header_len(&self) -> usize {
        match self {
            InnerIp::V4 { options, .. } => 20 + options.len(),
            InnerIp::V6 { .. } => 40,
        }
    }

    fn pseudo_sum(&self, udp_len: usize) -> u32 {
        let base = u32::from(UDP) + udp_len as u32;
        match self {
            InnerIp::V4 { src, dst, .. } => sum16(sum16(base, &src.octets()), &dst.octets()),
            InnerIp::V6 { src, dst, .. } => sum16(sum16(base, &src.octets()), &dst.octets()),
        }
    }
}

impl IpUdp {
    /// A header with fresh defaults (no DF, checksums computed) for the given addresses.
    pub fn new(src: IpAddr, dst: IpAddr, ttl: u8, sport: u16, dport: u16) -> Result<IpUdp> {
        let ip = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => InnerIp::V4 {
                tos: 0,
                identification: 0,
                flags_fragment: 0,
                ttl,
                checksum: Checksum::Valid,
                src,
                dst,
                options: Vec::new(),
            },
            (IpAddr::V6(src), IpAddr::V6(dst)) => InnerIp::V6 {
                traffic_class: 0,
                flow_label: 0,
                hop_limit: ttl,
                src,
                dst,
            },
            _ => {
                return Err(WireError::emit(
                    "inner IP header",
                    "source and destination differ in family",
                ));
            }
        };
        Ok(IpUdp {
            ip,
            sport,
            dport,
            udp_checksum: Checksum::Valid,
        })
    }

    /// Parses the headers and returns them with the UDP payload.
    pub fn parse<'a>(r: &mut Reader<'a>) -> Result<(IpUdp, Reader<'a>)> {
        let start = r.offset();
        let first = r.peek(1).map(|b| b[0] >> 4);
        let (ip, mut body) = match first {
            Some(4) => {
                let hdr_start = r.clone();
                let vihl = r.u8("inner IPv4 version/IHL")?;
                let ihl = usize::from(vihl & 0xf) * 4;
                if ihl < 20 {
                    return Err(r.invalid_at(
                        1,
                        "inner IPv4 IHL",
                        format!("{ihl} bytes is shorter than 20"),
                    ));
                }
                let tos = r.u8("inner IPv4 TOS")?;
                let total = r.u16("inner IPv4 total length")? as usize;
                let identification = r.u16("inner IPv4 identification")?;
                let flags_fragment = r.u16("inner IPv4 flags/fragment")?;
                let ttl = r.u8("inner IPv4 TTL")?;
                let proto = r.u8("inner IPv4 protocol")?;
                if proto != UDP {
                    return Err(r.invalid_at(
                        1,
                        "inner IPv4 protocol",
                        format!("{proto} is not UDP"),
                    ));
                }
                let raw_ck = r.u16("inner IPv4 header checksum")?;
                let src = Ipv4Addr::from(r.array::<4>("inner IPv4 source")?);
                let dst = Ipv4Addr::from(r.array::<4>("inner IPv4 destination")?);
                let options = r.bytes(ihl - 20, "inner IPv4 options")?.to_vec();
                let hdr = hdr_start.peek(ihl).unwrap_or_default();
                let checksum = if fold(sum16(0, hdr)) == 0 {
                    Checksum::Valid
                } else {
                    Checksum::Other(raw_ck)
                };
                if total < ihl + 8 {
                    return Err(WireError::Invalid {
                        field: "inner IPv4 total length",
                        offset: start + 2,
                        reason: format!("{total} leaves no room for a UDP header"),
                    });
                }
                let body = r.sub(total - ihl, "inner IPv4 payload")?;
                let ip = InnerIp::V4 {
                    tos,
                    identification,
                    flags_fragment,
                    ttl,
                    checksum,
                    src,
                    dst,
                    options,
                };
                (ip, body)
            }
            Some(6) => {
                let w = r.u32("inner IPv6 version/class/flow")?;
                let plen = r.u16("inner IPv6 payload length")? as usize;
                let next = r.u8("inner IPv6 next header")?;
                if next != UDP {
                    return Err(r.invalid_at(
                        1,
                        "inner IPv6 next header",
                        format!("{next} is not UDP"),
                    ));
                }
                let hop_limit = r.u8("inner IPv6 hop limit")?;
                let src = Ipv6Addr::from(r.array::<16>("inner IPv6 source")?);
                let dst = Ipv6Addr::from(r.array::<16>("inner IPv6 destination")?);
                let ip = InnerIp::V6 {
                    traffic_class: (w >> 20) as u8,
                    flow_label: w & 0x000f_ffff,
                    hop_limit,
                    src,
                    dst,
                };
                (ip, r.sub(plen, "inner IPv6 payload")?)
            }
            Some(v) => return Err(r.invalid("inner IP version", format!("{v} is neither 4 nor 6"))),
            None => {
                return Err(WireError::Truncated {
                    field: "inner IP header",
                    offset: start,
                    need: 20,
                    have: 0,
                });
            }
        };
        let udp_start = body.clone();
        let sport = body.u16("inner UDP source port")?;
        let dport = body.u16("inner UDP destination port")?;
        let ulen = body.u16("inner UDP length")? as usize;
        let raw_ck = body.u16("inner UDP checksum")?;
        if ulen != body.remaining() + 8 {
            return Err(body.invalid_at(
                4,
                "inner UDP length",
                format!(
                    "{ulen} disagrees with the IP payload length {}",
                    body.remaining() + 8
                ),
            ));
        }
        let udp_checksum = if raw_ck == 0 {
            Checksum::Zero
        } else {
            let all = udp_start.peek(ulen).unwrap_or_default();
            if fold(sum16(ip.pseudo_sum(ulen), all)) == 0 {
                Checksum::Valid
            } else {
                Checksum::Other(raw_ck)
            }
        };
        let payload = body.sub(ulen - 8, "inner UDP payload")?;
        Ok((
            IpUdp {
                ip,
                sport,
                dport,
                udp_checksum,
            },
            payload,
        ))
    }

    /// Appends the headers and `payload`, filling in lengths and checksums.
    pub fn emit(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let udp_len = payload.len() + 8;
        let udp_len16: u16 = fit(udp_len, "inner UDP length")?;
        match &self.ip {
            InnerIp::V4 {
                tos,
                identification,
                flags_fragment,
                ttl,
                checksum: _,
                src,
                dst,
                options,
            } => {
                if options.len() % 4 != 0 || options.len() > 40 {
                    return Err(WireError::emit(
                        "inner IPv4 options",
                        "must be a multiple of 4, at most 40 bytes",
                    ));
                }
                let ihl = self.ip.header_len();
                let total: u16 = fit(ihl + udp_len, "inner IPv4 total length")?;
                out.push(0x40 | (ihl / 4) as u8);
                out.push(*tos);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&identification.to_be_bytes());
                out.extend_from_slice(&flags_fragment.to_be_bytes());
                out.extend_from_slice(&[*ttl, UDP, 0, 0]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                out.extend_from_slice(options);
            }
            InnerIp::V6 {
                traffic_class,
                flow_label,
                hop_limit,
                src,
                dst,
            } => {
                let w =
                    (6u32 << 28) | (u32::from(*traffic_class) << 20) | (flow_label & 0x000f_ffff);
                out.extend_from_slice(&w.to_be_bytes());
                out.extend_from_slice(&udp_len16.to_be_bytes());
                out.extend_from_slice(&[UDP, *hop_limit]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
            }
        }
        if let InnerIp::V4 { checksum, .. } = &self.ip {
            let v = match checksum {
                Checksum::Valid => fold(sum16(0, &out[start..])),
                Checksum::Zero => 0,
                Checksum::Other(v) => *v,
            };
            out[start + 10..start + 12].copy_from_slice(&v.to_be_bytes());
        }
        let udp_start = out.len();
        out.extend_from_slice(&self.sport.to_be_bytes());
        out.extend_from_slice(&self.dport.to_be_bytes());
        out.extend_from_slice(&udp_len16.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
        let ck = match self.udp_checksum {
            Checksum::Zero => 0,
            Checksum::Other(v) => v,
            Checksum::Valid => match fold(sum16(self.ip.pseudo_sum(udp_len), &out[udp_start..])) {
                0 => 0xffff,
                v => v,
            },
        };
        out[udp_start + 6..udp_start + 8].copy_from_slice(&ck.to_be_bytes());
        Ok(())
    }
}
