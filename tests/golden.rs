//! Golden vectors: every LISP packet of the real lispers.net and OOR captures in tests/data
//! (copied from shared/vectors) decodes, re-emits to the same bytes, and every Map-Register /
//! Map-Notify authenticates with the key listed in shared/vectors/README.md and fails with a
//! wrong one.

use std::collections::BTreeMap;
use std::path::Path;

use lisp_decent::crypto::auth::{self, AuthError, AuthKey, KeyRing};
use lisp_decent::present::capture::{Datagram, FrameItem, read_capture};
use lisp_decent::wire::*;

fn datagrams(file: &str) -> (Vec<Datagram>, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    let items = read_capture(&path).expect("capture readable");
    let notes = items
        .iter()
        .filter(|i| matches!(i, FrameItem::Note { .. }))
        .count();
    let d = items
        .into_iter()
        .filter_map(|i| match i {
            FrameItem::Lisp(d) => Some(d),
            FrameItem::Note { .. } => None,
        })
        .collect();
    (d, notes)
}

/// Decodes every datagram, checks the re-emission, returns the count of each type.
fn check_file(
    file: &str,
    ring: &KeyRing,
) -> (
    BTreeMap<&'static str, usize>,
    Vec<(Datagram, ControlMessage)>,
) {
    let (ds, _) = datagrams(file);
    let mut counts = BTreeMap::new();
    let mut msgs = Vec::new();
    for d in ds {
        if d.is_data() {
            let h = DataHeader::parse(&d.payload)
                .unwrap_or_else(|e| panic!("{file} frame {}: {e}", d.frame));
            let mut out = [0u8; 8];
            h.emit(&mut out).unwrap();
            assert_eq!(
                &out[..],
                &d.payload[..8],
                "{file} frame {}: data header",
                d.frame
            );
            *counts.entry("data").or_default() += 1;
            continue;
        }
        let m = ControlMessage::parse(&d.payload)
            .unwrap_or_else(|e| panic!("{file} frame {}: {e}", d.frame));
        let again = m.to_bytes().unwrap();
        assert_eq!(
            hex::encode(&again),
            hex::encode(&d.payload),
            "{file} frame {}: re-emit",
            d.frame
        );
        if m.authentication().is_some() {
            assert!(
                ring.verify(&d.payload).is_ok(),
                "{file} frame {}: auth",
                d.frame
            );
            assert_eq!(
                auth::verify(&d.payload, b"not-the-key"),
                Err(AuthError::Mismatch),
                "{file} frame {}: wrong key must fail",
                d.frame
            );
        }
        *counts.entry(m.type_name()).or_default() += 1;
        msgs.push((d, m));
    }
    (counts, msgs)
}

fn ring(keys: &[&str]) -> KeyRing {
    KeyRing::new(
        keys.iter()
            .map(|k| AuthKey::new(None, k.as_bytes()))
            .collect(),
    )
}

fn counts(pairs: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    pairs.iter().copied().collect()
}

#[test]
fn lispers_single_node() {
    let (c, msgs) = check_file("lispers-single-node.pcap", &ring(&["interop-key"]));
    assert_eq!(
        c,
        counts(&[
            ("ecm", 2),
            ("map-register", 3),
            ("map-reply", 4),
            ("map-request", 2)
        ])
    );
    // The negative Map-Reply for 10.2.2.2: host /32, TTL 15, Natively-Forward, A clear.
    let neg = msgs
        .iter()
        .find_map(|(_, m)| match m {
            ControlMessage::MapReply(r) if r.records[0].rlocs.is_empty() => {
                Some(r.records[0].clone())
            }
            _ => None,
        })
        .expect("a negative reply");
    assert_eq!(neg.eid_text(), "[0]10.2.2.2/32");
    assert_eq!(
        (neg.ttl, neg.action, neg.authoritative),
        (15, action::NATIVELY_FORWARD, false)
    );
    // The Map-Register: AFI-List locator with the host name "vm", trailer present.
    let ControlMessage::MapRegister(reg) = &msgs[0].1 else {
        panic!("first message is the Map-Register")
    };
    assert!(reg.use_ttl && reg.trailer.is_some() && !reg.want_notify);
    assert_eq!(
        (reg.auth.key_id, reg.auth.alg_id, reg.auth.data.len()),
        (0, 2, 32)
    );
    let rloc = &reg.records[0].rlocs[0];
    assert_eq!(rloc.locator.ip(), Some("192.0.2.1".parse().unwrap()));
    let Address::Lcaf(l) = &rloc.locator else {
        panic!("AFI-List")
    };
    assert_eq!(
        l.body,
        LcafBody::AfiList(vec![
            Address::Ipv4("192.0.2.1".parse().unwrap()),
            Address::Name(b"vm".to_vec())
        ])
    );
}

