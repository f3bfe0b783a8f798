//! NAT detection (issue 14, draft-ermagan-lisp-nat-traversal §5.1-§5.2) in network
//! namespaces: a node behind an nftables masquerade learns from a member that it is behind
//! a NAT, and under which address and port it is seen. Root tests (CI runs them as root);
//! elsewhere they skip, saying why.

mod lab;

use std::time::Duration;

use lab::{Lab, counter, have_root, time_until};

/// Node `i` of this test with RLOC `rloc`; node 1 (192.0.2.1) is the seed.
fn config(i: usize, rloc: &str) -> String {
    lab::replicate_node(
        "t",
        i,
        &format!("[[rloc]]\naddress = \"{rloc}\""),
        "192.0.2.1",
    )
}

/// Node 1 (192.0.2.1) on the public side; node 2 (10.99.0.2) behind a router that
/// masquerades what leaves its public side (192.0.2.254) onto ports 30000-39999. Node 2 asks
/// the seed where its control messages come from, learns it is seen as 192.0.2.254 on a
/// port of that range, counts one NAT detected and says so in its log; the seed answered.
#[test]
fn a_node_behind_a_masquerade_learns_it_is_behind_a_nat() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("nt");
    let public = lab.bridge("pub");
    let private = lab.bridge("prv");
    let r = lab.netns("r");
    let n1 = lab.netns("n1");
    let n2 = lab.netns("n2");
    lab.link(&r, "e1", &public, &["192.0.2.254/24"]);
    lab.link(&r, "e2", &private, &["10.99.0.1/24"]);
    lab.link(&n1, "eth0", &public, &["192.0.2.1/24"]);
    lab.link(&n2, "eth0", &private, &["10.99.0.2/24"]);
    lab::ip(&["-n", &n2, "route", "add", "default", "via", "10.99.0.1"]);
    let nat = lab.dir.path().join("nat.nft");
    std::fs::write(
        &nat,
        "add table ip nat\n\
         add chain ip nat post { type nat hook postrouting priority 100; }\n\
         add rule ip nat post oifname \"e1\" ip protocol udp masquerade to :30000-39999\n",
    )
    .expect("nft script written");
    lab::ns_exec(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab::ns_exec(&r, &["nft", "-f", nat.to_str().expect("utf-8 path")]);
    let node1 = lab.start(&n1, "t1", &config(1, "192.0.2.1"));
    let node2 = lab.start(&n2, "t2", &config(2, "10.99.0.2"));
    // Both are up (and handle the counters signal) once they answer lig.
    lab.wait_resolved(&n1, "10.1.0.1", "192.0.2.1");
    lab.wait_resolved(&n2, "10.2.0.1", "10.99.0.2");
    let detected = time_until(Duration::from_secs(10), || {
        counter(&lab.counters(node2), "control/nat_detected") == 1
    });
    let log = lab.log(node2);
    assert!(
        detected.is_some(),
        "node 2 did not find it is behind the NAT within 10 s; its log:\n{log}"
    );
    eprintln!("nat: node 2 knew it is behind the NAT {detected:?} after both answered lig");
    let line = log
        .lines()
        .find(|l| l.contains("this RLOC is behind a NAT"))
        .unwrap_or_else(|| panic!("no log line says so:\n{log}"));
    assert!(line.contains("rloc=10.99.0.2"), "{line}");
    assert!(line.contains("seen_by=192.0.2.1"), "{line}");
    let port: u16 = line
        .split("seen_as=192.0.2.254:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not seen as the router's address: {line}"));
    assert!((30000..=39999).contains(&port), "{line}");
    let c1 = lab.counters(node1);
    assert!(counter(&c1, "control/info_replies_sent") >= 1, "{c1}");
    assert_eq!(counter(&c1, "control/info_unauthenticated"), 0, "{c1}");
    assert_eq!(counter(&c1, "control/nat_detected"), 0, "{c1}");
}
