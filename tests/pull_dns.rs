//! LISP-Decent pull mode with a real DNS server (hickory-server, in this process, on
//! loopback): each node resolves the Map-Server set names `<index>.map.test`, registers every
//! EID with every address of the set the EID hashes to, and the members of that set answer
//! lig for it while the others do not hold it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod lab;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use lisp_decent::control::pull::PullHash;
use serde_json::Value;

const MODULUS: u32 = 3;

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 20 + i as u8)
}

/// Set `k` is node k+1; set 2 also has node 1 (two A records).
fn set_members(index: u32) -> Vec<usize> {
    match index {
        0 => vec![1],
        1 => vec![2],
        _ => vec![3, 1],
    }
}

/// Starts the DNS server on a free loopback port; returns the port.
fn start_dns() -> u16 {
    let sets = (0..MODULUS)
        .map(|i| (i, set_members(i).into_iter().map(node_ip).collect()))
        .collect();
    start_dns_at(None, "127.0.0.1:0".parse().unwrap(), sets)
}

/// Starts a DNS server for zone map.test on `bind` (in network namespace `netns`), with
/// `<index>.map.test` holding the A records of each set; returns the port.
fn start_dns_at(netns: Option<String>, bind: SocketAddr, sets: Vec<(u32, Vec<Ipv4Addr>)>) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(ns) = netns {
            lab::enter_netns(&ns);
        }
        let std_sock = std::net::UdpSocket::bind(bind).unwrap();
        tx.send(std_sock.local_addr().unwrap().port()).unwrap();
        std_sock.set_nonblocking(true).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let origin = Name::from_str("map.test.").unwrap();
            let mut zone =
                InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::empty(
                    origin.clone(),
                    ZoneType::Primary,
                    AxfrPolicy::Deny,
                );
            let soa = SOA::new(
                Name::from_str("ns.map.test.").unwrap(),
                Name::from_str("admin.map.test.").unwrap(),
                1,
                60,
                60,
                600,
                1,
            );
            zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
            for (index, members) in sets {
                let name = Name::from_str(&format!("{index}.map.test.")).unwrap();
                for m in members {
                    zone.upsert_mut(Record::from_rdata(name.clone(), 1, RData::A(A(m))), 1);
                }
            }
            let mut catalog = Catalog::new();
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
            let mut server = Server::new(catalog);
            server.register_socket(tokio::net::UdpSocket::from_std(std_sock).unwrap());
            let _ = server.block_until_done().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the DNS server started")
}

struct Nodes(Vec<Child>, tempfile::TempDir);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn config(i: usize, dns_port: u16) -> String {
    format!(
        r#"name = "p{i}"
state_dir = "state{i}"
[[rloc]]
address = "{ip}"
[[database]]
prefix = "10.{i}.0.0/16"
[pull]
modulus = {MODULUS}
dns_suffix = "map.test"
hash = "lispers"
dns_server = "127.0.0.1:{dns_port}"
resolve_interval_secs = 1
[api]
listen = "off"
[site]
[[site.key]]
key_id = 1
secret = "pull-mode-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "*"
"#,
        ip = node_ip(i)
    )
}

