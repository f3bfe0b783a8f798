//! Captured lispers.net and OOR Map-Registers, replayed to a running node configured with
//! their keys and prefixes, are accepted and then answered by `decent lig`.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lisp_decent::present::capture::{FrameItem, read_capture};
use lisp_decent::wire::ControlMessage;
use serde_json::Value;

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registers(file: &str) -> Vec<Vec<u8>> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file);
    read_capture(&p)
        .unwrap()
        .into_iter()
        .filter_map(|i| match i {
            FrameItem::Lisp(d)
                if matches!(
                    ControlMessage::parse(&d.payload),
                    Ok(ControlMessage::MapRegister(_))
                ) =>
            {
                Some(d.payload)
            }
            _ => None,
        })
        .collect()
}

fn lig(eid: &str) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_decent"))
        .args([
            "lig",
            eid,
            "--to",
            "127.0.0.5",
            "--json",
            "--count",
            "2",
            "--timeout",
            "1",
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

#[test]
fn captured_registers_are_accepted_and_answered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _node = Node(
        Command::new(env!("CARGO_BIN_EXE_decent"))
            .args(["run", "--config", "tests/data/replay/node.toml"])
            .current_dir(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut regs = registers("lispers-decent-multicast.pcap");
    regs.extend(registers("lispers-crypto-pair.pcap"));
    regs.extend(registers("oor-ms-two-xtrs.pcap"));
    assert_eq!(regs.len(), 3 + 1 + 4);
    // Until the node is up, its port refuses; send until the answers come.
    let mut ok = false;
    for _ in 0..50 {
        for r in &regs {
            let _ = sock.send_to(r, "127.0.0.5:4342");
        }
        std::thread::sleep(Duration::from_millis(100));
        if lig("10.3.7.7")["negative"] == Value::Bool(false) {
            ok = true;
            break;
        }
    }
    assert!(ok, "the lispers.net registers were not accepted");
    let cases = [
        // lispers.net push-mode registers to 224.1.1.1 (decent-key, key-id 0, HMAC-SHA-256).
        ("10.3.7.7", "[0]10.3.0.0/16", "192.0.2.3"),
        ("10.1.200.1", "[0]10.1.0.0/16", "192.0.2.1"),
        // lispers.net with key-id 1.
        ("10.2.1.1", "[0]10.2.0.0/16", "192.0.2.2"),
        // OOR, HMAC-SHA-1 with two site keys.
        ("10.1.1.2", "[0]10.1.1.0/24", "192.0.2.1"),
        ("10.2.2.2", "[0]10.2.2.0/24", "192.0.2.3"),
    ];
    for (eid, prefix, rloc) in cases {
        let v = lig(eid);
        assert_eq!(v["eid"], prefix, "{eid}: {v}");
        let rlocs: Vec<&str> = v["rlocs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["address"].as_str())
            .collect();
        assert!(rlocs.contains(&rloc), "{eid}: {v}");
    }
    // An OOR register whose RLOC was changed after signing (192.0.2.1 -> 192.0.2.77) is
    // refused: the answer keeps the signed RLOC.
    let oor = regs
        .iter()
        .find(|r| r.ends_with(&[0xc0, 0, 2, 1]) && r[0] == 0x30)
        .unwrap();
    let mut forged = oor.clone();
    let last = forged.len() - 1;
    forged[last] = 77;
    sock.send_to(&forged, "127.0.0.5:4342").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let v = lig("10.1.1.2");
    let rlocs: Vec<&str> = v["rlocs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert!(
        rlocs.contains(&"192.0.2.1") && !rlocs.contains(&"192.0.2.77"),
        "{v}"
    );
}