#[test]
fn lispers_decent_multicast() {
    let (c, msgs) = check_file("lispers-decent-multicast.pcap", &ring(&["decent-key"]));
    assert_eq!(
        c,
        counts(&[("ecm", 2), ("map-register", 3), ("map-reply", 2)])
    );
    let group: Vec<_> = msgs
        .iter()
        .filter(|(d, _)| d.dst.to_string() == "224.1.1.1")
        .collect();
    assert_eq!(group.len(), 3, "three Map-Registers to the group");
    // Proxy replies from the group members: A clear, and the locator of the registering node.
    for (_, m) in &msgs {
        if let ControlMessage::MapReply(r) = m {
            assert!(!r.records[0].authoritative);
        }
    }
}

#[test]
fn lispers_crypto_pair() {
    let (c, msgs) = check_file("lispers-crypto-pair.pcap", &ring(&["interop-key"]));
    assert_eq!(
        c,
        counts(&[
            ("data", 9),
            ("ecm", 2),
            ("map-register", 1),
            ("map-reply", 8),
            ("map-request", 8)
        ])
    );
    // The ECM Map-Request's first ITR-RLOC is a Security Key LCAF with the RLOC inside.
    let ControlMessage::Ecm(ecm) = &msgs[1].1 else {
        panic!("ECM")
    };
    let ControlMessage::MapRequest(req) = &*ecm.inner else {
        panic!("inner Map-Request")
    };
    let Address::Lcaf(l) = &req.itr_rlocs[0] else {
        panic!("LCAF ITR-RLOC")
    };
    let LcafBody::SecurityKey(k) = &l.body else {
        panic!("Security Key")
    };
    assert_eq!((k.cipher_suite, k.keys.len(), k.keys[0].len()), (6, 1, 32));
    assert_eq!(req.reply_rloc(), Some("192.0.2.1".parse().unwrap()));
    assert_eq!(ecm.inner_header.sport, 59902);
    // The Map-Register uses key-id 1: a ring holding the key only under key-id 0 refuses it.
    let reg = &msgs[0].0.payload;
    assert_eq!(
        KeyRing::new(vec![AuthKey::new(Some(0), "interop-key")]).verify(reg),
        Err(AuthError::NoKey(1))
    );
    assert_eq!(
        KeyRing::new(vec![AuthKey::new(Some(1), "interop-key")]).verify(reg),
        Ok(0)
    );
    // Encrypted data: N set, key-id 1 in the K bits, no Instance-ID.
    let (ds, _) = datagrams("lispers-crypto-pair.pcap");
    let data = ds.iter().find(|d| d.is_data()).unwrap();
    let h = DataHeader::parse(&data.payload).unwrap();
    assert_eq!(
        (h.has(DataHeader::N), h.key_id, h.instance_id()),
        (true, 1, None)
    );
}

