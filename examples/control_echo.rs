//! The kernel's ceiling for the whole-process control benchmark (scripts/bench-control.sh):
//! a process that does nothing but what every control-plane server must do per Map-Request,
//! read it (recvmmsg, a batch at a time) and send one datagram of the same size back
//! (sendmmsg) to the load generator's counting socket, on the same sockets, batches and core
//! as the node. Map-Replies per second of the node divided by this process's echoes per
//! second is how much of the machine's UDP budget the node's own work leaves.
//!
//!   control_echo --listen 127.0.0.1:4342 --to 127.0.0.9:40000

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

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
    let (Some(listen), Some(SocketAddr::V4(to))) = (listen, to) else {
        eprintln!("control_echo --listen ADDR:PORT --to IPV4:PORT");
        std::process::exit(2);
    };
    let sock = UdpSocket::bind(listen).expect("bind the listening address");
    let fd = sock.as_raw_fd();
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*to.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut rx: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: an all-zero mmsghdr is valid; the iovec outlives every call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut out: Vec<libc::iovec> = iov.clone();
    let mut tx: Vec<libc::mmsghdr> = out
        .iter_mut()
        .map(|v| {
            // SAFETY: as above; `to` outlives every call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (&to as *const libc::sockaddr_in).cast_mut().cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    loop {
        // SAFETY: rx holds BATCH headers pointing at live buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                rx.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        for (m, o) in rx[..n as usize].iter().zip(out.iter_mut()) {
            o.iov_len = m.msg_len as usize;
        }
        for (m, o) in tx.iter_mut().zip(out.iter_mut()) {
            m.msg_hdr.msg_iov = o;
        }
        // SAFETY: tx's first n headers point at the buffers just read.
        unsafe { libc::sendmmsg(fd, tx.as_mut_ptr(), n as u32, 0) };
    }
}
