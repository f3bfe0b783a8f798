//! tshark as an independent decoder: a capture holding every message type and every LCAF type
//! we build must decode in tshark with no malformed packet and no expert error, and tshark's
//! field values (message type, record count, EID prefix, Instance-ID, RLOC addresses, key-id)
//! must equal ours. Skips, saying why, on a machine without tshark; CI installs it.
//!
//! tshark 4.0 itself cannot decode two things real peers send, so they are left out here and
//! covered by the golden-vector tests instead: an LCAF as ITR-RLOC (lispers' Security Key,
//! "Unexpected ITR-RLOC-AFI" error) and the lispers padded Multicast-Info layout. It also
//! dissects nothing of a Map-Notify-Ack but its type, so only the type is compared there.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use lisp_decent::crypto::auth;
use lisp_decent::wire::*;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn a4(s: &str) -> Address {
    Address::Ipv4(v4(s))
}

fn lcaf(body: LcafBody) -> Address {
    Address::Lcaf(Box::new(Lcaf::new(body)))
}

fn iid(iid: u32, address: Address) -> Address {
    lcaf(LcafBody::InstanceId { iid, address })
}

fn rloc(locator: Address) -> RlocRecord {
    RlocRecord {
        priority: 1,
        weight: 100,
        m_priority: 255,
        m_weight: 0,
        flags: RlocRecord::LOCAL | RlocRecord::REACHABLE,
        locator,
    }
}

/// Locators of every LCAF type an RLOC-record can carry.
fn lcaf_locators() -> Vec<(&'static str, Address)> {
    vec![
        (
            "afi-list",
            lcaf(LcafBody::AfiList(vec![
                a4("192.0.2.11"),
                Address::Ipv6("2001:db8::11".parse().unwrap()),
            ])),
        ),
        ("instance-id", iid(5, a4("192.0.2.12"))),
        (
            "geo",
            lcaf(LcafBody::Geo(GeoCoordinates {
                north: true,
                lat_degrees: 52,
                lat_minutes: 22,
                lat_seconds: 5,
                east: true,
                lon_degrees: 4,
                lon_minutes: 53,
                lon_seconds: 30,
                altitude: 12,
                address: a4("192.0.2.13"),
            })),
        ),
        (
            "elp",
            lcaf(LcafBody::ExplicitLocatorPath(vec![
                ElpHop {
                    flags: ElpHop::STRICT,
                    address: a4("192.0.2.14"),
                },
                ElpHop {
                    flags: 0,
                    address: a4("192.0.2.15"),
                },
            ])),
        ),
        (
            "security-key",
            lcaf(LcafBody::SecurityKey(SecurityKey {
                rsvd3: 0,
                cipher_suite: 5,
                rsvd4: 0,
                keys: vec![vec![0x42; 32]],
                locator: a4("192.0.2.16"),
            })),
        ),
        (
            // Our offer under key-id 3 (RFC 8061 §6): slots 1 and 2 empty, the key third.
            "security-key-id-3",
            lcaf(LcafBody::SecurityKey(SecurityKey {
                rsvd3: 0,
                cipher_suite: 6,
                rsvd4: 0,
                keys: vec![vec![], vec![], vec![0x43; 32]],
                locator: a4("192.0.2.16"),
            })),
        ),
        (
            "rle",
            lcaf(LcafBody::ReplicationList(vec![
                RleEntry {
                    reserved: 0,
                    rsvd3: 0,
                    level: 128,
                    address: a4("192.0.2.17"),
                    name: None,
                },
                RleEntry {
                    reserved: 0,
                    rsvd3: 0,
                    level: 128,
                    address: a4("192.0.2.18"),
                    name: None,
                },
            ])),
        ),
        (
            "json",
            lcaf(LcafBody::Json {
                json: br#"{"site":"a"}"#.to_vec(),
                address: Address::None,
            }),
        ),
    ]
}

/// The EID-records: a plain prefix, an Instance-ID prefix, a Source/Dest and a Multicast-Info.
fn eids() -> Vec<(Address, u8)> {
    vec![
        (a4("10.1.0.0"), 16),
        (iid(7, a4("10.7.0.0")), 16),
        (
            lcaf(LcafBody::SourceDest(SourceDest {
                reserved: 0,
                source_mask_len: 24,
                dest_mask_len: 16,
                source: a4("10.3.3.0"),
                dest: a4("10.4.0.0"),
            })),
            24,
        ),
        (
            lcaf(LcafBody::MulticastInfo(MulticastInfo {
                iid: 0,
                reserved: 0,
                source_mask_len: 0,
                group_mask_len: 32,
                source: a4("0.0.0.0"),
                group: a4("224.1.1.1"),
                lispers_padding: false,
            })),
            0,
        ),
    ]
}

