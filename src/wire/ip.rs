//! A checked, zero-copy view of the inner IPv4 / IPv6 packet a LISP data packet carries
//! (RFC 9300 §5.1: the inner header is the host's own IPv4 or IPv6 header), in smoltcp's
//! `Packet<T: AsRef<[u8]>>` + `new_checked` style: the constructor checks the lengths once,
//! so every accessor after it reads in bounds and none can panic.
//!
//! ```text
//! IPv4 (RFC 791 §3.1)                      IPv6 (RFC 8200 §3)
//!  0       4       8               16      0       4       12              31
//! +-------+-------+---------------+------ +-------+---------------+----------+
//! |Version|  IHL  |     TOS       | ...   |Version| Traffic Class | Flow ... |
//! |  Identification | Flags|Fragment Off  | Payload Length | Next Hdr | Hop   |
//! |  TTL  | Protocol | Header Checksum    | Source Address (16 bytes)        |
//! | Source Address | Destination Address  | Destination Address (16 bytes)   |
//! ```
//!
//! Used by the flow hash, the ITR's map-cache lookup (the destination), the outer TTL / TOS
//! (RFC 9300 §5.3) and the ICMP errors of the tunnel (RFC 9300 §7.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP, UDP and SCTP: the transports whose first four bytes are the two ports.
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
/// ICMP and ICMPv6.
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// Why bytes are not an inner IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpError {
    /// The version nibble is neither 4 nor 6.
    Version,
    /// Shorter than the fixed header, or than the IPv4 header length says.
    Truncated,
    /// An IPv4 header length under 5 words.
    HeaderLength,
}

/// A checked view of an IPv4 or IPv6 packet: at least the fixed header is present (for
/// IPv4, all of the IHL words).
#[derive(Debug, Clone, Copy)]
pub struct IpPacket<T: AsRef<[u8]>> {
    buf: T,
    /// 4 or 6.
    version: u8,
    /// Where the transport header starts (IPv4: IHL * 4; IPv6: 40, extension headers are
    /// not walked).
    header_len: usize,
}

impl<T: AsRef<[u8]>> IpPacket<T> {
    /// Checks that `buf` holds an IPv4 header (IHL words) or an IPv6 fixed header.
    pub fn new_checked(buf: T) -> Result<Self, IpError> {
        let b = buf.as_ref();
        let first = *b.first().ok_or(IpError::Truncated)?;
        let (version, header_len) = match first >> 4 {
            4 => {
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 {
                    return Err(IpError::HeaderLength);
                }
                (4, ihl)
            }
            6 => (6, 40),
            _ => return Err(IpError::Version),
        };
        if b.len() < header_len {
            return Err(IpError::Truncated);
        }
        Ok(IpPacket {
            buf,
            version,
            header_len,
        })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.b()
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn is_ipv4(&self) -> bool {
        self.version == 4
    }

    /// Bytes of the IP header (IPv6: the fixed header only).
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    #[inline]
    pub fn source(&self) -> IpAddr {
        let b = self.b();
        if self.is_ipv4() {
            IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15]))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    #[inline]
    pub fn destination(&self) -> IpAddr {
        let b = self.b();
        if self.is_ipv4() {
            IpAddr::V4(Ipv4Addr::new(b[16], b[17], b[18], b[19]))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[24..40]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }

    /// The IPv4 protocol or the IPv6 next header.
    pub fn protocol(&self) -> u8 {
        if self.is_ipv4() {
            self.b()[9]
        } else {
            self.b()[6]
        }
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn ttl(&self) -> u8 {
        if self.is_ipv4() {
            self.b()[8]
        } else {
            self.b()[7]
        }
    }

    /// IPv4 TOS or IPv6 traffic class (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        let b = self.b();
        if self.is_ipv4() {
            b[1]
        } else {
            (b[0] << 4) | (b[1] >> 4)
        }
    }

    /// IPv4 Don't Fragment. IPv6 packets are never fragmented on the way (RFC 8200 §5).
    pub fn dont_fragment(&self) -> bool {
        !self.is_ipv4() || self.b()[6] & 0x40 != 0
    }

    /// An IPv4 fragment (a non-zero offset or More Fragments): only the first one carries
    /// the ports.
    pub fn is_fragment(&self) -> bool {
        self.is_ipv4() && u16::from_be_bytes([self.b()[6], self.b()[7]]) & 0x3fff != 0
    }

    /// What follows the header (IPv6: the fixed header).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len..]
    }

