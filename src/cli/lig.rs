//! `decent lig`: LISP Internet Groper (RFC 6835). Sends an ECM Map-Request for an EID to a
//! Map-Resolver (the local node by default) and prints the mapping it gets back.
//!
//! Works against our nodes, lispers.net and OOR: OOR's Map-Server answers only ECM requests
//! and replies to the inner UDP source port, sometimes from another address, so the
//! request is an ECM whose inner source port is the port we listen on, and any reply with
//! our nonce is accepted, whatever its source.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, Ecm, IpUdp, Lcaf, LcafBody, MapRequest, action,
};

#[derive(Debug, clap::Args)]
pub struct LigArgs {
    /// The EID to look up: an address, `[iid]address`, a DNS name, or a distinguished name
    /// in single quotes (`'n3'`, the name a node registers).
    pub eid: String,
    /// The Map-Resolver to ask.
    #[arg(long, default_value = "127.0.0.1")]
    pub to: String,
    /// Instance-ID of the EID (overrides a `[iid]` prefix).
    #[arg(long)]
    pub iid: Option<u32>,
    /// Requests to send before giving up (1 to 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub count: u8,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// UDP port of the Map-Resolver.
    #[arg(long, default_value_t = CONTROL_PORT)]
    pub port: u16,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What to look up: an address, or a distinguished name (`'name'`, as lispers.net writes it).
enum LigEid {
    Ip(IpAddr),
    Name(String),
}

fn parse_eid(text: &str, iid: Option<u32>) -> anyhow::Result<(u32, LigEid)> {
    let (iid_in, rest) = match text.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((i, r)) => (
            Some(
                i.parse::<u32>()
                    .with_context(|| format!("bad Instance-ID in {text}"))?,
            ),
            r,
        ),
        None => (None, text),
    };
    let iid = iid.or(iid_in).unwrap_or(0);
    if iid >= crate::wire::CONTROL_INSTANCE_ID {
        bail!("Instance-ID {iid} does not fit 24 bits (0xFFFFFF is reserved)");
    }
    if let Some(name) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Ok((iid, LigEid::Name(name.to_string())));
    }
    let addr = match rest.parse::<IpAddr>() {
        Ok(a) => a,
        Err(_) => (rest, 0)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {rest}"))?
            .next()
            .map(|s| s.ip())
            .with_context(|| format!("{rest} has no address"))?,
    };
    Ok((iid, LigEid::Ip(addr)))
}