struct Frame {
    payload: Vec<u8>,
    dport: u16,
}

fn signed(m: ControlMessage) -> Vec<u8> {
    let mut b = m.to_bytes().unwrap();
    auth::sign(&mut b, b"site-key").unwrap();
    b
}

fn frames() -> Vec<Frame> {
    let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut out = Vec::new();
    let ctl = |m: &ControlMessage| Frame {
        payload: m.to_bytes().unwrap(),
        dport: CONTROL_PORT,
    };
    // Map-Registers: one per EID form, then one per LCAF locator type.
    for (eid, ml) in eids() {
        let rec = EidRecord {
            authoritative: true,
            ..EidRecord::new(eid, ml, 3, vec![rloc(a4("192.0.2.1"))])
        };
        let reg = MapRegister {
            proxy_reply: false,
            security: false,
            eid_notify: false,
            use_ttl: true,
            merge: false,
            want_notify: true,
            reserved: 0,
            nonce,
            auth: Authentication::unsigned(1, auth::alg::HMAC_SHA_256_128),
            records: vec![rec],
            trailer: Some(XtrTrailer {
                xtr_id: [9; 16],
                site_id: [0; 8],
            }),
        };
        out.push(Frame {
            payload: signed(ControlMessage::MapRegister(reg)),
            dport: CONTROL_PORT,
        });
    }
    for (_, loc) in lcaf_locators() {
        let rec = EidRecord::new(a4("10.2.0.0"), 16, 1440, vec![rloc(loc)]);
        out.push(ctl(&ControlMessage::MapReply(MapReply::new(
            nonce,
            vec![rec],
        ))));
    }
    // Map-Request (plain), and one in an ECM.
    let req = MapRequest::new(nonce, a4("10.1.1.1"), a4("192.0.2.1"), a4("10.2.2.2"), 32);
    out.push(ctl(&ControlMessage::MapRequest(req.clone())));
    let hdr = IpUdp::new(
        IpAddr::V4(v4("10.1.1.1")),
        IpAddr::V4(v4("10.2.2.2")),
        64,
        4342,
        4342,
    )
    .unwrap();
    out.push(ctl(&ControlMessage::Ecm(Ecm::new(
        hdr,
        ControlMessage::MapRequest(req),
    ))));
    // Map-Notify with the same record as a Map-Register.
    let notify = MapNotify {
        reserved: 0,
        nonce,
        auth: Authentication::unsigned(0, auth::alg::HMAC_SHA_1_96),
        records: vec![EidRecord::new(
            a4("10.1.0.0"),
            16,
            3,
            vec![rloc(a4("192.0.2.1"))],
        )],
        trailer: None,
        unflagged_trailer: false,
    };
    out.push(Frame {
        payload: signed(ControlMessage::MapNotify(notify.clone())),
        dport: CONTROL_PORT,
    });
    out.push(Frame {
        payload: signed(ControlMessage::MapNotifyAck(notify)),
        dport: CONTROL_PORT,
    });
    // Info-Request and Info-Reply with the NAT-Traversal LCAF.
    let info = |reply: bool, payload: Address| InfoMessage {
        reply,
        reserved: 0,
        nonce,
        auth: Authentication::unsigned(0, auth::alg::HMAC_SHA_1_96),
        ttl: 1440,
        reserved2: 0,
        mask_len: 24,
        eid: a4("10.1.1.0"),
        payload,
    };
    out.push(Frame {
        payload: signed(ControlMessage::Info(info(false, Address::None))),
        dport: CONTROL_PORT,
    });
    let nat = lcaf(LcafBody::NatTraversal(NatTraversal {
        ms_port: 4342,
        etr_port: 61000,
        global_etr_rloc: a4("198.51.100.1"),
        ms_rloc: a4("192.0.2.100"),
        private_etr_rloc: a4("192.168.1.2"),
        rtr_rlocs: vec![a4("192.0.2.200")],
    }));
    out.push(Frame {
        payload: signed(ControlMessage::Info(info(true, nat))),
        dport: CONTROL_PORT,
    });
    // Map-Referral.
    let rr = ReferralRecord {
        record: EidRecord::new(a4("10.0.0.0"), 8, 1440, vec![rloc(a4("192.0.2.50"))]),
        signatures: vec![],
    };
    out.push(ctl(&ControlMessage::MapReferral(MapReferral {
        reserved: 0,
        nonce,
        records: vec![rr],
    })));
    // A data packet with an Instance-ID, carrying an ICMP echo.
    let mut data = vec![0u8; 8];
    DataHeader::with_instance(7, 0xabcdef, 0)
        .emit(&mut data)
        .unwrap();
    data.extend_from_slice(&hex::decode("45000054000040004001000a0a0101010a020202").unwrap());
    data.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
    data.extend_from_slice(&[0u8; 56]);
    out.push(Frame {
        payload: data,
        dport: DATA_PORT,
    });
    out
}

