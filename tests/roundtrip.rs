//! Round trips: parse(emit(m)) == m for every message type and every LCAF type.

mod common;

use common::*;
use lisp_decent::wire::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn control_messages(m in message()) {
        let bytes = m.to_bytes().unwrap();
        let back = ControlMessage::parse(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn every_lcaf_type(l in lcaf()) {
        let a = Address::Lcaf(Box::new(l));
        let mut out = Vec::new();
        a.emit(&mut out).unwrap();
        prop_assert_eq!(out.len(), a.wire_len());
        let mut r = Reader::new(&out);
        prop_assert_eq!(Address::parse(&mut r, 0).unwrap(), a);
        prop_assert!(r.is_empty());
    }

    #[test]
    fn eid_records_in_a_map_reply(recs in proptest::collection::vec(eid_record(), 1..4), nonce: [u8; 8]) {
        let m = ControlMessage::MapReply(MapReply::new(nonce, recs));
        prop_assert_eq!(ControlMessage::parse(&m.to_bytes().unwrap()).unwrap(), m);
    }

    #[test]
    fn data_headers(h in data_header()) {
        let mut b = [0u8; 8];
        h.emit(&mut b).unwrap();
        prop_assert_eq!(DataHeader::parse(&b).unwrap(), h);
    }

    #[test]
    fn inner_ip_udp(h in ip_udp(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut out = Vec::new();
        h.emit(&payload, &mut out).unwrap();
        let mut r = Reader::new(&out);
        let (back, mut body) = IpUdp::parse(&mut r).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(body.rest(), &payload[..]);
    }
}

#[test]
fn data_header_fields() {
    let h = DataHeader::parse(&[0x81, 0x56, 0x57, 0x6e, 0, 0, 0, 0]).unwrap();
    assert_eq!(
        (h.has(DataHeader::N), h.key_id, h.nonce, h.instance_id()),
        (true, 1, 0x56576e, None)
    );
    let h = DataHeader::parse(&[0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0x00]).unwrap();
    assert_eq!(h.instance_id(), Some(CONTROL_INSTANCE_ID));
    let h = DataHeader::with_instance(7, 0x123456, 2);
    let mut b = [0u8; 8];
    h.emit(&mut b).unwrap();
    assert_eq!(b, [0x8a, 0x12, 0x34, 0x56, 0, 0, 7, 0]);
    let h = DataHeader::parse(&[0x48, 0, 0, 0, 0, 0, 9, 0x05]).unwrap();
    assert_eq!((h.instance_id(), h.lsbs()), (Some(9), Some(5)));
    assert!(DataHeader::parse(&[0; 7]).is_err());
    assert!(h.emit(&mut [0u8; 7]).is_err());
}

#[test]
fn unknown_lcaf_type_is_kept_and_the_message_survives() {
    // A Map-Reply whose RLOC is an AFI List holding an LCAF of type 17 (which crashes OOR)
    // and then an IPv4 address: the message parses, the type-17 LCAF is kept opaque, the
    // address after it is still read, and the message re-emits unchanged.
    let rloc = RlocRecord {
        priority: 1,
        weight: 100,
        m_priority: 0,
        m_weight: 0,
        flags: 5,
        locator: Address::Lcaf(Box::new(Lcaf::new(LcafBody::AfiList(vec![
            Address::Lcaf(Box::new(Lcaf::new(LcafBody::Unknown {
                lcaf_type: 17,
                payload: vec![1, 2, 3],
            }))),
            Address::Ipv4("192.0.2.1".parse().unwrap()),
        ])))),
    };
    let rec = EidRecord::new(
        Address::Ipv4("10.1.1.0".parse().unwrap()),
        24,
        10,
        vec![rloc],
    );
    let bytes = ControlMessage::MapReply(MapReply::new([1; 8], vec![rec]))
        .to_bytes()
        .unwrap();
    let parsed = ControlMessage::parse(&bytes).unwrap();
    let ControlMessage::MapReply(r) = &parsed else {
        panic!()
    };
    assert_eq!(
        r.records[0].rlocs[0].locator.ip(),
        Some("192.0.2.1".parse().unwrap())
    );
    assert_eq!(parsed.to_bytes().unwrap(), bytes);
}

#[test]
fn unknown_afi_at_the_end_of_an_afi_list_is_kept() {
    let a = Address::Lcaf(Box::new(Lcaf::new(LcafBody::AfiList(vec![
        Address::Ipv4("192.0.2.9".parse().unwrap()),
        Address::Unknown {
            afi: 8,
            bytes: vec![0x31, 0x32],
        },
    ]))));
    let mut out = Vec::new();
    a.emit(&mut out).unwrap();
    assert_eq!(Address::parse(&mut Reader::new(&out), 0).unwrap(), a);
}
