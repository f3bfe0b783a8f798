//! NAT detection and traversal (issue 14, draft-ermagan-lisp-nat-traversal §5) in network
//! namespaces with real TUN devices behind nftables masquerades: a node behind a NAT learns
//! from a member that it is behind one, and under which address and port it is seen; nodes
//! behind NATs reach everyone, and each other, through an RTR, encrypted. Root tests (CI
//! runs them as root); elsewhere they skip, saying why. `--nocapture` prints the figures the
//! README gives.

mod lab;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab::{Lab, counter, have_root, ping_once, time_until};

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
    let (public, private, _r) = behind_router_a(&mut lab);
    let n1 = lab.netns("n1");
    let n2 = lab.netns("n2");
    lab.link(&n1, "eth0", &public, &["192.0.2.1/24"]);
    lab.link(&n2, "eth0", &private, &["10.99.0.2/24"]);
    lab::ip(&["-n", &n2, "route", "add", "default", "via", "10.99.0.1"]);
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

/// A router in namespace `r` between the public bridge (its address `public`) and a private
/// one (`inside`, its side of the private /24), masquerading what leaves its public side
/// onto ports 30000-39999 (so no source port survives the NAT, and each new flow may get a
/// new port).
fn nat_router(
    lab: &mut Lab,
    r: &str,
    public_br: &str,
    public: &str,
    private_br: &str,
    inside: &str,
) {
    lab.link(r, "e1", public_br, &[public]);
    lab.link(r, "e2", private_br, &[inside]);
    let nat = lab.dir.path().join(format!("{r}.nft"));
    std::fs::write(
        &nat,
        "add table ip nat\n\
         add chain ip nat post { type nat hook postrouting priority 100; }\n\
         add rule ip nat post oifname \"e1\" ip protocol udp masquerade to :30000-39999\n",
    )
    .expect("nft script written");
    lab::ns_exec(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab::ns_exec(r, &["nft", "-f", nat.to_str().expect("utf-8 path")]);
}

/// The public bridge, the private one behind router A (192.0.2.254 outside, 10.99.0.1
/// inside, masquerading), and router A's namespace.
fn behind_router_a(lab: &mut Lab) -> (String, String, String) {
    let public = lab.bridge("pub");
    let private = lab.bridge("pa");
    let ra = lab.netns("ra");
    nat_router(
        lab,
        &ra,
        &public,
        "192.0.2.254/24",
        &private,
        "10.99.0.1/24",
    );
    (public, private, ra)
}

/// Like [`nat_router`], but masquerading without a port range: a node's source port is
/// kept, so it is seen under the same address and port whatever it sends to (an
/// endpoint-independent mapping). With `full_cone`, the data port is also forwarded to the
/// inside node `inside_node`: anyone may reach it there (endpoint-independent filtering).
fn cone_router(
    lab: &mut Lab,
    r: &str,
    (public_br, public): (&str, &str),
    (private_br, inside): (&str, &str),
    full_cone: Option<&str>,
) {
    lab.link(r, "e1", public_br, &[public]);
    lab.link(r, "e2", private_br, &[inside]);
    let mut rules = String::from(
        "add table ip nat\n\
         add chain ip nat post { type nat hook postrouting priority 100; }\n\
         add rule ip nat post oifname \"e1\" ip protocol udp masquerade\n",
    );
    if let Some(node) = full_cone {
        rules.push_str(&format!(
            "add chain ip nat pre {{ type nat hook prerouting priority -100; }}\n\
             add rule ip nat pre iifname \"e1\" udp dport 4341 dnat to {node}:4341\n"
        ));
    }
    let nat = lab.dir.path().join(format!("{r}.nft"));
    std::fs::write(&nat, rules).expect("nft script written");
    lab::ns_exec(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    lab::ns_exec(r, &["nft", "-f", nat.to_str().expect("utf-8 path")]);
}

/// A direct path between two nodes behind NATs that allow it: node 2 behind router A (it
/// keeps source ports and lets in only answers), node 3 behind router C (it keeps source
/// ports and forwards the data port: a full cone); node 1 is the RTR. Once pings cross
/// between 2 and 3 through the RTR, the RTR introduces them, they probe each other and
/// agree keys, and the pings go directly: the RTR relays no more of them, both say so in
/// their status. Then router A drops everything between the two NATs: the pings go back
/// through the RTR by themselves; the figure is printed.
#[test]
fn two_nodes_behind_nats_that_allow_it_talk_directly() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("nd");
    let public = lab.bridge("pub");
    let private_a = lab.bridge("pa");
    let private_c = lab.bridge("pc");
    let ra = lab.netns("ra");
    let rc = lab.netns("rc");
    cone_router(
        &mut lab,
        &ra,
        (&public, "192.0.2.254/24"),
        (&private_a, "10.99.0.1/24"),
        None,
    );
    cone_router(
        &mut lab,
        &rc,
        (&public, "192.0.2.252/24"),
        (&private_c, "10.97.0.1/24"),
        Some("10.97.0.2"),
    );
    let n: Vec<String> = (1..=3).map(|i| lab.netns(&format!("n{i}"))).collect();
    lab.link(&n[0], "eth0", &public, &["192.0.2.1/24"]);
    lab.link(&n[1], "eth0", &private_a, &["10.99.0.2/24"]);
    lab.link(&n[2], "eth0", &private_c, &["10.97.0.2/24"]);
    lab::ip(&["-n", &n[1], "route", "add", "default", "via", "10.99.0.1"]);
    lab::ip(&["-n", &n[2], "route", "add", "default", "via", "10.97.0.1"]);
    let mut nodes = Vec::new();
    for (i, rloc) in ["192.0.2.1", "10.99.0.2", "10.97.0.2"].iter().enumerate() {
        let mut c = config(i + 1, rloc).replace("listen = \"off\"", "listen = \"127.0.0.1:8380\"");
        if i == 0 {
            c.push_str("[nat]\nrtr = true\n");
        }
        nodes.push(lab.start(&n[i], &format!("t{}", i + 1), &c));
    }
    lab.wait_tunnel(&n[1], "10.2.0.1", "10.3.0.1");
    lab.wait_tunnel(&n[2], "10.3.0.1", "10.2.0.1");
    // Both sides hold a direct path within a few seconds.
    let up = |ns: &str| {
        show(ns, "status")["direct_paths"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["up"] == true))
    };
    let direct = time_until(Duration::from_secs(10), || {
        lab::ping_once(&n[1], "10.2.0.1", "10.3.0.1");
        up(&n[1]) && up(&n[2])
    });
    assert!(
        direct.is_some(),
        "no direct path: {} / {}; logs in {}",
        show(&n[1], "status")["direct_paths"],
        show(&n[2], "status")["direct_paths"],
        lab.dir.path().display()
    );
    eprintln!("direct path: up {direct:?} after pings crossed through the RTR");
    let relayed = |lab: &Lab| counter(&lab.counters(nodes[0]), "data/relayed");
    let before = relayed(&lab);
    let there = lab::ping_series(&n[1], "10.2.0.1", "10.3.0.1", "0.05", 20);
    let back = lab::ping_series(&n[2], "10.3.0.1", "10.2.0.1", "0.05", 20);
    assert_eq!(lab::answered(there).len(), 20);
    assert_eq!(lab::answered(back).len(), 20);
    let after = relayed(&lab);
    assert!(
        after - before < 5,
        "the RTR relayed {} packets of a direct path",
        after - before
    );
    // Router A drops everything between the two NATs: back through the RTR.
    let cut = lab.dir.path().join("cut.nft");
    std::fs::write(
        &cut,
        "add table ip cut\n\
         add chain ip cut block { type filter hook forward priority 0; }\n\
         add rule ip cut block ip daddr 192.0.2.252 drop\n\
         add rule ip cut block ip saddr 192.0.2.252 drop\n",
    )
    .expect("nft script written");
    let there = lab::ping_series(&n[1], "10.2.0.1", "10.3.0.1", "0.02", 250);
    let back = lab::ping_series(&n[2], "10.3.0.1", "10.2.0.1", "0.02", 250);
    std::thread::sleep(Duration::from_secs(1));
    lab::ns_exec(&ra, &["nft", "-f", cut.to_str().expect("utf-8 path")]);
    let (there, back) = (lab::answered(there), lab::answered(back));
    let gap = |seqs: &[u32]| -> u32 {
        seqs.windows(2)
            .map(|w| w[1] - w[0] - 1)
            .max()
            .unwrap_or(u32::MAX)
    };
    eprintln!(
        "direct path cut: the longest run of lost pings (20 ms apart) was {} from node 2 to 3 \
         and {} from 3 to 2",
        gap(&there),
        gap(&back)
    );
    assert!(there.last().is_some_and(|l| *l >= 240), "{there:?}");
    assert!(back.last().is_some_and(|l| *l >= 240), "{back:?}");
    assert!(
        gap(&there) <= 100 && gap(&back) <= 100,
        "logs in {}",
        lab.dir.path().display()
    );
    assert!(relayed(&lab) > after, "not back through the RTR");
}