fn write_pcap(path: &std::path::Path, frames: &[Frame]) {
    let addressed: Vec<_> = frames
        .iter()
        .map(|f| {
            let sport = if f.dport == DATA_PORT { 4341 } else { 61000 };
            (
                std::net::SocketAddr::from(([192, 0, 2, 1], sport)),
                std::net::SocketAddr::from(([192, 0, 2, 2], f.dport)),
                f.payload.clone(),
            )
        })
        .collect();
    write_addressed_pcap(path, &addressed);
}

fn write_addressed_pcap(
    path: &std::path::Path,
    frames: &[(std::net::SocketAddr, std::net::SocketAddr, Vec<u8>)],
) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::with_header(
        file,
        PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ..Default::default()
        },
    )
    .unwrap();
    for (i, (src, dst, payload)) in frames.iter().enumerate() {
        let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            panic!("IPv4 only")
        };
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(s.octets(), d.octets(), 64)
            .udp(src.port(), dst.port());
        let mut bytes = Vec::new();
        builder.write(&mut bytes, payload).unwrap();
        let ts = std::time::Duration::from_secs(i as u64 + 1);
        w.write_packet(&PcapPacket::new(ts, bytes.len() as u32, &bytes))
            .unwrap();
    }
}

fn have_tshark() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    // CI sets LISP_DECENT_REQUIRE_TSHARK so that these tests can never skip there.
    assert!(
        std::env::var_os("LISP_DECENT_REQUIRE_TSHARK").is_none(),
        "tshark is required here (LISP_DECENT_REQUIRE_TSHARK is set) but not installed"
    );
    println!("SKIPPED: tshark is not installed (CI installs it; apt-get install tshark)");
    false
}

/// Frames tshark flags as malformed or with an expert error, with the messages.
fn tshark_errors(p: &str) -> String {
    tshark(&[
        "-r",
        p,
        "-Y",
        "_ws.malformed || _ws.expert.severity == error",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.expert.message",
    ])
    .unwrap()
}