    /// The source and destination ports of an unfragmented TCP, UDP or SCTP packet.
    pub fn ports(&self) -> Option<(u16, u16)> {
        if !matches!(self.protocol(), TCP | UDP | SCTP) || self.is_fragment() {
            return None;
        }
        let p = self.payload().get(..4)?;
        Some((
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ))
    }

    /// An ICMP error message (destination unreachable, time exceeded, parameter problem...):
    /// never answered with another error (RFC 1122 §3.2.2, RFC 4443 §2.4).
    pub fn is_icmp_error(&self) -> bool {
        let first = self.payload().first().copied();
        if self.is_ipv4() {
            self.protocol() == ICMP && first.is_some_and(|t| matches!(t, 3 | 4 | 5 | 11 | 12))
        } else {
            self.protocol() == ICMPV6 && first.is_some_and(|t| t < 128)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut p = hex::decode("45b90028000040001100000ac0000201c0000202").unwrap();
        p[9] = proto;
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn ipv4_fields() {
        let p = v4(UDP, &[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let ip = IpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(ip.source().to_string(), "192.0.2.1");
        assert_eq!(ip.destination().to_string(), "192.0.2.2");
        assert_eq!((ip.ttl(), ip.tos(), ip.protocol()), (0x11, 0xb9, UDP));
        assert!(ip.dont_fragment());
        assert_eq!(ip.ports(), Some((5000, 53)));
        assert_eq!(ip.payload().len(), 8);
        // A fragment after the first has no ports; ICMP has none either.
        let mut frag = p.clone();
        frag[7] = 10;
        assert_eq!(IpPacket::new_checked(&frag[..]).unwrap().ports(), None);
        let icmp = v4(ICMP, &[3, 4, 0, 0]);
        let ip = IpPacket::new_checked(&icmp[..]).unwrap();
        assert_eq!(ip.ports(), None);
        assert!(ip.is_icmp_error());
        assert!(
            !IpPacket::new_checked(&v4(ICMP, &[8, 0])[..])
                .unwrap()
                .is_icmp_error()
        );
        // Options: the transport starts after IHL words.
        let mut opts = p.clone();
        opts[0] = 0x46;
        opts.splice(20..20, [1, 1, 1, 0]);
        let ip = IpPacket::new_checked(&opts[..]).unwrap();
        assert_eq!(ip.header_len(), 24);
        assert_eq!(ip.ports(), Some((5000, 53)));
    }

    #[test]
    fn ipv6_fields() {
        let mut p = vec![0x6b, 0x90, 0, 0, 0, 8, UDP, 9];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let ip = IpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(ip.source().to_string(), "2001:db8::1");
        assert_eq!(ip.destination().to_string(), "2001:db8::2");
        assert_eq!((ip.ttl(), ip.tos()), (9, 0xb9));
        assert_eq!(ip.ports(), Some((5000, 53)));
        assert!(ip.dont_fragment() && !ip.is_fragment());
    }

    #[test]
    fn short_or_foreign_bytes_are_refused() {
        assert_eq!(
            IpPacket::new_checked(&[][..]).unwrap_err(),
            IpError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x45; 19][..]).unwrap_err(),
            IpError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x44; 40][..]).unwrap_err(),
            IpError::HeaderLength
        );
        assert_eq!(
            IpPacket::new_checked(&[0x4f; 59][..]).unwrap_err(),
            IpError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x60; 39][..]).unwrap_err(),
            IpError::Truncated
        );
        assert_eq!(
            IpPacket::new_checked(&[0x50; 60][..]).unwrap_err(),
            IpError::Version
        );
    }
}
