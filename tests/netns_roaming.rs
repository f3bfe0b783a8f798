//! Roaming (issue 14), in network namespaces with real TUN devices and encrypted tunnels: a
//! node whose RLOC comes from an interface changes its address, and the node at the other
//! end of the tunnel learns the new RLOC and carries traffic to it again. Root tests (CI
//! runs them as root); elsewhere they skip, saying why. `--nocapture` prints the figures the
//! README gives.

mod lab;

use std::time::{Duration, Instant};

use lab::{Lab, have_root, ping_once, time_until};

/// Node `i` of these tests (`rloc`: its `[[rloc]]` lines); node 1 (192.0.2.1) is the seed.
fn config(i: usize, rloc: &str) -> String {
    lab::replicate_node("r", i, rloc, "192.0.2.1")
}

/// What node `ns`'s Map-Resolver (at `rloc`) answers for 10.j.0.1.
fn lig(ns: &str, rloc: &str, j: usize) -> String {
    lab::lig(ns, rloc, &format!("10.{j}.0.1"))
}

/// Node 1 (RLOC 192.0.2.1) and node 2, whose RLOC comes from its eth0 (192.0.2.2) with
/// the default listen addresses, on one bridge, pinging through the tunnel; node 2's eth0
/// keeps a secondary address when its primary goes (promote_secondaries: the address it
/// moves to is in the same subnet). Returns both namespaces and node 2's index.
fn two_nodes(lab: &mut Lab) -> (String, String, usize) {
    let br = lab.bridge("b");
    let n1 = lab.netns("n1");
    let n2 = lab.netns("n2");
    lab.link(&n1, "eth0", &br, &["192.0.2.1/24"]);
    lab.link(&n2, "eth0", &br, &["192.0.2.2/24"]);
    lab.start(&n1, "r1", &config(1, "[[rloc]]\naddress = \"192.0.2.1\""));
    let node2 = lab.start(
        &n2,
        "r2",
        &config(2, "[[rloc]]\ninterface = \"eth0\"\nfamily = \"ipv4\""),
    );
    lab.wait_resolved(&n1, "10.2.0.1", "192.0.2.1");
    lab.wait_tunnel(&n1, "10.1.0.1", "10.2.0.1");
    lab::ns_exec(
        &n2,
        &["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"],
    );
    (n1, n2, node2)
}

/// Node 2 takes its RLOC from eth0 and keeps the default listen addresses (so it binds the
/// wildcard address and learns each datagram's local address); its address moves
/// from 192.0.2.2 to 192.0.2.102 (the new one added before the old one goes). The address
/// events reach it at once (it no longer waits for its 10 s interface poll): it registers
/// its new RLOC with node 1 and offers fresh keys from it, and a ping between the two EIDs
/// crosses the encrypted tunnel again, both ways. Bounded at 3 s, well under the poll's
/// 10 s; the figures are printed.
#[test]
fn an_interface_rloc_that_moves_carries_traffic_again_at_once() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("ro");
    let (n1, n2, node2) = two_nodes(&mut lab);
    lab::ip(&["-n", &n2, "addr", "add", "192.0.2.102/24", "dev", "eth0"]);
    lab::ip(&["-n", &n2, "addr", "del", "192.0.2.2/24", "dev", "eth0"]);
    let moved = Instant::now();
    let registered = time_until(Duration::from_secs(3), || {
        let l = lig(&n1, "192.0.2.1", 2);
        l.contains("\"192.0.2.102\"") && !l.contains("\"192.0.2.2\"")
    });
    let registered_after = moved.elapsed();
    let there = time_until(Duration::from_secs(3), || {
        ping_once(&n1, "10.1.0.1", "10.2.0.1")
    })
    .map(|_| moved.elapsed());
    let back = time_until(Duration::from_secs(3), || {
        ping_once(&n2, "10.2.0.1", "10.1.0.1")
    })
    .map(|_| moved.elapsed());
    eprintln!(
        "roaming: node 1 holds the new RLOC {registered_after:?} after the move; \
         ping node 1 -> 2 crosses again after {there:?}, node 2 -> 1 after {back:?}"
    );
    assert!(
        registered.is_some(),
        "node 1 still maps 10.2.0.0/16 to the old RLOC after 3 s: {}; node 2's log:\n{}",
        lig(&n1, "192.0.2.1", 2),
        lab.log(node2)
    );
    assert!(
        there.is_some() && back.is_some(),
        "the tunnel does not carry traffic 3 s after the move ({there:?}, {back:?}); \
         logs in {}",
        lab.dir.path().display()
    );
}

