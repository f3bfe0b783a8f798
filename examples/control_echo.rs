//! The kernel's ceiling for the whole-process control benchmark (scripts/bench-control.sh):
//! a process that does nothing but what every control-plane server must do per Map-Request,
//! read it and send one datagram of the same size back to the load generator's counting
//! socket, with the node's own socket code (`node::udp_io`: recvmmsg and sendmmsg, batches
//! of 32) on the same core. The node's Map-Replies per second divided by this process's
//! echoes per second is how much of the machine's UDP budget the node's own work leaves.
//!
//!   control_echo --listen 127.0.0.1:4342 --to 127.0.0.9:40000

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use lisp_decent::node::udp_io::{BatchReader, send_batch};

const BATCH: usize = 32;

fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut to: Option<SocketAddr> = None;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().and_then(|v| v.parse().ok());
        match k.as_str() {
            "--listen" => listen = v,
            "--to" => to = v,
            _ => {}
        }
    }
    let (Some(listen), Some(to)) = (listen, to) else {
        eprintln!("control_echo --listen ADDR:PORT --to ADDR:PORT");
        std::process::exit(2);
    };
    let sock = UdpSocket::bind(listen).expect("bind the listening address");
    let fd = sock.as_raw_fd();
    let mut reader = BatchReader::new(BATCH);
    let mut got: Vec<u8> = Vec::new();
    let mut lens: Vec<usize> = Vec::new();
    loop {
        got.clear();
        lens.clear();
        // What the socket holds, up to a batch; when it holds nothing, wait for it to be
        // readable (the node waits in epoll).
        if reader
            .read(fd, |_, _, d| {
                got.extend_from_slice(d);
                lens.push(d.len());
            })
            .is_err()
        {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut p, 1, -1) };
            continue;
        }
        let mut at = 0;
        let out: Vec<(SocketAddr, &[u8])> = lens
            .iter()
            .map(|n| {
                at += n;
                (to, &got[at - n..at])
            })
            .collect();
        let mut sent = 0;
        while sent < out.len() {
            match send_batch(fd, &out[sent..]) {
                Ok(n) => sent += n.max(1),
                Err(_) => sent += 1,
            }
        }
    }
}
