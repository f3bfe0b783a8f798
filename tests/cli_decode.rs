//! `decent decode` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn decent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_decent"))
        .args(args)
        .output()
        .unwrap()
}

fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect()
}

const VECTORS: [(&str, &str, usize); 7] = [
    ("lispers-single-node.pcap", "interop-key", 11),
    ("lispers-decent-multicast.pcap", "decent-key", 7),
    ("lispers-crypto-pair.pcap", "interop-key", 28),
    ("oor-ms-two-xtrs.pcap", "oor-test-key", 55),
    ("oor-xtr-only.pcap", "oor-test-key", 10),
    ("lispers-cs6-live.pcap", "interop-key", 26),
    ("lispers-signed-probes.pcap", "interop-key", 15),
];

#[test]
fn every_vector_prints_every_lisp_packet_and_authenticates() {
    for (file, key, count) in VECTORS {
        let p = vector(file);
        let o = decent(&[
            "decode",
            "--pcap",
            p.to_str().unwrap(),
            "--key",
            key,
            "--key",
            "oor-test-key2",
        ]);
        assert!(
            o.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8_lossy(&o.stdout);
        let packets = text
            .lines()
            .filter(|l| l.starts_with("frame ") && !l.contains("note:"))
            .count();
        assert_eq!(packets, count, "{file}");
        assert!(
            !text.contains("FAILED") && !text.contains("error"),
            "{file}:\n{text}"
        );
        let regs = text.matches("Map-Register").count() + text.matches("Map-Notify").count();
        assert_eq!(text.matches("auth: ok with key").count(), regs, "{file}");
    }
}

#[test]
fn json_lines_carry_the_documented_fields() {
    let p = vector("lispers-single-node.pcap");
    let o = decent(&[
        "decode",
        "--pcap",
        p.to_str().unwrap(),
        "--json",
        "--key",
        "wrong",
        "--key",
        "interop-key",
    ]);
    assert!(o.status.success());
    let v = json_lines(&o);
    assert_eq!(v.len(), 11);
    let reg = &v[0];
    assert_eq!(reg["frame"], 1);
    assert_eq!(reg["src"], "192.0.2.1");
    assert_eq!(reg["dst"], "192.0.2.100");
    assert_eq!(reg["sport"], 48155);
    assert_eq!(reg["dport"], 4342);
    assert_eq!(reg["type"], "map-register");
    assert_eq!(
        reg["nonce"], "01dfdfdfddccbbaa",
        "nonce bytes as on the wire"
    );
    assert_eq!(reg["records"][0]["eid"], "[0]10.1.1.0/24");
    assert_eq!(reg["records"][0]["ttl"], 3);
    assert_eq!(reg["records"][0]["rlocs"][0]["address"], "192.0.2.1");
    assert_eq!(reg["auth"], "ok");
    assert_eq!(reg["key"], "interop-key");
    let ecm = v.iter().find(|o| o["type"] == "ecm").unwrap();
    assert_eq!(ecm["inner"]["type"], "map-request");
    assert_eq!(ecm["records"][0]["eid"], "[0]10.1.1.5/32");
    let reply = v.iter().find(|o| o["type"] == "map-reply").unwrap();
    assert_eq!(reply["auth"], "unchecked");
    assert_eq!(reply["records"][0]["ttl"], 1440);
}

#[test]
fn wrong_key_says_failed() {
    let p = vector("oor-xtr-only.pcap");
    let o = decent(&[
        "decode",
        "--pcap",
        p.to_str().unwrap(),
        "--json",
        "--key",
        "nope",
    ]);
    let v = json_lines(&o);
    let reg = v.iter().find(|o| o["type"] == "map-register").unwrap();
    assert_eq!(reg["auth"], "failed");
    assert!(reg["key"].is_null());
    let o = decent(&["decode", "--pcap", p.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("auth: unchecked"));
}

/// Our probes and replies signed with the site key (crypto::kx_auth) decode, with the
/// signature's verdict: ok with the site key, FAILED with another, unchecked without.
#[test]
fn signed_key_exchanges_show_their_signature() {
    let p = vector("lispers-signed-probes.pcap");
    let p = p.to_str().unwrap();
    let verdicts = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["decode", "--pcap", p, "--json"];
        a.extend_from_slice(args);
        json_lines(&decent(&a))
            .iter()
            .filter(|o| o["src"] == "192.0.2.11")
            .map(|o| {
                o["key_exchange_signature"]
                    .as_str()
                    .unwrap_or("none")
                    .to_string()
            })
            .collect()
    };
    let ok = verdicts(&["--key", "interop-key"]);
    assert!(ok.len() >= 6 && ok.iter().all(|v| v == "ok"), "{ok:?}");
    assert!(verdicts(&["--key", "nope"]).iter().all(|v| v == "failed"));
    assert!(verdicts(&[]).iter().all(|v| v == "unchecked"));
    let o = decent(&["decode", "--pcap", p, "--key", "interop-key"]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("key-exchange signature: ok with key 'interop-key'")
    );
}

#[test]
fn hex_with_spaces_and_the_key_id_syntax() {
    // PROTOCOL.md test vector 2 (OOR), as an operator pastes it.
    let hex = "30 00 01 01 9d 6f 1e 7b 81 1d 2e 99 00 01 00 14 8a 99 a2 92 bc e3 b9 19 61 7c 03 1a d5 4f 17 37 \
               f8 c0 43 1d 00 00 00 0a 01 18 10 00 00 00 00 01 0a 01 01 00 01 64 ff 00 00 05 00 01 c0 00 02 01";
    let o = decent(&["decode", hex, "--key", "[0]oor-test-key"]);
    assert!(o.status.success());
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("Map-Register, flags: M"), "{t}");
    assert!(t.contains("EID-record [0]10.1.1.0/24, ttl 10 mins"), "{t}");
    assert!(
        t.contains("RLOC 192.0.2.1, up/uw/mp/mw: 1/100/255/0, flags: LpR"),
        "{t}"
    );
    assert!(t.contains("auth: ok with key '[0]oor-test-key'"), "{t}");
    // Under key-id 1 the key is not tried.
    let o = decent(&["decode", hex, "--key", "[1]oor-test-key", "--json"]);
    assert_eq!(json_lines(&o)[0]["auth"], "failed");
}