fn resolve_target(to: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = to.parse::<IpAddr>() {
        return Ok(SocketAddr::new(a, port));
    }
    (to, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {to}"))?
        .next()
        .with_context(|| format!("{to} has no address"))
}

pub fn run(args: &LigArgs) -> anyhow::Result<bool> {
    let (iid, eid) = parse_eid(&args.eid, args.iid)?;
    let target = resolve_target(&args.to, args.port)?;
    // The local address toward the Map-Resolver is our ITR-RLOC.
    let probe = UdpSocket::bind(if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    probe
        .connect(target)
        .with_context(|| format!("no route to {target}"))?;
    let local = probe.local_addr()?.ip();
    drop(probe);
    let sock = UdpSocket::bind(SocketAddr::new(local, 0)).context("cannot bind a UDP socket")?;
    let port = sock.local_addr()?.port();
    let (eid_text, plain, mask, eid_ip) = match &eid {
        LigEid::Ip(a) => (
            format!("[{iid}]{a}"),
            Address::from(*a),
            if a.is_ipv4() { 32 } else { 128 },
            Some(*a),
        ),
        LigEid::Name(n) => (
            format!("[{iid}]'{n}'"),
            Address::Name(n.as_bytes().to_vec()),
            0,
            None,
        ),
    };
    let wire_eid = if iid == 0 {
        plain
    } else {
        Address::Lcaf(Box::new(Lcaf::new(LcafBody::InstanceId {
            iid,
            address: plain,
        })))
    };
    if !args.json {
        println!("Send map-request to {} for EID {eid_text} ...", target.ip());
    }
    let mut buf = [0u8; 65536];
    for _ in 0..args.count {
        let nonce: [u8; 8] = rand::random();
        let req = MapRequest::new(
            nonce,
            Address::None,
            Address::from(local),
            wire_eid.clone(),
            mask,
        );
        // The inner header: from our RLOC to the EID, UDP from our port to 4342 (RFC 9301
        // §5.8); a family mismatch (IPv6 EID, IPv4 RLOC) puts the RLOC family on both ends.
        let inner_dst = match eid_ip {
            Some(a) if a.is_ipv4() == local.is_ipv4() => a,
            _ => target.ip(),
        };
        let hdr = IpUdp::new(local, inner_dst, 64, port, CONTROL_PORT)?;
        let bytes =
            ControlMessage::Ecm(Ecm::new(hdr, ControlMessage::MapRequest(req))).to_bytes()?;
        let sent = Instant::now();
        sock.send_to(&bytes, target)
            .with_context(|| format!("cannot send to {target}"))?;
        let deadline = sent + Duration::from_secs_f64(args.timeout.max(0.1));
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let Ok(ControlMessage::MapReply(r)) = ControlMessage::parse(&buf[..n]) else {
                continue;
            };
            if r.nonce != nonce {
                continue;
            }
            print_reply(args, &eid_text, from, sent.elapsed(), &r);
            return Ok(true);
        }
    }
    if args.json {
        println!("{}", json!({"eid": eid_text, "reply": false}));
    } else {
        println!("*** No map-reply received ***");
    }
    Ok(false)
}

fn print_reply(
    args: &LigArgs,
    requested: &str,
    from: SocketAddr,
    rtt: Duration,
    r: &crate::wire::MapReply,
) {
    let Some(rec) = r.records.first() else {
        println!("Received an empty map-reply from {}", from.ip());
        return;
    };
    let negative = rec.rlocs.is_empty();
    let kind = if negative {
        "negative"
    } else if rec.authoritative {
        "authoritative"
    } else {
        "proxy"
    };
    if args.json {
        let rlocs: Vec<_> = rec
            .rlocs
            .iter()
            .map(|l| {
                json!({
                    "address": l.locator.ip().map_or_else(|| l.locator.to_string(), |a| a.to_string()),
                    "priority": l.priority, "weight": l.weight,
                    "m_priority": l.m_priority, "m_weight": l.m_weight,
                    "state": if l.reachable() { "up" } else { "down" },
                    "flags": l.flag_letters(),
                })
            })
            .collect();
        let o = json!({
            "eid": rec.eid_text(), "requested": requested, "ttl": rec.ttl,
            "action": action::name(rec.action), "negative": negative,
            "authoritative": rec.authoritative, "kind": kind,
            "rlocs": rlocs, "rtt_ms": rtt.as_secs_f64() * 1000.0,
            "replier": from.ip().to_string(),
        });
        println!("{o}");
        return;
    }
    println!(
        "Received map-reply from {} with rtt {:.3} secs",
        from.ip(),
        rtt.as_secs_f64()
    );
    println!("Mapping entry for EID {requested}:");
    println!(
        "{}, via map-reply, record ttl: {}, {}, {}, not mobile",
        rec.eid_text(),
        rec.ttl,
        if rec.authoritative {
            "auth"
        } else {
            "not auth"
        },
        kind
    );
    if negative {
        println!(
            "  Negative cache entry, action: {}",
            action::name(rec.action)
        );
        return;
    }
    println!("  {:<40} {:<8} Priority/Weight", "Locator", "State");
    for l in &rec.rlocs {
        let addr = l
            .locator
            .ip()
            .map_or_else(|| l.locator.to_string(), |a| a.to_string());
        let state = if l.reachable() { "up" } else { "down" };
        println!("  {addr:<40} {state:<8} {}/{}", l.priority, l.weight);
    }
}
