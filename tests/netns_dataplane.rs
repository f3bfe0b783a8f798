//! Root tests of the data plane in network namespaces with topologies of their own:
//! Instance-ID isolation, RLOC failover, IPv6 inside and outside, and ICMP for packets too
//! big for the tunnel. CI runs them as root; elsewhere they skip, saying why, unless
//! LISP_DECENT_REQUIRE_ROOT is set.

mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, counter, have_root, ping};

const SITE: &str = r#"
[site]
[[site.key]]
key_id = 1
secret = "netns-dataplane-key"
[[site.allowed]]
name = "*"
"#;

fn allowed(iids: &[u32], prefix: &str) -> String {
    iids.iter()
        .map(|i| {
            format!(
                "[[site.allowed]]\nprefix = \"{prefix}\"\ninstance_id = {i}\naccept_more_specifics = true\n"
            )
        })
        .collect()
}

fn ping_from(ns: &str, src: &str, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-W", "1", "-i", "0.2",
        ])
        .args(["-I", src, dst])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Node 1 is in two VPNs: Instance-ID 1 (10.1.0.0/16, routing table 101) and Instance-ID 2
/// (10.2.0.0/16, table 102). Node 2 holds 10.0.0.0/24 in Instance-ID 1 and node 3 the same
/// 10.0.0.0/24 in Instance-ID 2. The same address 10.0.0.1 reached from each VPN lands on
/// its own node and only there, and neither node can reach the other VPN.
#[test]
fn two_instance_ids_with_the_same_prefix_stay_isolated() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("iid");
    let br = lab.bridge("b");
    let head = |i: usize| {
        format!(
            "name = \"v{i}\"\nstate_dir = \"state-v{i}\"\n[[rloc]]\naddress = \"192.0.2.{i}\"\n\
             [peer_group]\ngroup = \"224.1.1.1\"\ndelivery = \"replicate\"\nseeds = [\"192.0.2.1\"]\n"
        )
    };
    let n1 = format!(
        "{}[[database]]\nprefix = \"10.1.0.0/16\"\ninstance_id = 1\n\
         [[database]]\nprefix = \"10.2.0.0/16\"\ninstance_id = 2\n\
         [[instance]]\ninstance_id = 1\ntun = \"vpn-a\"\naddresses = [\"10.1.0.1\"]\ntable = 101\n\
         [[instance]]\ninstance_id = 2\ntun = \"vpn-b\"\naddresses = [\"10.2.0.1\"]\ntable = 102\n{SITE}{}",
        head(1),
        allowed(&[1, 2], "10.0.0.0/8")
    );
    let other = |i: usize, iid: u32, dev: &str| {
        format!(
            "{}[[database]]\nprefix = \"10.0.0.0/24\"\ninstance_id = {iid}\n\
             [[instance]]\ninstance_id = {iid}\ntun = \"{dev}\"\naddresses = [\"10.0.0.1\"]\n{SITE}{}",
            head(i),
            allowed(&[1, 2], "10.0.0.0/8")
        )
    };
    let mut nss = Vec::new();
    for i in 1..=3 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &br, &[&format!("192.0.2.{i}/24")]);
        nss.push(ns);
    }
    let v1 = lab.start(&nss[0], "v1", &n1);
    let v2 = lab.start(&nss[1], "v2", &other(2, 1, "vpn-a"));
    let v3 = lab.start(&nss[2], "v3", &other(3, 2, "vpn-b"));
    lab.wait_resolved(&nss[0], "[1]10.0.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[0], "[2]10.0.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[1], "[1]10.1.0.1", "192.0.2.2");
    lab.wait_resolved(&nss[2], "[2]10.2.0.1", "192.0.2.3");
    let decap = |v: &serde_json::Value, iid: &str| {
        counter(v, &format!("data/per_instance/{iid}/decapsulated/packets"))
    };

    // VPN A: 10.1.0.1 -> 10.0.0.1 reaches node 2 in Instance-ID 1, and node 3 sees nothing.
    let (b2, b3) = (lab.counters(v2), lab.counters(v3));
    assert!(ping_from(&nss[0], "10.1.0.1", "10.0.0.1"), "VPN A ping");
    let (a2, a3) = (lab.counters(v2), lab.counters(v3));
    assert!(
        decap(&a2, "1") >= decap(&b2, "1") + 2,
        "node 2 got VPN A's pings"
    );
    assert_eq!(
        counter(&a3, "data/decapsulated/packets"),
        counter(&b3, "data/decapsulated/packets"),
        "node 3 got none of VPN A's packets"
    );

    // VPN B: the same destination from 10.2.0.1 reaches node 3 in Instance-ID 2 only.
    assert!(ping_from(&nss[0], "10.2.0.1", "10.0.0.1"), "VPN B ping");
    let (c2, c3) = (lab.counters(v2), lab.counters(v3));
    assert!(
        decap(&c3, "2") >= decap(&a3, "2") + 2,
        "node 3 got VPN B's pings"
    );
    assert_eq!(
        counter(&c2, "data/decapsulated/packets"),
        counter(&a2, "data/decapsulated/packets"),
        "node 2 got none of VPN B's packets"
    );
    let c1 = lab.counters(v1);
    assert!(
        decap(&c1, "1") >= 2 && decap(&c1, "2") >= 2,
        "replies came back per VPN"
    );

    // Neither VPN reaches into the other: node 2 has no route to VPN B's 10.2.0.1, and
    // node 3 none to VPN A's 10.1.0.1.
    assert!(!ping(&nss[1], "10.2.0.1", "1"), "node 2 reached VPN B");
    assert!(!ping(&nss[2], "10.1.0.1", "1"), "node 3 reached VPN A");
}