fn lig(eid: &str, to: Ipv4Addr) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_decent"))
        .args([
            "lig",
            eid,
            "--to",
            &to.to_string(),
            "--json",
            "--count",
            "1",
            "--timeout",
            "0.5",
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

#[test]
fn registrations_follow_the_hash_to_their_map_server_set() {
    let dns_port = start_dns();
    // The DNS answers as the node will ask it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = lisp_decent::node::config::DnsSettings {
        server: Some(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), dns_port)),
        resolve_interval: Duration::from_secs(1),
    };
    let pull = lisp_decent::control::PullMode {
        modulus: MODULUS,
        dns_suffix: "map.test".into(),
        hash: PullHash::Lispers { width: 6 },
    };
    let r = lisp_decent::node::dns::resolver(&settings).unwrap();
    let got = rt.block_on(lisp_decent::node::dns::resolve_set(&r, &pull, 2));
    assert_eq!(got, vec![IpAddr::V4(node_ip(1)), IpAddr::V4(node_ip(3))]);

    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes(Vec::new(), dir);
    for i in 1..=3 {
        let cfg = nodes.1.path().join(format!("p{i}.toml"));
        std::fs::write(&cfg, config(i, dns_port)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_decent"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        nodes.0.push(child);
    }
    let hash = PullHash::Lispers { width: 6 };
    let start = Instant::now();
    for j in 1..=3 {
        let index = hash.index(&format!("[0]10.{j}.0.0/16"), MODULUS);
        let holders = set_members(index);
        for i in 1..=3 {
            let v = loop {
                let v = lig(&format!("10.{j}.0.1"), node_ip(i));
                // A lig that got no reply (the node is still starting) settles nothing.
                let settled = v["reply"] == Value::Bool(true)
                    && v["negative"] == Value::Bool(!holders.contains(&i));
                if settled || start.elapsed() > Duration::from_secs(20) {
                    break v;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            if holders.contains(&i) {
                assert_eq!(
                    v["eid"],
                    format!("[0]10.{j}.0.0/16"),
                    "set {index} member p{i}: {v}"
                );
                assert_eq!(v["rlocs"][0]["address"], node_ip(j).to_string());
            } else {
                assert_eq!(
                    v["negative"],
                    Value::Bool(true),
                    "p{i} is not in set {index}: {v}"
                );
            }
        }
    }
}

/// Pull mode with TUN devices in network namespaces: node 1 is the only Map-Server (the DNS
/// in the bridge namespace names it for the one set). Node 2 has no mapping for node 3's
/// EID until it asks; its first ping waits for the Map-Reply (and then for the key) instead
/// of being dropped, and arrives.
#[test]
fn pull_mode_first_packet_waits_for_its_mapping() {
    let _serial = lab::serial();
    if !lab::have_root() {
        return;
    }
    let mut lab = lab::Lab::new("pull");
    let b = lab.bridge("b");
    lab::ip(&["-n", &b, "addr", "add", "192.0.2.100/24", "dev", "br0"]);
    start_dns_at(
        Some(b.clone()),
        "192.0.2.100:53".parse().unwrap(),
        vec![(0, vec![Ipv4Addr::new(192, 0, 2, 1)])],
    );
    let mut nss = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let ns = lab.netns(&format!("n{i}"));
        lab.link(&ns, "eth0", &b, &[&format!("192.0.2.{i}/24")]);
        let cfg = format!(
            r#"name = "q{i}"
state_dir = "state-q{i}"
[[rloc]]
address = "192.0.2.{i}"
[[database]]
prefix = "10.{i}.0.0/16"
[[instance]]
instance_id = 0
tun = "lisp0"
addresses = ["10.{i}.0.1"]
[pull]
modulus = 1
dns_suffix = "map.test"
hash = "draft"
hash_mask_len = 8
dns_server = "192.0.2.100:53"
resolve_interval_secs = 1
[site]
[[site.key]]
key_id = 1
secret = "pull-netns-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "*"
"#
        );
        nodes.push(lab.start(&ns, &format!("q{i}"), &cfg));
        nss.push(ns);
    }
    // Node 1, the Map-Server, knows both.
    lab.wait_resolved(&nss[0], "10.3.0.1", "192.0.2.1");
    lab.wait_resolved(&nss[0], "10.2.0.1", "192.0.2.1");
    let ok = Command::new("ip")
        .args([
            "netns", "exec", &nss[1], "ping", "-c", "1", "-W", "3", "10.3.0.1",
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "the first ping n2 -> n3 in pull mode was lost");
    for (k, who) in [(1, "node 2"), (2, "node 3")] {
        let v = lab.counters(nodes[k]);
        assert!(
            lab::counter(&v, "data/queued_for_mapping") >= 1,
            "{who} held nothing for a mapping: {v}"
        );
        assert_eq!(lab::counter(&v, "data/drops/no_mapping"), 0, "{who}");
        assert!(lab::counter(&v, "control/map_requests_sent") >= 1, "{who}");
    }
}