/// Our node registering with a lispers.net Map-Server (shared/vectors/interop cell 1):
/// lispers' Map-Notify carries the xTR-ID / site-ID trailer with the I bit clear, and its
/// HMAC covers it. It parses, re-emits byte for byte (I bit still clear) and authenticates;
/// each answers one of our registers by nonce and echoes our xTR-ID.
#[test]
fn lispers_map_notify_carries_an_unflagged_trailer() {
    let (c, msgs) = check_file("cell1-decent-to-lispers-ms.pcap", &ring(&["interop-key"]));
    assert!(c["map-notify"] >= 5, "{c:?}");
    for (d, m) in &msgs {
        let ControlMessage::MapNotify(n) = m else {
            continue;
        };
        assert!(n.unflagged_trailer, "frame {}", d.frame);
        assert_eq!(d.payload[0] & 0x08, 0, "frame {}: I bit clear", d.frame);
        let answered = msgs.iter().find_map(|(_, r)| match r {
            ControlMessage::MapRegister(r) if r.nonce == n.nonce => Some(r),
            _ => None,
        });
        let reg = answered.unwrap_or_else(|| panic!("frame {}: answers a register", d.frame));
        assert_eq!(
            n.trailer.map(|t| t.xtr_id),
            reg.trailer.map(|t| t.xtr_id),
            "frame {}",
            d.frame
        );
    }
}

/// The first Security Key LCAF in an address (lispers.net wraps its own in an AFI List).
fn security_key(a: &Address) -> Option<&SecurityKey> {
    let Address::Lcaf(l) = a else { return None };
    match &l.body {
        LcafBody::SecurityKey(k) => Some(k),
        LcafBody::AfiList(items) => items.iter().find_map(security_key),
        _ => None,
    }
}

/// Live, 2026-12-06: our node (192.0.2.11, `lispers-cs6` toward 192.0.2.21) beside
/// lispers.net a8e1ce1 (192.0.2.21, data-plane-security, suite 6), pinging both ways
/// through the encrypted tunnel. Both sides' probes carry a one-key suite-6 LCAF and both
/// replies answer with one; every data packet is key-id 1 with lispers' 136-byte framing
/// (an 84-byte ping padded to 96, 8-byte IV, 16-byte ICV); ours leave from our control port,
/// the port lispers keys our decryption key by, and lispers' from the port of its probes.
#[test]
fn lispers_cs6_live_exchange() {
    let (c, msgs) = check_file("lispers-cs6-live.pcap", &ring(&["interop-key"]));
    assert_eq!(c.get("map-request"), c.get("map-reply"));
    assert!(c["map-request"] >= 4 && c["data"] >= 16, "{c:?}");
    for (d, m) in &msgs {
        let keys: Vec<&SecurityKey> = match m {
            ControlMessage::MapRequest(q) => q.itr_rlocs.iter().filter_map(security_key).collect(),
            ControlMessage::MapReply(r) => r
                .records
                .iter()
                .flat_map(|r| r.rlocs.iter())
                .filter_map(|l| security_key(&l.locator))
                .collect(),
            _ => continue,
        };
        assert_eq!(keys.len(), 1, "frame {}: one Security Key LCAF", d.frame);
        let k = keys[0];
        assert_eq!(
            (k.cipher_suite, k.keys.len(), k.keys[0].len()),
            (6, 1, 32),
            "frame {}: suite 6, one 32-byte key (key-id 1)",
            d.frame
        );
    }
    let (ds, _) = datagrams("lispers-cs6-live.pcap");
    let probe_port = |from: &str| {
        ds.iter()
            .find(|d| !d.is_data() && d.src.to_string() == from && d.dport == CONTROL_PORT)
            .map(|d| d.sport)
    };
    let (ours, theirs) = ("192.0.2.11", "192.0.2.21");
    let mut seen = [0; 2];
    for d in ds.iter().filter(|d| d.is_data()) {
        let h = DataHeader::parse(&d.payload).unwrap();
        assert_eq!((h.key_id, d.payload.len()), (1, 128), "frame {}", d.frame);
        let from = d.src.to_string();
        assert_eq!(Some(d.sport), probe_port(&from), "frame {}", d.frame);
        seen[usize::from(from == theirs)] += 1;
        assert!(from == ours || from == theirs);
    }
    assert!(seen[0] >= 8 && seen[1] >= 8, "both directions: {seen:?}");
    assert_eq!(probe_port(ours), Some(CONTROL_PORT));
}

