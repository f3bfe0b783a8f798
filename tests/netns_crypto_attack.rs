//! A hostile host on the RLOC network attacks the lisp-crypto key exchange (issue 11): from
//! an attacker namespace on the same bridge it sends 20,000 forged RLOC-probes to node 1,
//! offering keys for node 2's locator, from its own address and with node 2's address (and
//! random ones) spoofed through a raw socket, half of them with a trailer signed with a
//! wrong key. Meanwhile node 2 pings node 1 through the encrypted tunnel. Root test (CI runs
//! it as root); elsewhere it skips, saying why.
//!
//! Goal: no key installed or displaced (no ICV failures, no packet lost), the offers counted
//! as unauthenticated, and node 1's memory flat (under 1 MiB of growth) once its bounded
//! per-source tables are full.

mod lab;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use lab::{Lab, counter, have_root, ping};
use lisp_decent::crypto::kx_auth::KxKey;
use lisp_decent::wire::*;

fn config(i: usize) -> String {
    format!(
        r#"name = "k{i}"
state_dir = "state-k{i}"
[[rloc]]
address = "192.0.2.{i}"
[peer_group]
group = "224.1.1.1"
delivery = "replicate"
seeds = ["192.0.2.1"]
[[database]]
prefix = "10.{i}.0.0/16"
[[instance]]
tun = "lisp0"
addresses = ["10.{i}.0.1"]
[data_plane]
encryption = "aes128-gcm"
[site]
[[site.key]]
key_id = 1
secret = "netns-attack-site-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "k*"
"#
    )
}

/// A probe for node 1's prefix offering `public` under key-id 1, its Security Key LCAF
/// naming `names` (node 2's RLOC) as the locator.
fn forged_probe(nonce: u64, public: [u8; 32], names: IpAddr) -> Vec<u8> {
    let lcaf = Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
        rsvd3: 0,
        cipher_suite: 5,
        rsvd4: 0,
        keys: vec![public.to_vec()],
        locator: Address::from(names),
    }))));
    let eid = Address::from(IpAddr::from([10, 1, 0, 0]));
    let mut q = MapRequest::new(nonce.to_be_bytes(), Address::None, lcaf, eid, 16);
    q.probe = true;
    ControlMessage::MapRequest(q)
        .to_bytes()
        .expect("a probe encodes")
}

/// Sends the forged probes from namespace `ns` through a raw socket (any source address).
fn flood(ns: &str, probes: std::ops::Range<u32>) {
    lab::in_netns(ns, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .expect("a raw socket (root)");
        let (target, peer): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let attacker: IpAddr = [192, 0, 2, 66].into();
        let wrong = KxKey::from_site_key(b"not the site key");
        let dst: socket2::SockAddr = SocketAddr::new(target, 0).into();
        let mut out = Vec::new();
        for i in probes {
            let src = match i % 4 {
                0 => attacker,
                1 => peer,
                _ => IpAddr::from((0xc633_0000u32 + i).to_be_bytes()),
            };
            let mut payload = forged_probe(u64::from(i) << 8 | 0x5a, [(i as u8) | 1; 32], peer);
            if i % 2 == 0 {
                wrong.sign(&mut payload);
            }
            out.clear();
            IpUdp::new(src, target, 64, 40000 + (i % 1000) as u16, CONTROL_PORT)
                .expect("IPv4 header")
                .emit(&payload, &mut out)
                .expect("emit");
            let _ = raw.send_to(&out, &dst);
            if i % 200 == 199 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
}

#[test]
fn forged_probes_from_a_hostile_host_install_no_key_and_cost_no_memory() {
    let _serial = lab::serial();
    if !have_root() {
        return;
    }
    let mut lab = Lab::new("atk");
    let br = lab.bridge("b");
    let mut nss = Vec::new();
    for i in 1..=2 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &br, &[&format!("192.0.2.{i}/24")]);
        nss.push(ns);
    }
    let atk = lab.netns("x");
    lab.link(&atk, "eth0", &br, &["192.0.2.66/24"]);
    let n1 = lab.start(&nss[0], "k1", &config(1));
    let _n2 = lab.start(&nss[1], "k2", &config(2));
    lab.wait_resolved(&nss[1], "10.1.0.1", "192.0.2.2");
    assert!(
        ping(&nss[1], "10.1.0.1", "5"),
        "encrypted ping before the attack"
    );
    // The node's bounded tables (rate-limit buckets and last-heard times, 4096 sources
    // each) are the fixed cap unauthenticated packets may cost: fill them first, then the
    // memory must stay flat under 20,000 more.
    let rss_start = lab.rss_kib(n1);
    flood(&atk, 0..8_000);
    std::thread::sleep(Duration::from_secs(1));
    let before = lab.counters(n1);
    let rss_before = lab.rss_kib(n1);
    assert!(rss_before > 0, "node 1's memory is readable");

    // Node 2 pings node 1 through the tunnel for the whole attack.
    let pinger = Command::new("ip")
        .args([
            "netns", "exec", &nss[1], "ping", "-c", "100", "-i", "0.05", "-W", "1",
        ])
        .arg("10.1.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    flood(&atk, 8_000..28_000);
    let out = pinger.wait_with_output().expect("ping ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("100 received"),
        "every ping crossed the tunnel during the attack: {text}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let after = lab.counters(n1);
    let rss_after = lab.rss_kib(n1);
    let delta = |p: &str| counter(&after, p) - counter(&before, p);
    println!("RSS {rss_start} KiB at the start, {rss_before} KiB with the bounded tables full");
    println!(
        "unauthenticated offers {}, bad signatures {}, rate-limited {}, RSS {} -> {} KiB",
        delta("control/key_offers_unauthenticated"),
        delta("control/key_exchange_bad_signature"),
        delta("control/map_requests_rate_limited"),
        rss_before,
        rss_after
    );
    // Each forged offer was refused unsigned, or before that by the rate limit that
    // sources beyond the bucket table share.
    assert!(delta("control/key_offers_unauthenticated") > 0);
    assert!(
        delta("control/key_offers_unauthenticated") + delta("control/map_requests_rate_limited")
            > 15_000,
        "the forged offers reached the node and were refused"
    );
    // Rate-limited before the signature is checked: only admitted ones are counted here.
    assert!(delta("control/key_exchange_bad_signature") > 300);
    assert_eq!(delta("data/drops/icv_failed"), 0, "no key displaced");
    assert_eq!(delta("data/drops/no_key"), 0);
    assert_eq!(delta("control/keys_agreed"), 0, "no key installed");
    assert!(
        rss_after < rss_before + 1024,
        "memory flat under the attack: {rss_before} -> {rss_after} KiB"
    );
    // The tunnel still works after the attack.
    assert!(ping(&nss[1], "10.1.0.1", "3"));
}
