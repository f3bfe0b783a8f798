//! LISP data encapsulation and decapsulation (RFC 9300 §5, §7), and the outer header fields
//! copied from the inner packet. Buffers are the caller's, so
//! the steady state allocates nothing.

use std::net::IpAddr;

use crate::mapping::{EidPrefix, PrefixTable};
use crate::wire::{CONTROL_INSTANCE_ID, DataHeader};

/// Writes the LISP header (N bit with `nonce`, I bit with `iid`, K bits `key_id`) and the
/// inner packet into `out`, replacing what it held.
pub fn encapsulate(out: &mut Vec<u8>, iid: u32, nonce: u32, key_id: u8, inner: &[u8]) {
    out.clear();
    out.reserve(DataHeader::LEN + inner.len());
    let mut h = [0u8; DataHeader::LEN];
    // An 8-byte array always takes the header.
    let _ = DataHeader::with_instance(iid, nonce, key_id).emit(&mut h);
    out.extend_from_slice(&h);
    out.extend_from_slice(inner);
}

/// The outer TTL / hop limit and TOS / traffic class of a LISP data packet, copied from the
/// inner packet (RFC 9300 §5.3; ECN in RFC 6040 normal mode): (64, 0) when the inner packet
/// is not IPv4 / IPv6. The outer UDP source port comes from the flow hash, so the underlay's
/// ECMP spreads flows; the node's sockets set all three.
pub fn outer_ttl_tos(inner: &[u8]) -> (u8, u8) {
    let (ttl, tos) = match inner.first().map(|b| b >> 4) {
        Some(4) if inner.len() >= 20 => (inner[8], inner[1]),
        Some(6) if inner.len() >= 40 => (inner[7], (inner[0] << 4) | (inner[1] >> 4)),
        _ => (64, 0),
    };
    (ttl.max(1), tos)
}

/// Why the ETR dropped a packet (each one a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than a LISP header, or the inner packet is not IPv4 / IPv6.
    Malformed,
    /// An Instance-ID we have no EIDs in.
    UnknownInstance,
    /// The inner destination is not one of our EIDs in that Instance-ID.
    NotOurEid,
    /// Encrypted (K bits set) and no key for it (lisp-crypto decides before this).
    Encrypted,
}

/// What to do with a received LISP data packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Decapsulated<'a> {
    /// Hand the inner packet to the TUN device of this Instance-ID.
    Deliver {
        iid: u32,
        packet: &'a [u8],
    },
    /// Instance-ID 0xFFFFFF: control carried in data (LISP-Decent replication) for the
    /// control plane; never decrypted, never delivered to a TUN.
    Control {
        payload: &'a [u8],
    },
    Drop(DropReason),
}

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

/// The destination address of an IPv4 or IPv6 packet.
pub fn inner_destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => {
            let d: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        6 => {
            let d: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            Some(IpAddr::from(d))
        }
        _ => None,
    }
}

/// The ETR's decision for a clear LISP data packet: our EIDs are the database prefixes per
/// Instance-ID.
pub fn decapsulate<'a>(packet: &'a [u8], ours: &PrefixTable<()>) -> Decapsulated<'a> {
    let Ok(h) = DataHeader::parse(packet) else {
        return Decapsulated::Drop(DropReason::Malformed);
    };
    decapsulate_inner(&h, &packet[DataHeader::LEN..], ours)
}

/// The ETR's decision for the inner packet under a header already read (and, for an
/// encrypted packet, after it was decrypted: then its K bits no longer matter).
pub fn decapsulate_inner<'a>(
    h: &DataHeader,
    inner: &'a [u8],
    ours: &PrefixTable<()>,
) -> Decapsulated<'a> {
    // RFC 9300 §5.3: without the I bit the packet belongs to the default Instance-ID 0
    // (lispers.net and OOR send their IID-0 data so).
    let iid = h.instance_id().unwrap_or(0);
    if iid == CONTROL_INSTANCE_ID {
        if h.key_id != 0 {
            return Decapsulated::Drop(DropReason::Encrypted);
        }
        return Decapsulated::Control { payload: inner };
    }
    if h.key_id != 0 {
        return Decapsulated::Drop(DropReason::Encrypted);
    }
    let Some(dst) = inner_destination(inner) else {
        return Decapsulated::Drop(DropReason::Malformed);
    };
    if ours.lookup(iid, dst).is_some() {
        return Decapsulated::Deliver { iid, packet: inner };
    }
    let known_instance = ours.iter().any(|(p, _): (EidPrefix, _)| p.iid == iid);
    Decapsulated::Drop(if known_instance {
        DropReason::NotOurEid
    } else {
        DropReason::UnknownInstance
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> PrefixTable<()> {
        let mut t = PrefixTable::new();
        t.insert(EidPrefix::new(0, "10.1.0.0/16".parse().unwrap()), ());
        t.insert(EidPrefix::new(7, "10.0.0.0/24".parse().unwrap()), ());
        t
    }

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

    #[test]
    fn deliver_only_our_eids_per_instance() {
        let t = ours();
        let mut buf = Vec::new();
        encapsulate(&mut buf, 0, 0x123456, 0, &ping([10, 1, 2, 3]));
        assert_eq!(&buf[..8], &[0x88, 0x12, 0x34, 0x56, 0, 0, 0, 0]);
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Deliver {
                iid: 0,
                packet: &ping([10, 1, 2, 3])[..]
            }
        );
        // The same inner destination in another Instance-ID is not ours.
        encapsulate(&mut buf, 7, 1, 0, &ping([10, 1, 2, 3]));
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Drop(DropReason::NotOurEid)
        );
        encapsulate(&mut buf, 7, 1, 0, &ping([10, 0, 0, 9]));
        assert!(matches!(
            decapsulate(&buf, &t),
            Decapsulated::Deliver { iid: 7, .. }
        ));
        encapsulate(&mut buf, 9, 1, 0, &ping([10, 0, 0, 9]));
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Drop(DropReason::UnknownInstance)
        );
        encapsulate(&mut buf, CONTROL_INSTANCE_ID, 1, 0, b"register");
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Control {
                payload: b"register"
            }
        );
        encapsulate(&mut buf, 0, 1, 1, &ping([10, 1, 2, 3]));
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Drop(DropReason::Encrypted)
        );
        assert_eq!(
            decapsulate(&[0x80, 0, 0], &t),
            Decapsulated::Drop(DropReason::Malformed)
        );
        // No I bit (N only, locator-status-bits 1): Instance-ID 0, like lispers.net's and
        // OOR's data (RFC 9300 §5.3).
        let mut no_i = vec![0x80, 0xab, 0xcd, 0xef, 0, 0, 0, 1];
        no_i.extend_from_slice(&ping([10, 1, 2, 3]));
        assert_eq!(
            decapsulate(&no_i, &t),
            Decapsulated::Deliver {
                iid: 0,
                packet: &ping([10, 1, 2, 3])[..]
            }
        );
        encapsulate(&mut buf, 0, 1, 0, &[0x45, 0, 0]);
        assert_eq!(
            decapsulate(&buf, &t),
            Decapsulated::Drop(DropReason::Malformed)
        );
    }
}