/// Live, 2026-12-06: our node in the peer-group profile (no `lispers-cs6` entry) probing
/// lispers.net a8e1ce1: each of our probes ends with the 36-byte site-key trailer
/// (crypto::kx_auth) and lispers answers every one of them; its own unsigned cs-6 offers get
/// our reply without a key (an unsigned offer in the group profile is refused), signed.
#[test]
fn lispers_reads_our_signed_probes() {
    use lisp_decent::crypto::kx_auth;
    let (ds, _) = datagrams("lispers-signed-probes.pcap");
    let key = kx_auth::KxKey::from_site_key(b"interop-key");
    let ours: Vec<&Datagram> = ds
        .iter()
        .filter(|d| d.src.to_string() == "192.0.2.11")
        .collect();
    let mut answered = 0;
    for d in &ours {
        assert!(key.verify(&d.payload), "frame {}: signed", d.frame);
        let (message, _) = kx_auth::split(&d.payload).unwrap();
        match ControlMessage::parse(message).unwrap() {
            ControlMessage::MapRequest(q) => {
                assert!(q.probe);
                // lispers answers with the probe's nonce.
                let reply = ds.iter().any(|r| {
                    r.src.to_string() == "192.0.2.21"
                        && matches!(ControlMessage::parse(&r.payload),
                            Ok(ControlMessage::MapReply(p)) if p.nonce == q.nonce)
                });
                assert!(
                    reply,
                    "frame {}: lispers answered our signed probe",
                    d.frame
                );
                answered += 1;
            }
            ControlMessage::MapReply(r) => {
                let keyed = r
                    .records
                    .iter()
                    .flat_map(|r| r.rlocs.iter())
                    .any(|l| security_key(&l.locator).is_some());
                assert!(!keyed, "frame {}: no key for an unsigned offer", d.frame);
            }
            _ => {}
        }
    }
    assert!(answered >= 3, "{answered}");
}

#[test]
fn oor_map_server_and_two_xtrs() {
    let keys = ring(&["oor-test-key", "oor-test-key2"]);
    let (c, msgs) = check_file("oor-ms-two-xtrs.pcap", &keys);
    assert_eq!(
        c,
        counts(&[
            ("data", 31),
            ("ecm", 8),
            ("map-notify", 4),
            ("map-register", 4),
            ("map-reply", 8)
        ])
    );
    // Each site's messages authenticate with its own key only.
    for (d, m) in &msgs {
        let records = match m {
            ControlMessage::MapRegister(r) => &r.records,
            ControlMessage::MapNotify(n) => &n.records,
            _ => continue,
        };
        let want = if records[0].eid_text() == "[0]10.1.1.0/24" {
            0
        } else {
            1
        };
        assert_eq!(keys.verify(&d.payload), Ok(want), "frame {}", d.frame);
    }
    // OOR's wrong negative prefix (PROTOCOL.md O2) decodes as sent.
    assert!(msgs.iter().any(|(_, m)| matches!(m,
        ControlMessage::MapReply(r) if r.records[0].eid_text() == "[0]11.8.0.0/13")));
}

#[test]
fn oor_xtr_only_and_icmp_notes() {
    let (c, _) = check_file("oor-xtr-only.pcap", &ring(&["oor-test-key"]));
    assert_eq!(c, counts(&[("ecm", 3), ("map-register", 7)]));
    let (_, notes) = datagrams("oor-xtr-only.pcap");
    assert_eq!(
        notes, 10,
        "each ICMP port-unreachable quoting a LISP packet is noted"
    );
}