/// A VPN with its own table must not leak into the default Instance-ID: node 1 holds
/// 10.5.0.0/16 in Instance-ID 0 (main table) and 10.1.0.0/16 in Instance-ID 1 (table 101);
/// node 2 holds 10.6.0.0/16 in Instance-ID 0. From the VPN's address, 10.6.0.1 is
/// unreachable (the VPN's table ends in "unreachable default") and node 2 receives nothing;
/// from the Instance-ID 0 address it answers (issue 12: it leaked into Instance-ID 0).
#[test]
fn a_vpn_table_never_falls_through_into_another_instance() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("lk");
    let br = lab.bridge("b");
    let head = |i: usize| {
        format!(
            "name = \"k{i}\"\nstate_dir = \"state-k{i}\"\n[[rloc]]\naddress = \"192.0.2.{i}\"\n\
             [peer_group]\ngroup = \"224.1.1.1\"\ndelivery = \"replicate\"\nseeds = [\"192.0.2.1\"]\n"
        )
    };
    let n1 = format!(
        "{}[[database]]\nprefix = \"10.5.0.0/16\"\n\
         [[database]]\nprefix = \"10.1.0.0/16\"\ninstance_id = 1\n\
         [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\naddresses = [\"10.5.0.1\"]\n\
         [[instance]]\ninstance_id = 1\ntun = \"vpn-a\"\naddresses = [\"10.1.0.1\"]\ntable = 101\n{SITE}{}",
        head(1),
        allowed(&[0, 1], "10.0.0.0/8")
    );
    let n2 = format!(
        "{}[[database]]\nprefix = \"10.6.0.0/16\"\n\
         [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\naddresses = [\"10.6.0.1\"]\n{SITE}{}",
        head(2),
        allowed(&[0, 1], "10.0.0.0/8")
    );
    let mut nss = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &br, &[&format!("192.0.2.{i}/24")]);
        nss.push(ns);
    }
    let v1 = lab.start(&nss[0], "k1", &n1);
    let v2 = lab.start(&nss[1], "k2", &n2);
    lab.wait_resolved(&nss[0], "10.6.0.1", "192.0.2.1");
    assert!(
        ping_from(&nss[0], "10.5.0.1", "10.6.0.1"),
        "Instance-ID 0 to Instance-ID 0"
    );
    let before = counter(&lab.counters(v2), "data/decapsulated/packets");
    assert!(
        !ping_from(&nss[0], "10.1.0.1", "10.6.0.1"),
        "the VPN reached into Instance-ID 0"
    );
    let route = Command::new("ip")
        .args([
            "-n", &nss[0], "route", "get", "10.6.0.1", "from", "10.1.0.1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&route.stdout).to_string()
        + &String::from_utf8_lossy(&route.stderr);
    assert!(!text.contains("dev lisp0"), "{text}");
    assert_eq!(
        counter(&lab.counters(v2), "data/decapsulated/packets"),
        before,
        "node 2 got nothing from the VPN"
    );
    // Killed (nothing cleaned up) and started with the VPN in table 102: the rule the first
    // run left for table 101 is removed, the new one is there.
    lab.kill(v1);
    let rules = |ns: &str| {
        let o = Command::new("ip")
            .args(["-n", ns, "rule"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(
        rules(&nss[0]).contains("lookup 101"),
        "left by the killed run"
    );
    lab.start(&nss[0], "k1b", &n1.replace("table = 101", "table = 102"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rules(&nss[0]).contains("lookup 102") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = rules(&nss[0]);
    assert!(r.contains("lookup 102") && !r.contains("lookup 101"), "{r}");
}

fn two_rloc_config(i: usize) -> String {
    format!(
        "name = \"f{i}\"\nstate_dir = \"state-f{i}\"\n\
         [[rloc]]\naddress = \"192.0.2.{i}\"\npriority = 1\n\
         [[rloc]]\naddress = \"198.51.100.{i}\"\npriority = 2\n\
         [[database]]\nprefix = \"10.{i}.0.0/16\"\n\
         [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\naddresses = [\"10.{i}.0.1\"]\n\
         [peer_group]\ngroup = \"224.1.1.1\"\ndelivery = \"replicate\"\nseeds = [\"192.0.2.1\"]\n\
         [timers]\nprobe_interval_secs = 1\n{SITE}{}",
        allowed(&[0], "10.0.0.0/8")
    )
}

/// Pings `dst` from `ns` once a tenth of a second until one is answered; returns how long
/// that took, or `None` after `limit`.
fn until_ping(ns: &str, dst: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "0.3", dst])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Two nodes, each with two RLOCs on two networks (priority 1 on 192.0.2.0/24, 2 on
/// 198.51.100.0/24), probing every second. When node 2's first link goes down, traffic
/// moves to its second RLOC within 3 probe intervals (plus the ping's own timeout), and
/// comes back to the first one when the link is up again.
#[test]
fn traffic_moves_to_the_second_rloc_when_a_link_goes_down() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("fo");
    let b = lab.bridge("b");
    let c = lab.bridge("c");
    let mut nss = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &b, &[&format!("192.0.2.{i}/24")]);
        lab.link(&ns, "eth1", &c, &[&format!("198.51.100.{i}/24")]);
        nss.push(ns);
    }
    let f1 = lab.start(&nss[0], "f1", &two_rloc_config(1));
    lab.start(&nss[1], "f2", &two_rloc_config(2));
    lab.wait_resolved(&nss[0], "10.2.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[1], "10.1.0.1", "192.0.2.2");
    assert!(ping(&nss[0], "10.2.0.1", "3"), "ping over the first RLOCs");
    let sent = |v: &serde_json::Value, rloc: &str| {
        counter(v, &format!("data/per_rloc/{rloc}/encapsulated/packets"))
    };
    let before = lab.counters(f1);
    assert!(sent(&before, "192.0.2.2") >= 3);

    lab::ip(&["-n", &nss[1], "link", "set", "eth0", "down"]);
    let took = until_ping(&nss[0], "10.2.0.1", Duration::from_secs(15))
        .expect("no ping answered within 15 s of the link going down");
    assert!(
        took <= Duration::from_millis(3 * 1100 + 700),
        "traffic took {took:?} to move (3 probe intervals of 1 s are allowed)"
    );
    println!("traffic moved to the second RLOC in {took:?}");
    let moved = lab.counters(f1);
    assert!(
        sent(&moved, "198.51.100.2") >= 1,
        "nothing went to the second RLOC"
    );
    assert!(counter(&moved, "control/rlocs_marked_down") >= 1);

    lab::ip(&["-n", &nss[1], "link", "set", "eth0", "up"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            ping(&nss[0], "10.2.0.1", "1"),
            "ping after the link came back"
        );
        if sent(&lab.counters(f1), "192.0.2.2") > sent(&moved, "192.0.2.2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic did not come back to the first RLOC"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Two nodes whose RLOCs are IPv6 only (2001:db8::1, ::2), each with an IPv4 and an IPv6
/// EID-prefix: IPv6 over IPv6 and IPv4 over IPv6 reach the other node, encrypted.
#[test]
fn ipv6_inside_and_outside() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("v6");
    let b = lab.bridge("b");
    let mut nss = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &b, &[&format!("2001:db8::{i}/64")]);
        let cfg = format!(
            "name = \"s{i}\"\nstate_dir = \"state-s{i}\"\n\
             [[rloc]]\naddress = \"2001:db8::{i}\"\n\
             [[database]]\nprefix = \"10.{i}.0.0/16\"\n\
             [[database]]\nprefix = \"fd00:{i}::/48\"\n\
             [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\naddresses = [\"10.{i}.0.1\", \"fd00:{i}::1\"]\n\
             [peer_group]\ngroup = \"ff05::4c\"\ndelivery = \"replicate\"\nseeds = [\"2001:db8::1\"]\n\
             {SITE}{}{}",
            allowed(&[0], "10.0.0.0/8"),
            allowed(&[0], "fd00::/8")
        );
        nodes.push(lab.start(&ns, &format!("s{i}"), &cfg));
        nss.push(ns);
    }
    lab.wait_resolved(&nss[0], "fd00:2::1", "2001:db8::1");
    lab.wait_resolved(&nss[0], "10.2.0.1", "2001:db8::1");
    lab.wait_resolved(&nss[1], "fd00:1::1", "2001:db8::2");
    lab.wait_resolved(&nss[1], "10.1.0.1", "2001:db8::2");
    assert!(ping(&nss[0], "fd00:2::1", "3"), "IPv6 in IPv6, n1 -> n2");
    assert!(ping(&nss[1], "fd00:1::1", "3"), "IPv6 in IPv6, n2 -> n1");
    assert!(ping(&nss[0], "10.2.0.1", "3"), "IPv4 in IPv6, n1 -> n2");
    let v = lab.counters(nodes[1]);
    assert!(counter(&v, "data/per_rloc/2001:db8::1/decapsulated/packets") >= 6);
    assert!(counter(&v, "data/decrypted") >= 6);
    assert_eq!(counter(&v, "data/drops/clear_refused"), 0);
}

/// A TUN MTU of 1500 on a 1500-byte underlay: a 1500-byte IPv4 packet with DF set cannot
/// cross the tunnel (64 bytes of IPv4, UDP, LISP and AES-GCM overhead), so the node writes
/// ICMP "fragmentation needed" with MTU 1436 back into the TUN; the host learns that path
/// MTU, and a 1436-byte packet then crosses. The same for IPv6 with "packet too big".
#[test]
fn too_big_for_the_tunnel_gets_icmp_back() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("mtu");
    let b = lab.bridge("b");
    let mut nss = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &b, &[&format!("192.0.2.{i}/24")]);
        let cfg = format!(
            "name = \"m{i}\"\nstate_dir = \"state-m{i}\"\n\
             [[rloc]]\naddress = \"192.0.2.{i}\"\n\
             [[database]]\nprefix = \"10.{i}.0.0/16\"\n\
             [[database]]\nprefix = \"fd00:{i}::/48\"\n\
             [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\nmtu = 1500\n\
             addresses = [\"10.{i}.0.1\", \"fd00:{i}::1\"]\n\
             [peer_group]\ngroup = \"224.1.1.1\"\ndelivery = \"replicate\"\nseeds = [\"192.0.2.1\"]\n\
             {SITE}{}{}",
            allowed(&[0], "10.0.0.0/8"),
            allowed(&[0], "fd00::/8")
        );
        nodes.push(lab.start(&ns, &format!("m{i}"), &cfg));
        nss.push(ns);
    }
    lab.wait_resolved(&nss[0], "10.2.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[1], "10.1.0.1", "192.0.2.2");
    assert!(ping(&nss[0], "10.2.0.1", "1"), "small ping");
    let ping_size = |dst: &str, size: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &nss[0], "ping", "-c", "1", "-W", "1", "-M", "do",
            ])
            .args(["-s", size, dst])
            .output()
            .unwrap()
            .status
            .success()
    };
    // 1472 + 28 = 1500 bytes: refused with an ICMP error, which the kernel remembers.
    assert!(!ping_size("10.2.0.1", "1472"), "a 1500-byte packet crossed");
    let route = Command::new("ip")
        .args(["-n", &nss[0], "route", "get", "10.2.0.1"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(route.contains("mtu 1436"), "no learned path MTU: {route}");
    assert!(
        ping_size("10.2.0.1", "1408"),
        "a 1436-byte packet did not cross"
    );
    // IPv6 over an IPv4 underlay: the same overhead, "packet too big" with MTU 1436.
    assert!(
        !ping_size("fd00:2::1", "1452"),
        "a 1500-byte IPv6 packet crossed"
    );
    let route = Command::new("ip")
        .args(["-n", &nss[0], "-6", "route", "get", "fd00:2::1"])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("mtu 1436"),
        "no learned IPv6 path MTU: {route}"
    );
    assert!(
        ping_size("fd00:2::1", "1388"),
        "a 1436-byte IPv6 packet did not cross"
    );
    let v = lab.counters(nodes[0]);
    assert!(counter(&v, "data/icmp_too_big") >= 2);
    assert!(counter(&v, "data/drops/too_big") >= 2);
}