/// NAT traversal through an RTR (draft §5.1.1, §5.3): node 1 (192.0.2.1, the seed) serves
/// as RTR; nodes 2 and 4 sit behind one NAT (router A, 192.0.2.254), node 3 behind another
/// (router B, 192.0.2.253); both masquerade onto ports 30000-39999. Each NATed node learns
/// it is behind a NAT, registers through the RTR, and then every pair pings and moves 200 KB
/// over TCP both ways through the encrypted tunnels: one node behind a NAT (2 and 1), two
/// behind two NATs (2 and 3), two behind the same NAT (2 and 4). Then router A forgets its
/// bindings (conntrack flushed) while pings flow both ways between 2 and 3: traffic comes
/// back by itself; the figure is printed.
#[test]
fn nodes_behind_nats_reach_each_other_through_the_rtr() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("nx");
    let (public, private_a, ra) = behind_router_a(&mut lab);
    let private_b = lab.bridge("pb");
    let rb = lab.netns("rb");
    nat_router(
        &mut lab,
        &rb,
        &public,
        "192.0.2.253/24",
        &private_b,
        "10.98.0.1/24",
    );
    let n: Vec<String> = (1..=4).map(|i| lab.netns(&format!("n{i}"))).collect();
    lab.link(&n[0], "eth0", &public, &["192.0.2.1/24"]);
    lab.link(&n[1], "eth0", &private_a, &["10.99.0.2/24"]);
    lab.link(&n[2], "eth0", &private_b, &["10.98.0.2/24"]);
    lab.link(&n[3], "eth0", &private_a, &["10.99.0.3/24"]);
    for (ns, gw) in [
        (&n[1], "10.99.0.1"),
        (&n[2], "10.98.0.1"),
        (&n[3], "10.99.0.1"),
    ] {
        lab::ip(&["-n", ns, "route", "add", "default", "via", gw]);
    }
    let rlocs = ["192.0.2.1", "10.99.0.2", "10.98.0.2", "10.99.0.3"];
    let mut nodes = Vec::new();
    for (i, rloc) in rlocs.iter().enumerate() {
        // The API of every node listens on its loopback (for `decent show`).
        let mut c = config(i + 1, rloc).replace("listen = \"off\"", "listen = \"127.0.0.1:8380\"");
        if i == 0 {
            c.push_str("[nat]\nrtr = true\n");
        }
        nodes.push(lab.start(&n[i], &format!("t{}", i + 1), &c));
    }
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let through = time_until(Duration::from_secs(20), || {
            lab.log(*node)
                .contains("registering and sending through the RTR")
        });
        assert!(
            through.is_some(),
            "node {} does not go through the RTR; its log:\n{}",
            i + 1,
            lab.log(*node)
        );
    }
    let eid = |i: usize| format!("10.{i}.0.1");
    for (a, b) in [(1, 2), (2, 3), (2, 4)] {
        for (from, to) in [(a, b), (b, a)] {
            lab.wait_tunnel(&n[from - 1], &eid(from), &eid(to));
            let dst: SocketAddr = format!("{}:5001", eid(to)).parse().unwrap();
            assert!(
                lab::tcp_transfer(
                    &n[from - 1],
                    &n[to - 1],
                    dst,
                    200_000,
                    Duration::from_millis(200)
                ),
                "TCP from node {from} to node {to} did not arrive whole; logs in {}",
                lab.dir.path().display()
            );
        }
    }
    // What the views say: the RTR lists the three nodes behind NATs as reached through it,
    // with their bindings; node 2 says it goes through the RTR.
    let peers = show(&n[0], "peers");
    for rloc in ["10.99.0.2", "10.98.0.2", "10.99.0.3"] {
        let p = peers
            .as_array()
            .and_then(|a| a.iter().find(|p| p["rloc"] == rloc))
            .unwrap_or_else(|| panic!("{rloc} not among the RTR's peers: {peers}"));
        assert_eq!(p["path"], "rtr", "{p}");
        assert_eq!(p["via_rtr"], "192.0.2.1", "{p}");
    }
    let status = show(&n[0], "status");
    assert!(
        status["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&"rtr".into())),
        "{status}"
    );
    let bindings = status["nat_bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for eid in ["[0]10.2.0.0/16", "[0]10.3.0.0/16", "[0]10.4.0.0/16"] {
        let b = bindings
            .iter()
            .find(|b| b["eid"] == eid)
            .unwrap_or_else(|| panic!("no binding for {eid}: {status}"));
        let at = b["binding"].as_str().unwrap_or_default();
        assert!(at.starts_with("192.0.2.25"), "{b}");
    }
    let status2 = show(&n[1], "status");
    assert_eq!(status2["via_rtr"], "192.0.2.1", "{status2}");
    assert!(status2["nat"][0]["behind_nat"] == true, "{status2}");
    let rtr = lab.counters(nodes[0]);
    assert!(counter(&rtr, "data/relayed") > 0, "{rtr}");
    assert!(counter(&rtr, "control/rtr_bindings") >= 3, "{rtr}");
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let c = lab.counters(*node);
        assert!(
            counter(&c, "data/encrypted") > 0 && counter(&c, "data/decrypted") > 0,
            "node {}: {c}",
            i + 1
        );
    }

    // Router A forgets every binding while pings cross between nodes 2 and 3 every 20 ms.
    let there = lab::ping_series(&n[1], &eid(2), &eid(3), "0.02", 250);
    let back = lab::ping_series(&n[2], &eid(3), &eid(2), "0.02", 250);
    std::thread::sleep(Duration::from_secs(2));
    let flushed = Instant::now();
    lab::ns_exec(&ra, &["conntrack", "-F"]);
    let (there, back) = (lab::answered(there), lab::answered(back));
    let gap = |seqs: &[u32]| -> u32 {
        seqs.windows(2)
            .map(|w| w[1] - w[0] - 1)
            .max()
            .unwrap_or(u32::MAX)
    };
    let (gap_there, gap_back) = (gap(&there), gap(&back));
    eprintln!(
        "nat rebinding: after conntrack -F on router A ({:?} ago), the longest run of lost \
         pings (20 ms apart) was {gap_there} from node 2 to 3 and {gap_back} from 3 to 2; \
         answered {} and {} of 250",
        flushed.elapsed(),
        there.len(),
        back.len()
    );
    assert!(there.last().is_some_and(|l| *l >= 240), "{there:?}");
    assert!(back.last().is_some_and(|l| *l >= 240), "{back:?}");
    // Within two seconds (100 pings) both ways (measured: 9-13 in most runs, about 40-55
    // in one run of eight).
    assert!(
        gap_there <= 100 && gap_back <= 100,
        "{gap_there} {gap_back}; logs in {}",
        lab.dir.path().display()
    );
    // Node 4, idle behind the same NAT, finds its way back when it next sends.
    let idle = time_until(Duration::from_secs(3), || {
        ping_once(&n[3], &eid(4), &eid(1))
    });
    eprintln!("nat rebinding: idle node 4 pings node 1 again after {idle:?}");
    assert!(
        idle.is_some(),
        "node 4 after the flush; logs in {}",
        lab.dir.path().display()
    );
}