/// PROTOCOL.md §2.1: the lispers.net HER membership Map-Register, with its padded
/// Multicast-Info LCAF and the RLE inside an AFI List.
#[test]
fn lispers_her_membership_register() {
    // PROTOCOL.md prints it in groups; the bytes are these.
    let mut v = hex::decode(concat!(
        "3a00040101dfdfdfddccbbaa00000000",
        "0000000301001000000040030000090000140000",
        "00000000000000200001000000000001e0010101",
        "ff00016400054003000001000014000040030000",
        "0d00000a000000800001c0000201",
    ))
    .unwrap();
    v.extend_from_slice(&hex::decode("0000000000000000a4bb9597de26a917").unwrap());
    v.extend_from_slice(&[0; 8]);
    assert_eq!(v.len(), 114);
    let m = ControlMessage::parse(&v).unwrap();
    assert_eq!(m.to_bytes().unwrap(), v, "re-emits with the padding");
    let ControlMessage::MapRegister(r) = &m else {
        panic!("Map-Register")
    };
    assert!(r.proxy_reply && r.merge && !r.want_notify && r.trailer.is_some());
    assert_eq!(r.records[0].eid_text(), "[0](0.0.0.0/0, 224.1.1.1/32)");
    let Address::Lcaf(l) = &r.records[0].eid else {
        panic!("LCAF EID")
    };
    let LcafBody::MulticastInfo(mi) = &l.body else {
        panic!("Multicast-Info")
    };
    assert!(mi.lispers_padding);
    let rloc = &r.records[0].rlocs[0];
    assert_eq!(
        (
            rloc.priority,
            rloc.weight,
            rloc.m_priority,
            rloc.m_weight,
            rloc.flags
        ),
        (255, 0, 1, 100, 5)
    );
    let Address::Lcaf(list) = &rloc.locator else {
        panic!("AFI List")
    };
    let LcafBody::AfiList(items) = &list.body else {
        panic!("AFI List")
    };
    assert_eq!(items[0], Address::None);
    let Address::Lcaf(rle) = &items[1] else {
        panic!("RLE")
    };
    let LcafBody::ReplicationList(e) = &rle.body else {
        panic!("RLE")
    };
    assert_eq!(
        (e[0].level, e[0].address.ip()),
        (128, Some("192.0.2.1".parse().unwrap()))
    );
    // The same entry in the RFC 8060 layout (no padding) parses too, and stays unpadded.
    let mut rfc = mi.clone();
    rfc.lispers_padding = false;
    let mut out = Vec::new();
    Address::Lcaf(Box::new(Lcaf::new(LcafBody::MulticastInfo(rfc.clone()))))
        .emit(&mut out)
        .unwrap();
    let back = Address::parse(&mut Reader::new(&out), 0).unwrap();
    assert_eq!(
        back,
        Address::Lcaf(Box::new(Lcaf::new(LcafBody::MulticastInfo(rfc))))
    );
}

/// PROTOCOL.md §3.12 test vectors 1 (lispers) and 2 (OOR): the HMAC covers the trailer.
#[test]
fn auth_vectors_cover_the_whole_message() {
    let v1 = hex::decode(
        concat!(
            "32000801 01dfdfdf ddccbbaa 01020020",
            "b9660d46 4e076235 3a00af9b 066c8946",
            "e1f00488 e5bcc608 705a9426 4e00788d",
            "00000003 01101000 00000001 0a020000",
            "0000ff00 00054003 00000100 000b0001",
            "c0000202 0011766d 00000000 00000000",
            "00726edc a4224c01 3e000000 00000000",
            "00"
        )
        .replace(' ', ""),
    )
    .unwrap();
    assert_eq!(v1.len(), 113);
    assert_eq!(auth::verify(&v1, b"interop-key"), Ok(()));
    let mut no_trailer = v1[..v1.len() - 24].to_vec();
    no_trailer[0] &= !0x02; // clear I so it is still a well-formed message
    assert_eq!(
        auth::verify(&no_trailer, b"interop-key"),
        Err(AuthError::Mismatch)
    );
    let mut resigned = v1.clone();
    auth::sign(&mut resigned, b"interop-key").unwrap();
    assert_eq!(resigned, v1, "sign reproduces lispers' digest");

    let v2 = hex::decode(
        concat!(
            "30000101 9d6f1e7b 811d2e99 00010014",
            "8a99a292 bce3b919 617c031a d54f1737",
            "f8c0431d 0000000a 01181000 00000001",
            "0a010100 0164ff00 00050001 c0000201"
        )
        .replace(' ', ""),
    )
    .unwrap();
    assert_eq!(auth::verify(&v2, b"oor-test-key"), Ok(()));
    assert_eq!(
        auth::verify(&v2, b"oor-test-key2"),
        Err(AuthError::Mismatch)
    );
}

