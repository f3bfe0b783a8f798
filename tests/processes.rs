//! The three examples/loopback-mesh nodes as real processes on 127.0.0.1-3 (no root), and
//! `decent lig` from each node to each other node's EID. Also `decent check-config`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod procs;
use procs::{Nodes, decent};

fn lig(eid: &str, to: &str) -> Output {
    decent()
        .args([
            "lig",
            eid,
            "--to",
            to,
            "--json",
            "--count",
            "1",
            "--timeout",
            "1",
        ])
        .output()
        .unwrap()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn loopback_mesh_resolves_every_eid_from_every_node() {
    let mut nodes = Nodes(Vec::new());
    for i in 1..=3 {
        let child = decent()
            .current_dir(root())
            .args([
                "run",
                "--config",
                &format!("examples/loopback-mesh/n{i}.toml"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        nodes.0.push(child);
    }
    // Every node answers for every other node's EID-prefix, converged well before the
    // 60 s register interval.
    let start = Instant::now();
    let mut pending: Vec<(usize, usize)> = (1..=3)
        .flat_map(|i| (1..=3).filter(move |j| *j != i).map(move |j| (i, j)))
        .collect();
    while !pending.is_empty() && start.elapsed() < Duration::from_secs(20) {
        pending.retain(|(i, j)| {
            let o = lig(&format!("10.{j}.0.1"), &format!("127.0.0.{i}"));
            let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) else {
                return true;
            };
            // No reply yet (the node is still starting) or not yet positive: ask again.
            if v["reply"] != Value::Bool(true) || v["negative"] != Value::Bool(false) {
                return true;
            }
            assert_eq!(v["eid"], format!("[0]10.{j}.0.0/16"));
            assert_eq!(v["rlocs"][0]["address"], format!("127.0.0.{j}"));
            assert_eq!(v["rlocs"][0]["priority"], 1);
            assert_eq!(v["rlocs"][0]["weight"], 100);
            assert_eq!(v["ttl"], 1440);
            assert!(v["rtt_ms"].as_f64().unwrap() >= 0.0);
            false
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(pending.is_empty(), "not resolved after 20 s: {pending:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "converged in {:?}",
        start.elapsed()
    );
    // A name EID and a negative answer.
    let v: Value = serde_json::from_slice(&lig("'n2'", "127.0.0.3").stdout).unwrap();
    assert_eq!(v["rlocs"][0]["address"], "127.0.0.2");
    let v: Value = serde_json::from_slice(&lig("10.9.9.9", "127.0.0.1").stdout).unwrap();
    assert_eq!(
        (v["negative"].clone(), v["eid"].clone(), v["ttl"].clone()),
        (Value::Bool(true), "[0]10.8.0.0/13".into(), 1.into())
    );
    // Text output, RFC 6835 style.
    let o = decent()
        .args(["lig", "10.3.0.1", "--to", "127.0.0.1"])
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("Mapping entry for EID [0]10.3.0.1:"), "{t}");
    assert!(
        t.contains("[0]10.3.0.0/16, via map-reply, record ttl: 1440"),
        "{t}"
    );
    assert!(t.contains("127.0.0.3"), "{t}");
    // A node that leaves withdraws its prefix from the others at once (TTL 0).
    let mut n3 = nodes.0.pop().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &n3.id().to_string()])
        .status();
    let _ = n3.wait();
    std::thread::sleep(Duration::from_millis(500));
    let v: Value = serde_json::from_slice(&lig("10.3.0.1", "127.0.0.1").stdout).unwrap();
    assert_eq!(v["negative"], Value::Bool(true), "withdrawn: {v}");
}

#[test]
fn lig_without_a_reply_says_so_and_exits_1() {
    let o = decent()
        .args([
            "lig",
            "10.1.0.1",
            "--to",
            "127.0.0.99",
            "--count",
            "1",
            "--timeout",
            "0.3",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("*** No map-reply received ***"));
}

#[test]
fn check_config_prints_every_error_with_its_path_and_run_refuses() {
    for i in 1..=3 {
        let o = decent()
            .args(["check-config", &format!("examples/loopback-mesh/n{i}.toml")])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(root().join("examples/loopback-mesh/n1.toml")).unwrap();
    std::fs::write(
        &bad,
        text.replace("10.1.0.0/16", "10.1.0.0/99")
            .replace("\"replicate\"", "\"carrier-pigeon\""),
    )
    .unwrap();
    for cmd in [
        vec!["check-config", bad.to_str().unwrap()],
        vec!["run", "--config", bad.to_str().unwrap()],
    ] {
        let o = decent().args(&cmd).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("database[0].prefix: \"10.1.0.0/99\" is not an IP prefix"),
            "{e}"
        );
        assert!(e.contains("peer_group.delivery: \"carrier-pigeon\""), "{e}");
    }
}

/// An OOR-like Map-Resolver: it takes only the ECM, reads the inner UDP source port, and
/// answers from another of its addresses (as OOR's MS did from 192.0.2.99 in the vectors).
#[test]
fn lig_works_against_an_oor_like_map_resolver() {
    use lisp_decent::wire::*;
    let rec = EidRecord {
        authoritative: true,
        ..EidRecord::new(
            Address::Ipv4("10.2.2.0".parse().unwrap()),
            24,
            10,
            vec![RlocRecord {
                priority: 1,
                weight: 100,
                m_priority: 255,
                m_weight: 0,
                flags: 5,
                locator: Address::Ipv4("192.0.2.3".parse().unwrap()),
            }],
        )
    };
    let (o, outer_port, inner_port) = lig_oor_like("10.2.2.2", rec, &["--json"]);
    assert_eq!(
        outer_port, inner_port,
        "lig listens on the port it names as inner source"
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["eid"], "[0]10.2.2.0/24");
    assert_eq!(v["replier"], "127.0.0.8");
    assert_eq!(v["kind"], "authoritative");
    assert_eq!(v["covers_eid"], true);
    assert_eq!(v["rlocs"][0]["address"], "192.0.2.3");
}

/// A Map-Resolver at 127.0.0.7 that answers one ECM Map-Request for `eid` with `rec` from
/// another address (127.0.0.8), as OOR's does; runs `decent lig` against it with `args`.
/// Returns lig's output, and the outer and inner source ports of the request.
fn lig_oor_like(
    eid: &str,
    rec: lisp_decent::wire::EidRecord,
    args: &[&str],
) -> (std::process::Output, u16, u16) {
    use lisp_decent::wire::*;
    // One fake Map-Resolver at a time: they share its address.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    // (A moment for the port to come free if another test process just held it.)
    let ms = (0..40)
        .find_map(|_| {
            std::net::UdpSocket::bind("127.0.0.7:4342")
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("127.0.0.7:4342 free");
    let other = std::net::UdpSocket::bind("127.0.0.8:0").unwrap();
    ms.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let want = format!("[0]{eid}/32");
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (n, from) = ms.recv_from(&mut buf).unwrap();
        let ControlMessage::Ecm(ecm) = ControlMessage::parse(&buf[..n]).expect("a well-formed ECM")
        else {
            panic!("not an ECM");
        };
        assert_eq!(ecm.inner_header.dport, 4342);
        let ControlMessage::MapRequest(q) = *ecm.inner else {
            panic!("inner is not a Map-Request")
        };
        assert_eq!(q.records[0].eid_text(), want);
        let itr = q.reply_rloc().expect("an ITR-RLOC");
        let reply = ControlMessage::MapReply(MapReply::new(q.nonce, vec![rec]))
            .to_bytes()
            .unwrap();
        other
            .send_to(
                &reply,
                std::net::SocketAddr::new(itr, ecm.inner_header.sport),
            )
            .unwrap();
        (from.port(), ecm.inner_header.sport)
    });
    let o = decent()
        .args(["lig", eid, "--to", "127.0.0.7", "--count", "1"])
        .args(args)
        .output()
        .unwrap();
    let (outer, inner) = server.join().unwrap();
    (o, outer, inner)
}

/// OOR answered a request for 10.9.9.9 with "negative, 11.8.0.0/13" (PROTOCOL.md O2): lig
/// says the prefix does not contain the EID, in JSON and in text.
#[test]
fn lig_flags_a_negative_reply_that_does_not_cover_the_eid() {
    use lisp_decent::wire::*;
    let wrong = || EidRecord {
        authoritative: true,
        action: action::NATIVELY_FORWARD,
        ..EidRecord::new(Address::Ipv4("11.8.0.0".parse().unwrap()), 13, 15, vec![])
    };
    let (o, _, _) = lig_oor_like("10.9.9.9", wrong(), &["--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (&v["eid"], &v["negative"], &v["covers_eid"]),
        (
            &Value::from("[0]11.8.0.0/13"),
            &Value::Bool(true),
            &Value::Bool(false)
        )
    );
    let (o, _, _) = lig_oor_like("10.9.9.9", wrong(), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("*** [0]11.8.0.0/13 does not contain [0]10.9.9.9"),
        "{text}"
    );
}