/// `decent show <view> --json` against the API of the node in `ns`.
fn show(ns: &str, view: &str) -> serde_json::Value {
    let o = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_decent"),
            "show",
            view,
        ])
        .args(["--json", "--api", "http://127.0.0.1:8380"])
        .output()
        .expect("decent show runs");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "decent show {view} in {ns}: {e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Roaming from behind a NAT to a public address (issue 14): node 2 takes its RLOCs from
/// eth0 (behind router A's masquerade) and eth1 (on the public side, no address yet). It
/// goes through the RTR (node 1); then eth1 gets a public address and eth0 loses its own.
/// Node 2 asks again at once whether it is behind a NAT, leaves the RTR, registers its
/// public RLOC, and pings cross both ways directly; the figure is printed.
#[test]
fn a_node_that_roams_from_behind_a_nat_to_a_public_address_is_reached_directly() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("nr");
    let (public, private, _ra) = behind_router_a(&mut lab);
    let n1 = lab.netns("n1");
    let n2 = lab.netns("n2");
    lab.link(&n1, "eth0", &public, &["192.0.2.1/24"]);
    lab.link(&n2, "eth0", &private, &["10.99.0.2/24"]);
    lab.link(&n2, "eth1", &public, &[]);
    lab::ip(&["-n", &n2, "route", "add", "default", "via", "10.99.0.1"]);
    let mut c1 = config(1, "192.0.2.1").replace("listen = \"off\"", "listen = \"127.0.0.1:8380\"");
    c1.push_str("[nat]\nrtr = true\n");
    lab.start(&n1, "t1", &c1);
    let c2 = lab::replicate_node(
        "t",
        2,
        "[[rloc]]\ninterface = \"eth0\"\nfamily = \"ipv4\"\n\
         [[rloc]]\ninterface = \"eth1\"\nfamily = \"ipv4\"",
        "192.0.2.1",
    );
    let node2 = lab.start(&n2, "t2", &c2);
    assert!(
        time_until(Duration::from_secs(20), || {
            lab.log(node2)
                .contains("registering and sending through the RTR")
        })
        .is_some(),
        "node 2 does not go through the RTR; its log:\n{}",
        lab.log(node2)
    );
    lab.wait_tunnel(&n1, "10.1.0.1", "10.2.0.1");
    lab.wait_tunnel(&n2, "10.2.0.1", "10.1.0.1");
    // The move: a public address on eth1, then eth0's goes.
    lab::ip(&["-n", &n2, "addr", "add", "192.0.2.50/24", "dev", "eth1"]);
    lab::ip(&["-n", &n2, "addr", "del", "10.99.0.2/24", "dev", "eth0"]);
    let moved = Instant::now();
    let there = time_until(Duration::from_secs(5), || {
        ping_once(&n1, "10.1.0.1", "10.2.0.1")
    })
    .map(|_| moved.elapsed());
    let back = time_until(Duration::from_secs(5), || {
        ping_once(&n2, "10.2.0.1", "10.1.0.1")
    })
    .map(|_| moved.elapsed());
    eprintln!(
        "nat roaming: from behind the NAT to a public address, ping node 1 -> 2 crosses \
         again after {there:?}, node 2 -> 1 after {back:?}"
    );
    assert!(
        there.is_some() && back.is_some(),
        "{there:?} {back:?}; logs in {}",
        lab.dir.path().display()
    );
    // Directly now: the RTR's view of node 2, and node 2's own.
    let direct = time_until(Duration::from_secs(5), || {
        let peers = show(&n1, "peers");
        peers.as_array().is_some_and(|a| {
            a.iter()
                .any(|p| p["rloc"] == "192.0.2.50" && p["path"] == "direct")
        })
    });
    assert!(direct.is_some(), "{}", show(&n1, "peers"));
    assert!(
        lab.log(node2).contains("no longer through an RTR"),
        "{}",
        lab.log(node2)
    );
}