/// Make-before-break: node 2 gets its new address 300 ms before the old one goes, while
/// pings cross every 5 ms. The new address is registered as preferred at once (it appeared
/// while the old one was there) and node 2 probes and keys from it, so node 1 moves to it
/// before the old one disappears: no ping is lost.
#[test]
fn a_move_whose_new_address_comes_first_loses_nothing() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("rm");
    let (n1, n2, node2) = two_nodes(&mut lab);
    let pinger = lab::ping_series(&n1, "10.1.0.1", "10.2.0.1", "0.005", 300);
    std::thread::sleep(Duration::from_millis(300));
    lab::ip(&["-n", &n2, "addr", "add", "192.0.2.102/24", "dev", "eth0"]);
    std::thread::sleep(Duration::from_millis(300));
    lab::ip(&["-n", &n2, "addr", "del", "192.0.2.2/24", "dev", "eth0"]);
    let answered = lab::answered(pinger).len();
    eprintln!(
        "make-before-break: {} of 300 pings (5 ms apart) lost",
        300 - answered
    );
    assert_eq!(
        answered,
        300,
        "pings were lost across the move; node 1's counters {}\nnode 2's {}\nnode 2's log:\n{}",
        lab.counters(0),
        lab.counters(node2),
        lab.log(node2)
    );
    let l = lig(&n1, "192.0.2.1", 2);
    assert!(
        l.contains("\"192.0.2.102\"") && !l.contains("\"192.0.2.2\""),
        "{l}"
    );
}

/// Moving between IPv4 and IPv6: node 1 has an IPv4 and an IPv6 RLOC; node 2 takes its RLOCs
/// from eth0 (both families), which has only 192.0.2.2. Its IPv4 address goes and
/// 2001:db8::2 comes: node 2 is left on an IPv6-only underlay in a peer group whose address
/// is IPv4. It registers with node 1 at node 1's IPv6 RLOC, node 1 reaches it there, and
/// pings cross both ways again within 3 s; then it moves back to IPv4 and they do again.
#[test]
fn a_node_that_moves_from_ipv4_to_ipv6_and_back_carries_traffic_again() {
    if !have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut lab = Lab::new("r6");
    let br = lab.bridge("b");
    let n1 = lab.netns("n1");
    let n2 = lab.netns("n2");
    lab.link(&n1, "eth0", &br, &["192.0.2.1/24", "2001:db8::1/64"]);
    lab.link(&n2, "eth0", &br, &["192.0.2.2/24"]);
    lab.start(
        &n1,
        "r1",
        &config(
            1,
            "[[rloc]]\naddress = \"192.0.2.1\"\n[[rloc]]\naddress = \"2001:db8::1\"\npriority = 2",
        ),
    );
    let node2 = lab.start(&n2, "r2", &config(2, "[[rloc]]\ninterface = \"eth0\""));
    lab.wait_resolved(&n1, "10.2.0.1", "192.0.2.1");
    let ping_both =
        || ping_once(&n1, "10.1.0.1", "10.2.0.1") && ping_once(&n2, "10.2.0.1", "10.1.0.1");
    assert!(
        time_until(Duration::from_secs(10), ping_both).is_some(),
        "no ping through the tunnel before the move; logs in {}",
        lab.dir.path().display()
    );
    let moves: [(&str, &[&str], &[&str]); 2] = [
        ("IPv6", &["2001:db8::2/64", "nodad"], &["192.0.2.2/24"]),
        ("IPv4", &["192.0.2.2/24"], &["2001:db8::2/64"]),
    ];
    for (to, add, del) in moves {
        let mut args = vec!["-n", &n2, "addr", "add"];
        args.extend_from_slice(add);
        args.extend_from_slice(&["dev", "eth0"]);
        lab::ip(&args);
        let mut args = vec!["-n", &n2, "addr", "del"];
        args.extend_from_slice(del);
        args.extend_from_slice(&["dev", "eth0"]);
        lab::ip(&args);
        let moved = Instant::now();
        let back = time_until(Duration::from_secs(3), ping_both).map(|_| moved.elapsed());
        eprintln!("roaming to {to}: pings cross both ways again {back:?} after the move");
        assert!(
            back.is_some(),
            "no traffic 3 s after the move to {to}: node 1 answers {}; node 2's log:\n{}",
            lig(&n1, "192.0.2.1", 2),
            lab.log(node2)
        );
    }
}
