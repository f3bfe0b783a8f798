//! Network-namespace laboratories for the root tests: namespaces, bridges, veth links, nodes
//! with their logs, counters read through SIGUSR1, and TCP / UDP from inside a namespace
//! (a thread that joined it with setns). Everything a test creates is removed when it ends,
//! also when it fails. Tests that use namespaces hold `serial()` so they never overlap.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

static SERIAL: Mutex<()> = Mutex::new(());

/// One namespace test at a time: they share the machine's two cores and timing matters.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// True when the test may go on; false (after saying why) when it must skip. Under
/// LISP_DECENT_REQUIRE_ROOT (CI) a missing root is a failure.
pub fn have_root() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("LISP_DECENT_REQUIRE_ROOT").is_none(),
        "root is required here (LISP_DECENT_REQUIRE_ROOT is set)"
    );
    println!("SKIPPED: network namespaces and TUN devices need root (CI runs this as root)");
    false
}

/// True when tshark runs; false (after saying why) when not. Under LISP_DECENT_REQUIRE_TSHARK
/// (CI) a missing tshark is a failure.
pub fn have_tshark() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("LISP_DECENT_REQUIRE_TSHARK").is_none(),
        "tshark is required here"
    );
    println!("SKIPPED capture checks: tshark is not installed");
    false
}