#[test]
fn bad_input_names_field_and_offset_and_exits_1() {
    let o = decent(&["decode", "3200080101dfdfdfddccbbaa01020020b9660d46"]);
    assert_eq!(o.status.code(), Some(1));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("Authentication Data at offset 16"), "{t}");
    let o = decent(&["decode", "zz"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not valid hex"));
    let o = decent(&["decode", "--pcap", "/nonexistent.pcap"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_bad_frame_does_not_stop_the_rest_of_the_capture() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.pcapng.pcap");
    let good = hex::decode("2000000111223344556677880000000a0018100000000001").unwrap();
    let mut good = good;
    good.extend_from_slice(&[10, 1, 1, 0]);
    let bad = hex::decode("2000000111223344556677880000000a01181000").unwrap();
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut w = PcapWriter::with_header(
            f,
            PcapHeader {
                datalink: pcap_file::DataLink::RAW,
                ..Default::default()
            },
        )
        .unwrap();
        for payload in [&bad, &good] {
            let mut b = Vec::new();
            etherparse::PacketBuilder::ipv6(
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(4342, 4342)
            .write(&mut b, payload)
            .unwrap();
            w.write_packet(&PcapPacket::new(
                std::time::Duration::ZERO,
                b.len() as u32,
                &b,
            ))
            .unwrap();
        }
    }
    let o = decent(&["decode", "--pcap", path.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json_lines(&o);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["error_field"], "Map-Version");
    assert_eq!(v[0]["error_offset"], 20);
    assert_eq!(v[0]["src"], "2001:db8::1");
    assert_eq!(v[1]["type"], "map-reply");
    assert_eq!(v[1]["records"][0]["eid"], "[0]10.1.1.0/24");
}

#[test]
fn data_packets_show_their_header_and_the_decent_control_path() {
    // A data packet with Instance-ID 0xFFFFFF carrying a Map-Register to group 224.1.1.1
    // (LISP-Decent head-end replication, RFC 9962 §4).
    use lisp_decent::wire::*;
    // PROTOCOL.md test vector 2.
    let reg = hex::decode(concat!(
        "300001019d6f1e7b811d2e99000100148a99a292bce3b919617c031ad54f1737",
        "f8c0431d0000000a01181000000000010a0101000164ff0000050001c0000201"
    ))
    .unwrap();
    let hdr = IpUdp::new(
        "192.0.2.1".parse().unwrap(),
        "224.1.1.1".parse().unwrap(),
        64,
        4342,
        4342,
    )
    .unwrap();
    let mut pkt = vec![0u8; 8];
    DataHeader::with_instance(CONTROL_INSTANCE_ID, 1, 0)
        .emit(&mut pkt)
        .unwrap();
    hdr.emit(&reg, &mut pkt).unwrap();
    let o = decent(&["decode", "--data", "--json", &hex::encode(&pkt)]);
    let v = json_lines(&o);
    assert_eq!(v[0]["type"], "data");
    assert_eq!(v[0]["instance_id"], CONTROL_INSTANCE_ID);
    assert_eq!(v[0]["inner_ip"]["dst"], "224.1.1.1");
    assert_eq!(v[0]["inner"]["type"], "map-register");
    assert_eq!(v[0]["records"][0]["eid"], "[0]10.1.1.0/24");
}

#[test]
fn pcapng_gives_the_same_packets_as_pcap() {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    let src = vector("lispers-single-node.pcap");
    let dir = tempfile::tempdir().unwrap();
    let ng = dir.path().join("single.pcapng");
    {
        let mut r = PcapReader::new(std::fs::File::open(&src).unwrap()).unwrap();
        let mut w = PcapNgWriter::new(std::fs::File::create(&ng).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: pcap_file::DataLink::ETHERNET,
            snaplen: 65535,
            options: vec![],
        })
        .unwrap();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: p.timestamp,
                original_len: p.orig_len,
                data: p.data,
                options: vec![],
            })
            .unwrap();
        }
    }
    let a = decent(&["decode", "--json", "--pcap", src.to_str().unwrap()]);
    let b = decent(&["decode", "--json", "--pcap", ng.to_str().unwrap()]);
    assert!(b.status.success());
    assert_eq!(json_lines(&a), json_lines(&b));
    assert_eq!(json_lines(&b).len(), 11);
}
