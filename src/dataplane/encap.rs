//! LISP data encapsulation (RFC 9300 §5): the clear header and inner packet, the outer
//! header fields copied from the inner packet, and the overhead of the tunnel. Buffers are
//! the caller's, so the steady state allocates nothing.

use std::net::IpAddr;

use crate::crypto::lisp_crypto::CipherSuite;
use crate::wire::DataHeader;
use crate::wire::ip::IpPacket;

/// Appends a clear LISP data packet to `out`: the header `hdr` (RFC 9300 §5.3), then the
/// inner packet (the data plane builds its GSO batches so).
pub fn append_clear(out: &mut Vec<u8>, hdr: DataHeader, inner: &[u8]) {
    let mut h = [0u8; DataHeader::LEN];
    // An 8-byte array always takes the header.
    let _ = hdr.emit(&mut h);
    out.reserve(DataHeader::LEN + inner.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(inner);
}

/// The outer TTL / hop limit and TOS / traffic class of a LISP data packet, copied from the
/// inner packet (RFC 9300 §5.3; ECN in RFC 6040 normal mode): (64, 0) when the inner packet
/// is not IPv4 / IPv6. The outer UDP source port comes from the flow hash, so the underlay's
/// ECMP spreads flows; the node's sockets set all three.
pub fn outer_ttl_tos(inner: &[u8]) -> (u8, u8) {
    IpPacket::new_checked(inner).map_or((64, 0), |ip| outer_ttl_tos_of(&ip))
}

/// [`outer_ttl_tos`] of a packet already checked (TTL 0 would be dropped at once: 1).
pub fn outer_ttl_tos_of<T: AsRef<[u8]>>(ip: &IpPacket<T>) -> (u8, u8) {
    (ip.ttl().max(1), ip.tos())
}

/// Bytes the encapsulation adds to an inner packet (RFC 9300 §5.1; RFC 8061 §6): the outer
/// IPv4 (20) or IPv6 (40) header, UDP (8), the LISP header (8) and, when the packet is
/// encrypted, the suite's IV and tag. The one place the tunnel's overhead is computed.
pub fn overhead(outer_ipv6: bool, suite: Option<CipherSuite>) -> usize {
    let outer = if outer_ipv6 { 40 } else { 20 };
    outer + 8 + DataHeader::LEN + suite.map_or(0, CipherSuite::overhead)
}

/// The largest overhead of an RFC 8061 suite over an IPv6 underlay (84 bytes): what the
/// default TUN MTU leaves room for (1416 on a 1500-byte underlay). lispers.net's own suite
/// pads to 16 bytes on top; its packets are checked one by one.
pub const MAX_OVERHEAD: usize = 40 + 8 + DataHeader::LEN + 12 + 16;

/// Whether `a` can be a unicast EID an ITR looks up (RFC 9300 §4: an EID is a unicast address;
/// multicast, broadcast, link-local and unspecified destinations never leave the site
/// through the map-cache).
pub fn is_unicast_eid(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            !(v.is_multicast() || v.is_broadcast() || v.is_link_local() || v.is_unspecified())
        }
        IpAddr::V6(v) => !(v.is_multicast() || v.is_unicast_link_local() || v.is_unspecified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unicast_destinations_are_looked_up() {
        for a in ["10.1.2.3", "2001:db8::1", "192.0.2.1"] {
            assert!(is_unicast_eid(a.parse().unwrap()), "{a}");
        }
        for a in [
            "ff02::2",
            "fe80::1",
            "::",
            "224.0.0.251",
            "255.255.255.255",
            "169.254.1.1",
            "0.0.0.0",
        ] {
            assert!(!is_unicast_eid(a.parse().unwrap()), "{a}");
        }
    }

    fn ping(dst: [u8; 4]) -> Vec<u8> {
        let mut p = hex::decode("4500001c00000000400100000a020001").unwrap();
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn outer_ttl_and_tos_are_the_inner_ones() {
        let mut inner = ping([10, 3, 0, 1]);
        inner[8] = 17;
        inner[1] = 0xb9;
        assert_eq!(outer_ttl_tos(&inner), (17, 0xb9));
        // IPv6: hop limit and traffic class (split over the first two bytes).
        let mut v6 = vec![0x6b, 0x90, 0, 0, 0, 8, 17, 9];
        v6.extend_from_slice(&[0xfd; 32]);
        assert_eq!(outer_ttl_tos(&v6), (9, 0xb9));
        // TTL 0 would be dropped at once; something not IP gets the defaults.
        inner[8] = 0;
        assert_eq!(outer_ttl_tos(&inner).0, 1);
        assert_eq!(outer_ttl_tos(&[0x00; 30]), (64, 0));
    }
}