/// What the engines themselves send in both push forms (Map-Registers plain, replicated in
/// Instance-ID 0xFFFFFF and multicast, Map-Notifies and Acks, Map-Requests, Map-Replies,
/// SMRs) decodes in tshark without a malformed field.
#[test]
fn tshark_decodes_what_the_engines_send() {
    use lisp_decent::control::{Delivery, LocalRloc};
    use lisp_decent::sim::{self, Sim};
    if !have_tshark() {
        return;
    }
    let mut frames = Vec::new();
    for d in [Delivery::Replicate, Delivery::Multicast { ttl: 32 }] {
        let mut s = Sim::new(std::time::Duration::from_millis(1), 1);
        s.capture = Some(Vec::new());
        for i in 1..=3 {
            // lisp-crypto on: RLOC-probes carry Security Key LCAFs and the site-key trailer.
            let mut c = sim::node_config(i, d.clone());
            c.encryption = Some(lisp_decent::crypto::lisp_crypto::CipherSuite::Aes128Gcm);
            s.add(c);
        }
        assert!(s.run_until(std::time::Duration::from_secs(5), Sim::converged));
        s.run_to(s.now + std::time::Duration::from_secs(2));
        // A rekey: the next offer is under key-id 2.
        let now = s.now;
        s.engine_mut(2).unwrap().rekey_now(now, sim::rloc(1));
        let req = MapRequest::new(
            [5; 8],
            Address::None,
            Address::from(sim::rloc(3)),
            a4("10.0.1.5"),
            32,
        );
        s.inject(
            std::net::SocketAddr::new(sim::rloc(3), 4342),
            std::net::SocketAddr::new(sim::rloc(1), 4342),
            ControlMessage::MapRequest(req).to_bytes().unwrap(),
        );
        let neg = MapRequest::new(
            [6; 8],
            Address::None,
            Address::from(sim::rloc(3)),
            a4("10.200.0.1"),
            32,
        );
        s.inject(
            std::net::SocketAddr::new(sim::rloc(3), 4342),
            std::net::SocketAddr::new(sim::rloc(2), 4342),
            ControlMessage::MapRequest(neg).to_bytes().unwrap(),
        );
        s.run_to(s.now + std::time::Duration::from_secs(1));
        let now = s.now;
        s.engine_mut(0).unwrap().set_rlocs(
            now,
            vec![LocalRloc {
                address: "198.19.0.1".parse().unwrap(),
                priority: 1,
                weight: 100,
            }],
        );
        s.run_to(s.now + std::time::Duration::from_secs(70));
        frames.extend(s.capture.take().unwrap());
    }
    let kinds: std::collections::BTreeSet<&str> = frames
        .iter()
        .filter_map(|(_, d, p)| {
            if d.port() == DATA_PORT {
                Some("replicated")
            } else {
                ControlMessage::parse(p).ok().map(|m| m.type_name())
            }
        })
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "info-reply",
            "info-request",
            "map-notify",
            "map-notify-ack",
            "map-register",
            "map-reply",
            "map-request",
            "replicated"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engines.pcap");
    write_addressed_pcap(&path, &frames);
    let p = path.to_str().unwrap();
    // tshark's dissector reads no LCAF among a Map-Request's ITR-RLOCs, where RFC 8061 §6
    // puts the Security Key LCAF ("Unexpected ITR-RLOC-AFI (16387)"; lispers.net's own
    // probes get the same). Those frames are exactly our keyed probes; nothing else errs.
    const NO_LCAF_ITR_RLOC: &str = "Unexpected ITR-RLOC-AFI (16387), cannot decode";
    let keyed_probes = frames
        .iter()
        .filter(|(_, _, p)| {
            let m = lisp_decent::crypto::kx_auth::split(p).map_or(&p[..], |(m, _)| m);
            matches!(ControlMessage::parse(m), Ok(ControlMessage::MapRequest(q))
                if q.itr_rlocs.iter().any(|a| matches!(a, Address::Lcaf(_))))
        })
        .count();
    assert!(keyed_probes > 0, "the engines sent keyed probes");
    let errors = tshark_errors(p);
    let (lcaf_itr, bad): (Vec<&str>, Vec<&str>) = errors
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| l.ends_with(NO_LCAF_ITR_RLOC));
    assert!(bad.is_empty(), "tshark reports errors:\n{}", bad.join("\n"));
    assert_eq!(lcaf_itr.len(), keyed_probes);
    let lisp = tshark(&[
        "-r",
        p,
        "-Y",
        "lisp || lisp-data",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .unwrap();
    assert_eq!(lisp.lines().count(), frames.len());
}

fn tshark(args: &[&str]) -> Option<String> {
    let out = Command::new("tshark").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn tshark_agrees_with_our_encoding() {
    if !have_tshark() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("every-type.pcap");
    let frames = frames();
    write_pcap(&path, &frames);
    let p = path.to_str().unwrap();

    // No malformed packets, no expert errors.
    let bad = tshark(&[
        "-r",
        p,
        "-Y",
        "_ws.malformed || _ws.expert.severity == error",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "_ws.expert.message",
    ])
    .unwrap();
    assert!(
        bad.trim().is_empty(),
        "tshark reports errors:\n{bad}\n{}",
        tshark(&["-r", p, "-V"]).unwrap_or_default()
    );
    let undissected = tshark(&[
        "-r",
        p,
        "-Y",
        "lisp || lisp-data",
        "-T",
        "fields",
        "-e",
        "frame.number",
    ])
    .unwrap();
    assert_eq!(
        undissected.lines().count(),
        frames.len(),
        "every frame is LISP to tshark"
    );

    // Field by field.
    let fields = [
        "frame.number",
        "lisp.type",
        "lisp.records",
        "lisp.mapping.eid.ipv4",
        "lisp.mapping.eid.masklen",
        "lisp.lcaf.iid",
        "lisp.loc.locator",
        "lisp.keyid",
        "lisp.mreq.record.prefix.ipv4",
        "lisp-data.iid",
    ];
    let mut args = vec![
        "-r",
        p,
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "separator=|",
        "-E",
        "aggregator=,",
    ];
    for f in &fields {
        args.push("-e");
        args.push(f);
    }
    let table = tshark(&args).unwrap();
    for (line, f) in table.lines().zip(&frames) {
        let col: Vec<&str> = line.split('|').collect();
        let frame = col[0];
        if f.dport == DATA_PORT {
            let h = DataHeader::parse(&f.payload).unwrap();
            assert_eq!(
                col[9],
                h.instance_id().unwrap().to_string(),
                "frame {frame} iid"
            );
            continue;
        }
        let m = ControlMessage::parse(&f.payload).unwrap();
        let (outer_type, inner) = match &m {
            ControlMessage::Ecm(e) => (8u8, (*e.inner).clone()),
            other => (0, other.clone()),
        };
        let t = (f.payload[0] >> 4).to_string();
        let types: Vec<&str> = col[1].split(',').collect();
        assert_eq!(types[0], t, "frame {frame} type");
        if outer_type == 8 {
            assert_eq!(types.get(1).copied(), Some("1"), "frame {frame} inner type");
        }
        if matches!(inner, ControlMessage::MapNotifyAck(_)) {
            // tshark 4.0 knows type 5 only by number and dissects none of its fields.
            continue;
        }
        let (records, eid_v4, masks, rlocs, keyid, req_eids): Summary = match &inner {
            ControlMessage::MapRequest(q) => (
                q.records.len(),
                vec![],
                vec![],
                vec![],
                None,
                q.records
                    .iter()
                    .filter_map(|r| r.eid.ip())
                    .map(|i| i.to_string())
                    .collect(),
            ),
            ControlMessage::MapReply(r) => summarize(&r.records, None),
            ControlMessage::MapRegister(r) => summarize(&r.records, Some(&r.auth)),
            ControlMessage::MapNotify(n) | ControlMessage::MapNotifyAck(n) => {
                summarize(&n.records, Some(&n.auth))
            }
            ControlMessage::MapReferral(r) => {
                let recs: Vec<EidRecord> = r.records.iter().map(|x| x.record.clone()).collect();
                summarize(&recs, None)
            }
            ControlMessage::Info(i) => (
                0,
                vec![],
                vec![],
                vec![],
                Some(u16::from(i.auth.key_id) << 8 | u16::from(i.auth.alg_id)),
                vec![],
            ),
            _ => unreachable!(),
        };
        if !matches!(inner, ControlMessage::Info(_)) {
            assert_eq!(
                col[2].rsplit(',').next().unwrap_or(""),
                records.to_string(),
                "frame {frame} records"
            );
        }
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        if !eid_v4.is_empty() {
            assert_eq!(list(col[3]), eid_v4, "frame {frame} EID");
            assert_eq!(list(col[4]), masks, "frame {frame} mask-len");
        }
        if let Some(iid) = inner_iid(&inner) {
            assert!(
                list(col[5]).contains(&iid.to_string()),
                "frame {frame} Instance-ID {iid} in {:?}",
                col[5]
            );
        }
        for r in &rlocs {
            assert!(
                col[6].contains(r.as_str()),
                "frame {frame} RLOC {r} not in tshark's {:?}",
                col[6]
            );
        }
        if let Some(k) = keyid {
            assert_eq!(col[7], format!("0x{k:04x}"), "frame {frame} key-id: {line}");
        }
        if !req_eids.is_empty() {
            assert_eq!(list(col[8]), req_eids, "frame {frame} requested EID");
        }
    }
}

type Summary = (
    usize,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Option<u16>,
    Vec<String>,
);

fn summarize(records: &[EidRecord], a: Option<&Authentication>) -> Summary {
    let eid_v4 = records
        .iter()
        .filter(|r| matches!(r.eid, Address::Ipv4(_)))
        .map(|r| r.eid.to_string())
        .collect();
    let masks = records
        .iter()
        .filter(|r| matches!(r.eid, Address::Ipv4(_)))
        .map(|r| r.mask_len.to_string())
        .collect();
    let rlocs = records
        .iter()
        .flat_map(|r| r.rlocs.iter())
        .filter(|l| matches!(l.locator, Address::Ipv4(_)))
        .map(|l| l.locator.to_string())
        .collect();
    let keyid = a.map(|a| u16::from(a.key_id) << 8 | u16::from(a.alg_id));
    (records.len(), eid_v4, masks, rlocs, keyid, vec![])
}

fn inner_iid(m: &ControlMessage) -> Option<u32> {
    let recs = match m {
        ControlMessage::MapRegister(r) => &r.records,
        ControlMessage::MapReply(r) => &r.records,
        _ => return None,
    };
    recs.iter().find_map(|r| match &r.eid {
        Address::Lcaf(l) => match &l.body {
            LcafBody::InstanceId { iid, .. } => Some(*iid),
            _ => None,
        },
        _ => None,
    })
}