/// Two lisp-decent nodes, each taking the other for a lispers.net peer (`[[data_plane.peer]]
/// profile = "lispers-cs6"`), with two data-plane workers each: pings and a TCP transfer
/// both ways arrive with their content intact, decrypted under lispers.net's suite; every
/// data packet on the wire leaves from the control port 4342 to the data port 4341 with a
/// key-id (lispers.net sends and expects its data so, PROTOCOL.md §5.2 item 12: each worker
/// sends through its handle on the control socket), and nothing fails its ICV or replays.
#[test]
fn lispers_profile_data_leaves_from_the_control_port_on_every_worker() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let tshark = lab::have_tshark();
    let mut lab = Lab::new("cs6");
    let b = lab.bridge("b");
    let mut nss = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &b, &[&format!("192.0.2.{i}/24")]);
        nss.push(ns);
    }
    let config = |i: usize| {
        format!(
            "name = \"c{i}\"\nstate_dir = \"state-c{i}\"\n[[rloc]]\naddress = \"192.0.2.{i}\"\n\
             [[database]]\nprefix = \"10.{i}.0.0/16\"\n\
             [[instance]]\ninstance_id = 0\ntun = \"lisp0\"\naddresses = [\"10.{i}.0.1\"]\n\
             [peer_group]\ngroup = \"224.1.1.1\"\ndelivery = \"replicate\"\nseeds = [\"192.0.2.1\"]\n\
             [data_plane]\nworkers = 2\n[[data_plane.peer]]\nrlocs = [\"192.0.2.{}\"]\n\
             profile = \"lispers-cs6\"\n{SITE}{}",
            3 - i,
            allowed(&[0], "10.0.0.0/8")
        )
    };
    let c1 = lab.start(&nss[0], "c1", &config(1));
    let c2 = lab.start(&nss[1], "c2", &config(2));
    lab.wait_resolved(&nss[0], "10.2.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[1], "10.1.0.1", "192.0.2.2");
    let capture =
        tshark.then(|| lab::Capture::start(&nss[0], "eth0", lab.dir.path().join("cs6.pcap")));
    assert!(ping(&nss[0], "10.2.0.1", "3"), "ping c1 -> c2");
    assert!(ping(&nss[1], "10.1.0.1", "3"), "ping c2 -> c1");
    for (from, to, eid, port) in [(0, 1, "10.2.0.1", 5101), (1, 0, "10.1.0.1", 5102)] {
        assert!(
            lab::tcp_transfer(
                &nss[from],
                &nss[to],
                format!("{eid}:{port}").parse().unwrap(),
                1 << 20,
                Duration::ZERO
            ),
            "TCP to {eid} arrived changed or not at all"
        );
    }
    for node in [c1, c2] {
        let c = lab.counters(node);
        assert!(counter(&c, "data/decrypted") > 0, "nothing decrypted");
        for d in ["icv_failed", "replayed", "no_key"] {
            assert_eq!(counter(&c, &format!("data/drops/{d}")), 0, "drops {d}");
        }
    }
    if let Some(c) = capture {
        use lisp_decent::present::capture::{FrameItem, read_capture};
        let pcap = c.stop();
        let mut data = 0;
        for item in read_capture(&pcap).expect("the capture is readable") {
            let FrameItem::Lisp(d) = item else { continue };
            if d.dport != lisp_decent::wire::DATA_PORT {
                continue;
            }
            // Control carried in data (the group's replication) leaves from the data port.
            let h = lisp_decent::wire::DataHeader::parse(&d.payload).expect("a LISP header");
            if h.instance_id() == Some(lisp_decent::wire::CONTROL_INSTANCE_ID) {
                continue;
            }
            assert_eq!(
                d.sport,
                lisp_decent::wire::CONTROL_PORT,
                "frame {}: lispers-cs6 data from port {}",
                d.frame,
                d.sport
            );
            assert_ne!(d.payload[0] & 3, 0, "frame {}: data in clear", d.frame);
            data += 1;
        }
        assert!(data >= 100, "only {data} data frames captured");
    }
}