/// Live, 2026-12-06: our node (192.0.2.11) beside OOR 1.3.0 (built from its repository)
/// as Map-Server / Map-Resolver (.31) and two OOR xTRs (.32 registering with both, .33 with
/// the OOR Map-Server only). Our registers to the OOR Map-Server are answered by Map-Notifies
/// (never the name's, which OOR cannot read), and none carries the group membership; nothing
/// goes to its data port; the OOR xTR's registers reach our Map-Server and are acknowledged;
/// our lookups go to the OOR Map-Resolver as ECMs; data flows both ways in clear, OOR's with
/// the I bit clear (Instance-ID 0).
#[test]
fn oor_map_server_resolver_and_xtrs_live() {
    let (c, msgs) = check_file("oor-live-ms-mr-xtr.pcap", &ring(&["interop-key"]));
    assert!(
        c["map-notify"] >= 30 && c["data"] >= 20 && c["ecm"] >= 4,
        "{c:?}"
    );
    let (ours, oms, oxtr) = (
        "192.0.2.11".parse::<std::net::IpAddr>().unwrap(),
        "192.0.2.31".parse::<std::net::IpAddr>().unwrap(),
        "192.0.2.32".parse::<std::net::IpAddr>().unwrap(),
    );
    let registers_to_oms: Vec<&MapRegister> = msgs
        .iter()
        .filter(|(d, _)| d.src == ours && d.dst == oms)
        .filter_map(|(_, m)| match m {
            ControlMessage::MapRegister(r) => Some(r),
            _ => None,
        })
        .collect();
    assert!(registers_to_oms.len() >= 60);
    let answered = |r: &MapRegister| {
        msgs.iter().any(|(d, m)| {
            d.src == oms && matches!(m, ControlMessage::MapNotify(n) if n.nonce == r.nonce)
        })
    };
    for r in &registers_to_oms {
        assert!(r.want_notify && !r.merge && !r.proxy_reply);
        for rec in &r.records {
            assert!(!rec.eid_text().contains("224.1.1.1"), "membership to OOR");
        }
        let is_name = matches!(r.records[0].eid, Address::Name(_));
        if is_name {
            assert_eq!(r.records.len(), 1, "the name in a register of its own");
            assert!(!answered(r), "OOR cannot read AFI 17");
        }
    }
    let answered_prefix = registers_to_oms
        .iter()
        .filter(|r| !matches!(r.records[0].eid, Address::Name(_)) && answered(r))
        .count();
    assert!(answered_prefix >= 30, "{answered_prefix}");
    let (ds, _) = datagrams("oor-live-ms-mr-xtr.pcap");
    assert!(
        !ds.iter()
            .any(|d| d.src == ours && d.dst == oms && d.dport == 4341)
    );
    // The OOR xTR registered with us and was answered.
    assert!(msgs.iter().any(|(d, m)| d.src == ours
        && d.dst == oxtr
        && matches!(m, ControlMessage::MapNotify(n) if n.records[0].eid_text() == "[0]10.32.0.0/24")));
    // OOR's data: Instance-ID 0 with the I bit clear.
    let from_oor: Vec<_> = ds.iter().filter(|d| d.is_data() && d.src == oxtr).collect();
    assert!(from_oor.len() >= 5);
    for d in from_oor {
        let h = DataHeader::parse(&d.payload).unwrap();
        assert_eq!(h.instance_id(), None, "frame {}", d.frame);
    }
}

/// Live, 2026-12-06: our node (192.0.2.11) in one LISP-Decent underlay-multicast group
/// (224.1.1.1) with two lispers.net a8e1ce1 nodes (.21, .22). Every group register, theirs
/// and ours, authenticates with the site key; both lispers nodes answer our greetings with
/// Map-Notifies; our probes to a lispers member are answered.
#[test]
fn lispers_and_ours_in_one_multicast_group_live() {
    let (c, msgs) = check_file("lispers-mixed-multicast-live.pcap", &ring(&["interop-key"]));
    assert!(c["map-register"] >= 40, "{c:?}");
    let group: std::net::IpAddr = "224.1.1.1".parse().unwrap();
    let ours: std::net::IpAddr = "192.0.2.11".parse().unwrap();
    let senders: std::collections::BTreeSet<String> = msgs
        .iter()
        .filter(|(d, m)| d.dst == group && matches!(m, ControlMessage::MapRegister(_)))
        .map(|(d, _)| d.src.to_string())
        .collect();
    assert_eq!(
        senders.into_iter().collect::<Vec<_>>(),
        ["192.0.2.11", "192.0.2.21", "192.0.2.22"]
    );
    for lispers in ["192.0.2.21", "192.0.2.22"] {
        let from: std::net::IpAddr = lispers.parse().unwrap();
        assert!(
            msgs.iter().any(|(d, m)| d.src == from
                && d.dst == ours
                && matches!(m, ControlMessage::MapNotify(n) if n.records[0].eid_text() == "[0]10.11.0.0/16")),
            "{lispers} acknowledges our registration"
        );
    }
    assert!(
        msgs.iter()
            .any(|(d, m)| d.dst == ours && matches!(m, ControlMessage::MapReply(r) if r.probe))
    );
}