pub fn ip(args: &[&str]) {
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

/// Moves the calling thread into network namespace `ns` (setns is per thread).
pub fn enter_netns(ns: &str) {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Runs `f` in a thread that joined network namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns);
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

/// Deterministic test content.
pub fn content(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `len` bytes over TCP from namespace `from` to `to` (listening in namespace
/// `listen_ns`), spread over `duration`; returns true when the receiver got exactly them.
pub fn tcp_transfer(
    from: &str,
    listen_ns: &str,
    to: SocketAddr,
    len: usize,
    duration: Duration,
) -> bool {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = listen_ns.to_string();
    let server = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let l = TcpListener::bind(to).expect("bind the TCP listener");
            ready_tx.send(()).unwrap();
            l.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut s = loop {
                match l.accept() {
                    Ok((s, _)) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => panic!("no TCP connection: {e}"),
                }
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut got = Vec::new();
            let r = s.read_to_end(&mut got);
            (r.is_ok(), got.len(), Sha256::digest(&got).to_vec())
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listener ready");
    let data = content(len);
    let want = Sha256::digest(&data).to_vec();
    let sent = in_netns(from, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(10)) else {
            return false;
        };
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let chunks = 100;
        let step = len.div_ceil(chunks);
        for c in data.chunks(step) {
            if s.write_all(c).is_err() {
                return false;
            }
            std::thread::sleep(duration / chunks as u32);
        }
        s.shutdown(std::net::Shutdown::Write).is_ok()
    });
    let (ok, got_len, got) = server.join().expect("the TCP receiver panicked");
    sent && ok && got_len == len && got == want
}

/// Sends one UDP datagram from `src` (an address of namespace `ns`) to `dst`.
pub fn udp_send(ns: &str, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
    in_netns(ns, move || {
        let s = UdpSocket::bind(src).expect("bind");
        s.send_to(&payload, dst).expect("send");
    })
}

pub fn ping(ns: &str, dst: &str, count: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", count, "-W", "1", "-i", "0.2", dst,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The configuration of node `i` of a two-or-three-node namespace test: name `<tag><i>`,
/// EID 10.i.0.0/16 with 10.i.0.1 on its TUN, `rlocs` its `[[rloc]]` lines, head-end
/// replication with `seed` as the seed, the site key `netns-<tag>-key`, no API.
pub fn replicate_node(tag: &str, i: usize, rlocs: &str, seed: &str) -> String {
    format!(
        "name = \"{tag}{i}\"\nstate_dir = \"state-{tag}{i}\"\n{rlocs}\n\
         [[database]]\nprefix = \"10.{i}.0.0/16\"\n[peer_group]\ngroup = \"224.1.1.1\"\n\
         delivery = \"replicate\"\nseeds = [\"{seed}\"]\n\
         [[instance]]\ntun = \"lisp0\"\naddresses = [\"10.{i}.0.1\"]\n\
         [site]\n[[site.key]]\nkey_id = 1\nsecret = \"netns-{tag}-key\"\n\
         [[site.allowed]]\nprefix = \"10.0.0.0/8\"\naccept_more_specifics = true\n\
         [[site.allowed]]\nname = \"{tag}*\"\n[api]\nlisten = \"off\"\n"
    )
}

/// Runs `args` in namespace `ns`, asserting that it succeeds.
pub fn ns_exec(ns: &str, args: &[&str]) {
    let ok = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{ns}: {args:?} failed");
}

/// Starts `count` pings from `ns` (from address `src`) to `dst`, `interval` seconds apart,
/// each waited for at most 1 s; [`answered`] reads what came back from its output.
pub fn ping_series(ns: &str, src: &str, dst: &str, interval: &str, count: u32) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-i", interval])
        .args(["-c", &count.to_string(), "-W", "1", "-I", src, dst])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping runs")
}

/// The sequence numbers of the echo replies a [`ping_series`] printed, once it ended.
pub fn answered(series: Child) -> Vec<u32> {
    let out = series.wait_with_output().expect("ping ends");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Asks the node (pid) for its counters with SIGUSR1 and reads them from its log.
pub fn counters(pid: u32, log: &Path) -> Value {
    let count = |t: &str| t.lines().filter(|l| l.contains(" counters=")).count();
    let before = count(&std::fs::read_to_string(log).unwrap_or_default());
    unsafe {
        libc::kill(pid as i32, libc::SIGUSR1);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if count(&text) > before {
            let line = text
                .lines()
                .rfind(|l| l.contains(" counters="))
                .unwrap_or_default();
            let json = &line[line.find(" counters=").unwrap_or(0) + 10..];
            return serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("counters in {}: {e}: {json}", log.display()));
        }
        assert!(
            Instant::now() < deadline,
            "no counters in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A counter at `path` (like "data/drops/replayed", or "data/per_worker/1/..." into a
/// list), 0 when absent.
pub fn counter(v: &Value, path: &str) -> u64 {
    path.split('/')
        .try_fold(v, |v, k| {
            v.get(k)
                .or_else(|| k.parse::<usize>().ok().and_then(|i| v.get(i)))
        })
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The nodes of scripts/mesh-netns.sh: pid and log of node `i`.
pub fn mesh_node(i: usize) -> (u32, PathBuf) {
    let run = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mesh-netns");
    let pid = std::fs::read_to_string(run.join(format!("n{i}.pid")))
        .expect("mesh node pid")
        .trim()
        .parse()
        .expect("pid");
    (pid, run.join(format!("n{i}.log")))
}

/// Brings up scripts/mesh-netns.sh with `args` and takes it down when dropped.
pub struct Mesh;

impl Mesh {
    pub fn up(args: &[&str]) -> Mesh {
        let m = Mesh;
        let st = Command::new("bash")
            .arg("scripts/mesh-netns.sh")
            .arg("up")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("bash");
        assert!(st.success(), "mesh-netns.sh up {}", args.join(" "));
        m
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["scripts/mesh-netns.sh", "down"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

/// A tshark capture on an interface of a namespace, stopped (and flushed) by `stop`.
pub struct Capture {
    child: Child,
    pub file: PathBuf,
}

impl Capture {
    pub fn start(ns: &str, dev: &str, file: PathBuf) -> Capture {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "tshark", "-q", "-i", dev, "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tshark");
        // tshark needs a moment before it captures.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        Capture { child, file }
    }

    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
        self.file.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Namespaces and node processes of one test.
pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
    nodes: Vec<(Child, PathBuf)>,
    links: usize,
    pub dir: tempfile::TempDir,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (c, _) in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // LISP_DECENT_KEEP_LAB=1 keeps the logs and configurations for a look afterwards.
        if std::env::var_os("LISP_DECENT_KEEP_LAB").is_some()
            && let Ok(empty) = tempfile::tempdir()
        {
            let kept = std::mem::replace(&mut self.dir, empty).keep();
            eprintln!("lab kept in {}", kept.display());
        }
    }
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        Lab {
            prefix: format!("dl{tag}{}", std::process::id() % 10000),
            namespaces: Vec::new(),
            nodes: Vec::new(),
            links: 0,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new namespace `<prefix><name>` with its loopback up.
    pub fn netns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A namespace holding one bridge `br0` (multicast snooping off).
    pub fn bridge(&mut self, name: &str) -> String {
        let ns = self.netns(name);
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        ns
    }

    /// Joins `ns` to the bridge of `bridge_ns` with a veth named `dev` holding `addrs`.
    pub fn link(&mut self, ns: &str, dev: &str, bridge_ns: &str, addrs: &[&str]) {
        self.links += 1;
        let v = format!("v{}", self.links);
        ip(&[
            "-n", bridge_ns, "link", "add", &v, "type", "veth", "peer", "name", dev, "netns", ns,
        ]);
        ip(&["-n", bridge_ns, "link", "set", &v, "master", "br0", "up"]);
        for a in addrs {
            let mut args = vec!["-n", ns, "addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            ip(&args);
        }
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }

    /// Starts a node in `ns` with `config`; returns its index for `counters` and `log`.
    pub fn start(&mut self, ns: &str, name: &str, config: &str) -> usize {
        let cfg = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, config).unwrap();
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_decent"),
                "run",
                "--config",
            ])
            .arg(&cfg)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.nodes.push((child, log));
        self.nodes.len() - 1
    }

    pub fn counters(&self, node: usize) -> Value {
        let (c, log) = &self.nodes[node];
        counters(c.id(), log)
    }

    /// Kills a node with SIGKILL (no withdrawal, nothing cleaned up) and waits for it.
    pub fn kill(&mut self, node: usize) {
        let (c, _) = &mut self.nodes[node];
        let _ = c.kill();
        let _ = c.wait();
    }

    /// The process id of a node (`ip netns exec` execs the node, so it is the node's).
    pub fn pid(&self, node: usize) -> u32 {
        self.nodes[node].0.id()
    }

    /// The resident memory of a node, in KiB.
    pub fn rss_kib(&self, node: usize) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid(node))).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self, node: usize) -> String {
        std::fs::read_to_string(&self.nodes[node].1).unwrap_or_default()
    }

    /// Waits until a ping from `ns` (from address `src`) crosses the tunnel to `dst` (up to
    /// 10 s).
    pub fn wait_tunnel(&self, ns: &str, src: &str, dst: &str) {
        assert!(
            time_until(Duration::from_secs(10), || ping_once(ns, src, dst)).is_some(),
            "no ping from {src} to {dst} through the tunnel; logs in {}",
            self.dir.path().display()
        );
    }

    /// Waits until the node in `ns` answers lig for `eid` positively (up to 30 s).
    pub fn wait_resolved(&self, ns: &str, eid: &str, to: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if lig(ns, to, eid).contains("\"negative\":false") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{ns} does not resolve {eid} after 30 s; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the Map-Resolver at `rloc` answers for `eid` to lig run in `ns` (its JSON line;
/// empty when nothing answered within 0.5 s).
pub fn lig(ns: &str, rloc: &str, eid: &str) -> String {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_decent"),
            "lig",
            eid,
        ])
        .args(["--to", rloc, "--json", "--count", "1", "--timeout", "0.5"])
        .output()
        .expect("lig runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One ping through the tunnel from `ns` (from address `src`) to `dst`, waiting at most
/// 200 ms.
pub fn ping_once(ns: &str, src: &str, dst: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "1", "-W", "0.2", "-I", src, dst,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `f` every 20 ms until it holds; how long that took, or `None` after `limit`.
pub fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
