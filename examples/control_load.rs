//! Load generator for the whole-process control-plane benchmark (scripts/bench-control.sh):
//! registers `--prefixes` /24 EID-prefixes with a running node (signed Map-Registers, 50
//! records each, their RLOCs drawn from `--rlocs` distinct addresses of 100.64.0.0/10), then
//! sends it Map-Requests for random registered hosts as fast as it can for `--seconds`, from
//! `--sources` spoofed source addresses (a raw socket: root, and only inside the benchmark's
//! own network namespace), and counts the Map-Replies that come back.
//!
//! Every request names 127.0.0.9 as its ITR-RLOC and the counting socket's port as its UDP
//! source port, so all replies reach one socket whatever source the request carried.
//!
//!   control_load --target 127.0.0.1 --key KEY --prefixes 1000000 --rlocs 100000 \
//!                --seconds 10 --sources 256

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
}

fn args() -> std::result::Result<Args, String> {
    let mut a = Args {
        target: Ipv4Addr::LOCALHOST,
        key: String::new(),
        prefixes: 1_000_000,
        rlocs: 1,
        seconds: 10,
        sources: 256,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        let bad = |e: String| format!("{k} {v}: {e}");
        match k.as_str() {
            "--target" => a.target = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--key" => a.key = v,
            "--prefixes" => a.prefixes = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--rlocs" => a.rlocs = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--seconds" => a.seconds = v.parse().map_err(|e| bad(format!("{e}")))?,
            "--sources" => a.sources = v.parse().map_err(|e| bad(format!("{e}")))?,
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

/// An IPv4 + UDP datagram from `src`:`sport` to `dst`:4342 carrying `payload` (the kernel
/// fills the IP checksum; a zero UDP checksum is allowed over IPv4).
fn datagram(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&CONTROL_PORT.to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
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
    let sock = UdpSocket::bind((REPLY_ADDR, 0)).expect("bind 127.0.0.9");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = sock.local_addr().expect("local address").port();

    // Phase 1: the prefixes, in chunks of 40 registers (about 60 KB, well within a default
    // receive buffer); after each chunk, a lookup of its last prefix waits for the node to
    // have stored it, and a chunk whose end got lost is sent again with a larger nonce.
    let t0 = Instant::now();
    let chunk = 40 * PER_REGISTER;
    let mut first = 0;
    while first < a.prefixes {
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
    let missing = (0..1000u32)
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
        std::thread::spawn(move || count_replies(&sock, &stop, &replies))
    };
    // SAFETY: a raw IPv4 socket (IP_HDRINCL implied by IPPROTO_RAW); the fd is closed below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(raw >= 0, "a raw socket needs root");
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // A pool of prepared datagrams, cycled (each a random source and registered host).
    let pool: Vec<Vec<u8>> = (0..65_536u64)
        .map(|i| {
            let r = next();
            let src = Ipv4Addr::from(0x7f01_0000 + (r as u32 % a.sources));
            let k = (r >> 32) as u32 % a.prefixes;
            let eid = Ipv4Addr::from(u32::from(prefix(k)) + 1 + (i as u32 % 200));
            datagram(src, port, a.target, &map_request(i, eid))
        })
        .collect();
    let mut sent = 0u64;
    let start = Instant::now();
    let warm = Duration::from_secs(1);
    let mut base: Option<(u64, Instant)> = None;
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a.target).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut i = 0usize;
    while start.elapsed() < warm + Duration::from_secs(a.seconds) {
        if base.is_none() && start.elapsed() >= warm {
            base = Some((replies.load(Ordering::Relaxed), Instant::now()));
        }
        let mut iov: Vec<libc::iovec> = (0..BATCH)
            .map(|j| {
                let p = &pool[(i + j) % pool.len()];
                libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                }
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is valid; the pointers set below outlive the call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = &to as *const libc::sockaddr_in as *mut libc::c_void;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: msgs holds BATCH valid headers pointing at live buffers.
        let n = unsafe { libc::sendmmsg(raw, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
            i = (i + n as usize) % pool.len();
        }
    }
    let (r0, t_base) = base.unwrap_or((0, start));
    let got = replies.load(Ordering::Relaxed) - r0;
    let secs = t_base.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = counter.join();
    // SAFETY: closing the raw socket opened above.
    unsafe { libc::close(raw) };
    eprintln!("sent {sent} requests");
    println!(
        "{:.0} Map-Replies/s ({} prefixes, {} distinct RLOCs, {} sources)",
        got as f64 / secs,
        a.prefixes,
        a.rlocs,
        a.sources
    );
}

fn count_replies(sock: &UdpSocket, stop: &AtomicBool, replies: &AtomicU64) {
    let fd = sock.as_raw_fd();
    let mut bufs = vec![[0u8; 512]; BATCH];
    while !stop.load(Ordering::Relaxed) {
        let mut iov: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is valid; the iovec outlives the call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let mut timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: msgs holds BATCH valid headers pointing at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                &mut timeout,
            )
        };
        if n > 0 {
            let ok = bufs[..n as usize]
                .iter()
                .filter(|b| b[0] >> 4 == msg_type::MAP_REPLY)
                .count();
            replies.fetch_add(ok as u64, Ordering::Relaxed);
        }
    }
}