/// Live, 2026-12-06, with lispers.net a8e1ce1: a lispers xTR (.22) registers with our node
/// and resolves through it, lispers' lig asks our Map-Resolver (answered authoritatively for
/// our prefix, by proxy for a member's, negatively inside the site's prefix), our registers
/// to a lispers Map-Server (.21) through `[[map_server]]` are acknowledged, and our ITR
/// resolves through lispers' Map-Resolver; clear data flows both ways.
#[test]
fn lispers_xtr_map_server_and_resolver_live() {
    let (c, msgs) = check_file("lispers-live-xtr-ms-mr.pcap", &ring(&["interop-key"]));
    assert!(c["data"] >= 20, "{c:?}");
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let (ours, lms, lxtr) = (ip("192.0.2.11"), ip("192.0.2.21"), ip("192.0.2.22"));
    // lispers' lig: ECMs from .22 to us, each answered by a Map-Reply with its nonce.
    let ligs: Vec<&MapRequest> = msgs
        .iter()
        .filter(|(d, _)| d.src == lxtr && d.dst == ours)
        .filter_map(|(_, m)| match m {
            ControlMessage::Ecm(e) => match &*e.inner {
                ControlMessage::MapRequest(q) => Some(q),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(ligs.len() >= 4);
    let reply = |nonce: &Nonce| {
        msgs.iter().find_map(|(d, m)| match m {
            ControlMessage::MapReply(r) if d.src == ours && r.nonce == *nonce => Some(r),
            _ => None,
        })
    };
    let mut kinds = Vec::new();
    for q in ligs {
        let r = reply(&q.nonce).expect("every lig answered");
        let rec = &r.records[0];
        kinds.push((rec.eid_text(), rec.authoritative, rec.rlocs.is_empty()));
    }
    assert!(
        kinds.contains(&("[0]10.11.0.0/16".into(), true, false)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("[0]10.21.0.0/16".into(), false, false)),
        "{kinds:?}"
    );
    // Negative, A clear: only an ETR sets it (RFC 9301 §5.4).
    assert!(
        kinds.contains(&("[0]10.64.0.0/10".into(), false, true)),
        "{kinds:?}"
    );
    // Our registers to the lispers Map-Server are acknowledged (the name's refused: its site
    // allows no names).
    let acked = msgs
        .iter()
        .filter(|(d, m)| d.src == lms && d.dst == ours && matches!(m, ControlMessage::MapNotify(_)))
        .count();
    assert!(acked >= 10, "{acked}");
    // Our ECM to lispers' Map-Resolver is forwarded to the lispers ETR, which answers us.
    assert!(
        msgs.iter()
            .any(|(d, m)| d.src == ours && d.dst == lms && matches!(m, ControlMessage::Ecm(_)))
    );
    assert!(msgs.iter().any(|(d, m)| d.src == lxtr
        && d.dst == ours
        && matches!(m, ControlMessage::MapReply(r) if !r.probe && r.records[0].eid_text() == "[0]10.22.0.0/16")));
    let (ds, _) = datagrams("lispers-live-xtr-ms-mr.pcap");
    assert!(ds.iter().filter(|d| d.is_data() && d.src == lxtr).count() >= 10);
    assert!(ds.iter().filter(|d| d.is_data() && d.src == ours).count() >= 10);
}
