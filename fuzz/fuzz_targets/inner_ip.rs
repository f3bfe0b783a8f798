//! Any bytes as an inner packet (what a TUN device or a decapsulated datagram hands the data
//! plane): the checked IPv4 / IPv6 view, the flow key, the outer TTL / TOS and the ICMP error
//! for a packet too big. Every accessor after `new_checked` stays in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lisp_decent::dataplane::{FlowKey, encap, icmp};
use lisp_decent::wire::ip::IpPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(ip) = IpPacket::new_checked(data) {
        let _ = (ip.source(), ip.destination(), ip.protocol(), ip.ttl(), ip.tos());
        let _ = (ip.dont_fragment(), ip.is_fragment(), ip.ports(), ip.is_icmp_error());
        assert!(ip.header_len() <= data.len());
        assert_eq!(ip.payload().len(), data.len() - ip.header_len());
        let from = if ip.is_ipv4() {
            "10.0.0.1".parse().unwrap()
        } else {
            "fd00::1".parse().unwrap()
        };
        if let Some(e) = icmp::too_big(data, 1280, from) {
            assert!(IpPacket::new_checked(&e[..]).is_ok());
            assert!(e.len() <= 1280);
        }
    }
    let _ = FlowKey::of(data);
    let _ = encap::outer_ttl_tos(data);
});
