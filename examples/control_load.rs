//! Load generator for the whole-process control-plane benchmark (scripts/bench-control.sh):
//! registers `--prefixes` /24 EID-prefixes with a running node (signed Map-Registers, 50
//! records each, their RLOCs drawn from `--rlocs` distinct addresses of 100.64.0.0/10), then
//! sends it Map-Requests for random registered hosts at `--rate` per second for `--seconds`,
//! from `--sources` source addresses (127.1.0.0 onward: run it inside the benchmark's own
//! network namespace), and counts the Map-Replies that come back.
//!
//! Every request names 127.0.0.9 as its ITR-RLOC and the counting socket's port
//! (`--reply-port`, or any free one) as its UDP source port, so all replies reach one socket
//! whatever source the request carried. With `--echo` nothing is registered and every
//! datagram back counts (the ceiling measured against examples/control_echo.rs).
//!
//!   control_load --target 127.0.0.1 --key KEY --prefixes 1000000 --rlocs 100000 \
//!                --seconds 10 --sources 256 [--rate 400000] [--reply-port 40000] [--echo]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lisp_decent::sim;
use lisp_decent::wire::*;

const PER_REGISTER: u32 = 50;
const BATCH: usize = 64;
/// Where replies come back (the ITR-RLOC of every request).
const REPLY_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

struct Args {
    target: Ipv4Addr,
    key: String,
    prefixes: u32,
    rlocs: u32,
    seconds: u64,
    sources: u32,
    reply_port: u16,
    echo: bool,
    rate: u64,
}

fn args() -> std::result::Result<Args, String> {
    let mut a = Args {
        target: Ipv4Addr::LOCALHOST,
        key: String::new(),
        prefixes: 1_000_000,
        rlocs: 1,
        seconds: 10,
        sources: 256,
        reply_port: 0,
        echo: false,
        rate: 400_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--echo" {
            a.echo = true;
            continue;
        }
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: String| format!("{k} {v}: {e}");
        match k.as_str() {
            "--target" => a.target = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--key" => a.key = v,
            "--prefixes" => a.prefixes = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--rlocs" => a.rlocs = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--seconds" => a.seconds = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--sources" => a.sources = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--rate" => a.rate = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--reply-port" => a.reply_port = v.parse().map_err(|e| bad(format!("{e}")))?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if a.key.is_empty() || a.prefixes == 0 || a.rlocs == 0 || a.sources == 0 {
        return Err("--key, and non-zero --prefixes, --rlocs and --sources, are needed".into());
    }
    Ok(a)
}

/// The k-th /24 of 1.0.0.0 onward.
fn prefix(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0100_0000 + (k << 8))
}

fn register(first: u32, n: u32, rlocs: u32, key: &str, pass: u64) -> Vec<u8> {
    let records = (first..first + n)
        .map(|k| {
            let rloc = Ipv4Addr::from(0x6440_0000 + (k % rlocs));
            sim::one_rloc_record(Address::Ipv4(prefix(k)), 24, 1440, rloc.into())
        })
        .collect();
    let mut xtr_id = [0u8; 16];
    xtr_id[12..].copy_from_slice(&first.to_be_bytes());
    // A later pass refreshes with a larger nonce (replay protection per xTR-ID).
    sim::signed_register(records, xtr_id, (pass + 1).to_be_bytes(), key.as_bytes())
}

fn map_request(nonce: u64, eid: Ipv4Addr) -> Vec<u8> {
    let q = MapRequest::new(
        nonce.to_be_bytes(),
        Address::None,
        Address::Ipv4(REPLY_ADDR),
        Address::Ipv4(eid),
        32,
    );
    ControlMessage::MapRequest(q)
        .to_bytes()
        .expect("a request emits")
}

/// Whether a Map-Request for `eid` gets a positive Map-Reply from `target`. Other messages
/// on the socket (answers to earlier checks, the SMRs a registration triggers toward an
/// earlier asker) are skipped by their nonce.
fn answered(sock: &UdpSocket, target: SocketAddr, eid: Ipv4Addr) -> bool {
    static NONCE: AtomicU64 = AtomicU64::new(1 << 40);
    let mut buf = [0u8; 2048];
    for _ in 0..5 {
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        let _ = sock.send_to(&map_request(nonce, eid), target);
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                break;
            };
            if let Ok(ControlMessage::MapReply(r)) = ControlMessage::parse(&buf[..n])
                && r.nonce == nonce.to_be_bytes()
            {
                return r.records.first().is_some_and(|rec| !rec.rlocs.is_empty());
            }
        }
    }
    false
}

fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("control_load: {e}");
            std::process::exit(2);
        }
    };
    let target = SocketAddr::new(a.target.into(), CONTROL_PORT);
    let sock = UdpSocket::bind((REPLY_ADDR, a.reply_port)).expect("bind 127.0.0.9");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = sock.local_addr().expect("local address").port();

    // Phase 1: the prefixes, in chunks of 40 registers (about 60 KB, well within a default
    // receive buffer); after each chunk, a lookup of its last prefix waits for the node to
    // have stored it, and a chunk whose end got lost is sent again with a larger nonce.
    let t0 = Instant::now();
    let chunk = 40 * PER_REGISTER;
    let mut first = 0;
    while first < a.prefixes && !a.echo {
        let end = (first + chunk).min(a.prefixes);
        let mut pass = 0;
        loop {
            let mut k = first;
            while k < end {
                let n = PER_REGISTER.min(end - k);
                let _ = sock.send_to(&register(k, n, a.rlocs, &a.key, pass), target);
                k += n;
            }
            if answered(
                &sock,
                target,
                Ipv4Addr::from(u32::from(prefix(end - 1)) + 1),
            ) {
                break;
            }
            pass += 1;
            assert!(pass < 10, "the node never stored prefix {}", end - 1);
        }
        first = end;
    }
    let missing = (0..if a.echo { 0 } else { 1000u32 })
        .map(|i| i.wrapping_mul(2_654_435_761) % a.prefixes)
        .filter(|k| !answered(&sock, target, Ipv4Addr::from(u32::from(prefix(*k)) + 1)))
        .count();
    eprintln!(
        "registered {} prefixes ({} distinct RLOCs) in {:.1} s; {missing} of 1000 sampled unanswered",
        a.prefixes,
        a.rlocs,
        t0.elapsed().as_secs_f64()
    );

    // Phase 2: requests from many sources as fast as one core sends them.
    let stop = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicU64::new(0));
    let counter = {
        let (stop, replies) = (stop.clone(), replies.clone());
        let sock = sock.try_clone().expect("clone");
        let any = a.echo;
        std::thread::spawn(move || count_replies(&sock, &stop, &replies, any))
    };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // One UDP socket per source address (127.1.0.0 onward), all on the counting socket's
    // port; each call sends BATCH equal-size requests as one UDP GSO datagram, which the
    // kernel splits before the node's socket, so the generator's core spends little per
    // request and the node still reads and answers every request on its own.
    let senders: Vec<UdpSocket> = (0..a.sources)
        .map(|k| {
            let s = UdpSocket::bind((Ipv4Addr::from(0x7f01_0000 + k), port))
                .expect("bind a source address");
            let seg = map_request(0, Ipv4Addr::UNSPECIFIED).len() as libc::c_int;
            // SAFETY: setsockopt with a valid descriptor and an int option value.
            let r = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_UDP,
                    libc::UDP_SEGMENT,
                    (&seg as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            assert_eq!(r, 0, "UDP GSO (UDP_SEGMENT) is needed");
            s
        })
        .collect();
    // A pool of prepared batches, cycled: each BATCH requests for random registered hosts.
    let pool: Vec<Vec<u8>> = (0..1024u64)
        .map(|b| {
            (0..BATCH as u64)
                .flat_map(|j| {
                    let r = next();
                    let k = (r >> 32) as u32 % a.prefixes;
                    let eid = Ipv4Addr::from(u32::from(prefix(k)) + 1 + (r as u32 % 200));
                    map_request(b * BATCH as u64 + j, eid)
                })
                .collect()
        })
        .collect();
    let mut sent = 0u64;
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let mut base: Option<(u64, Instant)> = None;
    let mut i = 0usize;
    while start.elapsed() < warm + Duration::from_secs(a.seconds) {
        if base.is_none() && start.elapsed() >= warm {
            base = Some((replies.load(Ordering::Relaxed), Instant::now()));
        }
        // Paced to --rate: beyond what one core can answer, and leaving the counting
        // thread (on this core too) the time to read every reply.
        let due = Duration::from_secs_f64(sent as f64 / a.rate.max(1) as f64);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let s = &senders[i % senders.len()];
        if s.send_to(&pool[i % pool.len()], target).is_ok() {
            sent += BATCH as u64;
        }
        i += 1;
    }
    let (r0, t_base) = base.unwrap_or((0, start));
    let got = replies.load(Ordering::Relaxed) - r0;
    let secs = t_base.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = counter.join();
    eprintln!(
        "sent {sent} requests, {} replies counted in all",
        replies.load(Ordering::Relaxed)
    );
    println!(
        "{:.0} Map-Replies/s ({} prefixes, {} distinct RLOCs, {} sources)",
        got as f64 / secs,
        a.prefixes,
        a.rlocs,
        a.sources
    );
}

/// Counts the Map-Replies (with `any`, every datagram: control_echo's echoes).
fn count_replies(sock: &UdpSocket, stop: &AtomicBool, replies: &AtomicU64, any: bool) {
    let fd = sock.as_raw_fd();
    // A wide buffer, read without blocking and otherwise asleep off the socket: a reader
    // waiting on the socket would make the node's every send wake it (an inter-processor
    // interrupt per reply, paid on the node's core), which no real ITR population costs it.
    let big: libc::c_int = 32 << 20;
    // SAFETY: setsockopt with a valid descriptor and an int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    let mut reader = lisp_decent::node::udp_io::BatchReader::new(BATCH);
    while !stop.load(Ordering::Relaxed) {
        let mut ok = 0;
        match reader.read(fd, |_, _, d| {
            if any || d.first().is_some_and(|b| b >> 4 == msg_type::MAP_REPLY) {
                ok += 1;
            }
        }) {
            Ok(_) => {}
            Err(_) => {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        replies.fetch_add(ok as u64, Ordering::Relaxed);
    }
}
