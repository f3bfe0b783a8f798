//! Three nodes in their own network namespaces on a bridge, in push mode over underlay
//! multicast (group 224.1.1.1), their RLOCs given as the interface name `eth0`. Each node
//! must answer lig for the other two. Needs root (CI runs it as root); elsewhere it skips,
//! saying why, unless LISP_DECENT_REQUIRE_ROOT is set.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed");
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Namespaces and processes of one test; removed when it ends, also when it fails.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }
}

fn config(i: usize) -> String {
    format!(
        r#"name = "mc{i}"
state_dir = "state{i}"
[[rloc]]
interface = "eth0"
family = "ipv4"
[[database]]
prefix = "10.{i}.0.0/16"
[peer_group]
group = "224.1.1.1"
delivery = "multicast"
multicast_ttl = 8
[site]
[[site.key]]
key_id = 1
secret = "netns-multicast-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
"#
    )
}

#[test]
fn three_namespaces_over_underlay_multicast() {
    if !is_root() {
        assert!(
            std::env::var_os("LISP_DECENT_REQUIRE_ROOT").is_none(),
            "root is required here (LISP_DECENT_REQUIRE_ROOT is set)"
        );
        println!("SKIPPED: network namespaces need root (CI runs this as root)");
        return;
    }
    let mut lab = Lab {
        prefix: format!("dlt{}", std::process::id() % 100000),
        namespaces: Vec::new(),
        children: Vec::new(),
        dir: tempfile::tempdir().unwrap(),
    };
    let br = format!("{}b", lab.prefix);
    ip(&["netns", "add", &br]);
    lab.namespaces.push(br.clone());
    ip(&[
        "-n",
        &br,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ]);
    ip(&["-n", &br, "link", "set", "br0", "up"]);
    for i in 1..=3 {
        let ns = lab.ns(i);
        ip(&["netns", "add", &ns]);
        lab.namespaces.push(ns.clone());
        let v = format!("v{i}");
        ip(&[
            "-n", &br, "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", &br, "link", "set", &v, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("192.0.2.{i}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        let cfg = lab.dir.path().join(format!("mc{i}.toml"));
        std::fs::write(&cfg, config(i)).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                env!("CARGO_BIN_EXE_decent"),
                "run",
                "--config",
                cfg.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.children.push(child);
    }
    let start = Instant::now();
    let mut pending: Vec<(usize, usize)> = (1..=3)
        .flat_map(|i| (1..=3).filter(move |j| *j != i).map(move |j| (i, j)))
        .collect();
    while !pending.is_empty() && start.elapsed() < Duration::from_secs(30) {
        pending.retain(|(i, j)| {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &lab.ns(*i),
                    env!("CARGO_BIN_EXE_decent"),
                    "lig",
                    &format!("10.{j}.0.1"),
                ])
                .args([
                    "--to",
                    &format!("192.0.2.{i}"),
                    "--json",
                    "--count",
                    "1",
                    "--timeout",
                    "0.5",
                ])
                .output()
                .unwrap();
            let Ok(v) = serde_json::from_slice::<Value>(&o.stdout) else {
                return true;
            };
            if v["negative"] != Value::Bool(false) {
                return true;
            }
            assert_eq!(v["eid"], format!("[0]10.{j}.0.0/16"));
            assert_eq!(v["rlocs"][0]["address"], format!("192.0.2.{j}"));
            false
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        pending.is_empty(),
        "not resolved over multicast after 30 s: {pending:?}"
    );
    // Registers were multicast to the group, not unicast: no seeds are configured.
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "converged in {:?}",
        start.elapsed()
    );
}

/// Removes the scripts/mesh-netns.sh mesh when the test ends, also when it fails.
struct Mesh;

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["scripts/mesh-netns.sh", "down"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

fn ping(ns: &str, dst: &str, count: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", count, "-W", "1", "-i", "0.2", dst,
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// scripts/mesh-netns.sh brings up three nodes with TUN devices; hosts reach each other
/// through encrypted LISP (the first packet included), in both push forms. A capture on the
/// bridge shows only UDP 4341 / 4342, every data packet with a key-id in its K bits, and
/// no ICMP in clear.
#[test]
fn mesh_netns_script_and_ping_through_lisp() {
    if !is_root() {
        assert!(
            std::env::var_os("LISP_DECENT_REQUIRE_ROOT").is_none(),
            "root is required here"
        );
        println!("SKIPPED: network namespaces and TUN devices need root (CI runs this as root)");
        return;
    }
    for mode in ["replicate", "multicast"] {
        let _mesh = Mesh;
        let up = Command::new("bash")
            .args(["scripts/mesh-netns.sh", "up", "3", "--mode", mode])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(up.success(), "mesh-netns.sh up 3 --mode {mode}");
        let have_tshark = Command::new("tshark").arg("--version").output().is_ok();
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("bridge.pcap");
        let mut capture = if have_tshark {
            let c = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    "dl-br",
                    "tshark",
                    "-q",
                    "-i",
                    "br0",
                    "-w",
                    pcap.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(1500));
            Some(c)
        } else {
            assert!(
                std::env::var_os("LISP_DECENT_REQUIRE_TSHARK").is_none(),
                "tshark is required here"
            );
            println!("SKIPPED capture check: tshark is not installed");
            None
        };
        // The very first packet to a known EID arrives (held while its key is agreed).
        assert!(
            ping("dl-n1", "10.3.0.1", "1"),
            "{mode}: first ping n1 -> n3"
        );
        for (from, to) in [
            ("dl-n1", "10.2.0.1"),
            ("dl-n2", "10.3.0.1"),
            ("dl-n3", "10.1.0.1"),
        ] {
            assert!(ping(from, to, "3"), "{mode}: {from} -> {to}");
        }
        if let Some(c) = capture.as_mut() {
            std::thread::sleep(Duration::from_millis(500));
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
            check_capture(&pcap, mode);
        }
        // An EID nobody registered is not routed into the tunnel.
        assert!(
            !ping("dl-n1", "10.9.0.1", "1"),
            "{mode}: 10.9.0.1 must not answer"
        );
    }
}

/// Every UDP datagram on the bridge is LISP (4341 / 4342); every data packet but the
/// control-in-data of Instance-ID 0xFFFFFF has a key-id; tshark finds no ICMP at all.
fn check_capture(pcap: &std::path::Path, mode: &str) {
    use lisp_decent::cli::capture::{FrameItem, read_capture};
    use lisp_decent::wire::{CONTROL_INSTANCE_ID, DataHeader};
    let items = read_capture(pcap).expect("the capture is readable");
    let mut data = 0;
    for item in &items {
        let FrameItem::Lisp(d) = item else { continue };
        if d.is_data() {
            let h = DataHeader::parse(&d.payload).unwrap();
            if h.instance_id() != Some(CONTROL_INSTANCE_ID) {
                assert_ne!(
                    h.key_id, 0,
                    "{mode}: frame {} is LISP data in clear",
                    d.frame
                );
                data += 1;
            }
        }
    }
    assert!(
        data >= 14,
        "{mode}: {data} encrypted data packets seen (7 pings there and back)"
    );
    let o = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "icmp || (udp && !(udp.port == 4341 || udp.port == 4342))",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "{mode}: ICMP or non-LISP UDP on the bridge: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}
