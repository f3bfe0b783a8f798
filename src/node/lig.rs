//! LISP Internet Groper (RFC 6835): an ECM Map-Request for an EID to a Map-Resolver, and the
//! mapping it gets back. Used by `decent lig` and by the web UI's lig form.
//!
//! Works against our nodes, lispers.net and OOR: OOR's Map-Server answers only ECM requests
//! and replies to the inner UDP source port, sometimes from another address, so the
//! request is an ECM whose inner source port is the port we listen on, and any reply with
//! our nonce is accepted, whatever its source.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, Ecm, EidRecord, IpUdp, Lcaf, LcafBody, MapRequest,
    action,
};

/// What to look up: an address, or a distinguished name (`'name'`, as lispers.net writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LigEid {
    Ip(IpAddr),
    Name(String),
}

/// Parses `address`, `[iid]address`, a DNS name, or `'name'`; `iid` overrides a `[iid]`.
pub fn parse_eid(text: &str, iid: Option<u32>) -> anyhow::Result<(u32, LigEid)> {
    let text = text.trim();
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
    if rest.is_empty() {
        bail!("no EID given");
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

/// Resolves a Map-Resolver given as an address or a host name.
pub fn resolve_target(to: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = to.parse::<IpAddr>() {
        return Ok(SocketAddr::new(a, port));
    }
    (to, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {to}"))?
        .next()
        .with_context(|| format!("{to} has no address"))
}

/// One RLOC of the reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LigRloc {
    pub address: String,
    pub priority: u8,
    pub weight: u8,
    pub m_priority: u8,
    pub m_weight: u8,
    pub state: String,
    pub flags: String,
}

/// The outcome of a lookup; `reply` false when no Map-Reply came.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LigResult {
    /// What was asked, as `[iid]address` or `[iid]'name'`.
    pub requested: String,
    pub resolver: String,
    pub reply: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default)]
    pub negative: bool,
    #[serde(default)]
    pub authoritative: bool,
    /// negative, authoritative or proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub rlocs: Vec<LigRloc>,
    /// Whether the reply's EID-prefix holds the EID asked for. A Map-Resolver that answers
    /// with a prefix that does not (OOR's negative replies can: 11.8.0.0/13 for 10.9.9.9)
    /// is wrong, and its answer must not be used.
    #[serde(default = "covers_by_default")]
    pub covers_eid: bool,
}

fn covers_by_default() -> bool {
    true
}

/// Whether the record's EID holds what was asked for.
fn covers(rec: &EidRecord, iid: u32, eid: &LigEid) -> bool {
    use crate::mapping::EidKey;
    match (EidKey::from_wire(&rec.eid, rec.mask_len), eid) {
        (Some(EidKey::Prefix(p)), LigEid::Ip(a)) => p.iid == iid && p.prefix.contains(a),
        (Some(EidKey::Name { iid: i, name }), LigEid::Name(n)) => i == iid && name == n.as_bytes(),
        _ => false,
    }
}

/// Sends up to `count` ECM Map-Requests for `eid` in `iid` to `target`, waiting `timeout`
/// for each reply (blocking).
pub fn lig(
    iid: u32,
    eid: &LigEid,
    target: SocketAddr,
    count: u8,
    timeout: Duration,
) -> anyhow::Result<LigResult> {
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
    let (requested, plain, mask, eid_ip) = match eid {
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
    let mut result = LigResult {
        requested,
        resolver: target.ip().to_string(),
        reply: false,
        eid: None,
        replier: None,
        rtt_ms: None,
        ttl: None,
        action: None,
        negative: false,
        authoritative: false,
        kind: None,
        rlocs: Vec::new(),
        covers_eid: true,
    };
    let mut buf = [0u8; 65536];
    for _ in 0..count.max(1) {
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
        let deadline = sent + timeout.max(Duration::from_millis(100));
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
            result.reply = true;
            result.replier = Some(from.ip().to_string());
            result.rtt_ms = Some(sent.elapsed().as_secs_f64() * 1000.0);
            if let Some(rec) = r.records.first() {
                result.negative = rec.rlocs.is_empty();
                result.authoritative = rec.authoritative;
                result.kind = Some(
                    if result.negative {
                        "negative"
                    } else if rec.authoritative {
                        "authoritative"
                    } else {
                        "proxy"
                    }
                    .into(),
                );
                result.eid = Some(rec.eid_text());
                result.covers_eid = covers(rec, iid, eid);
                result.ttl = Some(rec.ttl);
                result.action = Some(action::name(rec.action).into());
                result.rlocs = rec
                    .rlocs
                    .iter()
                    .map(|l| LigRloc {
                        address: l
                            .locator
                            .ip()
                            .map_or_else(|| l.locator.to_string(), |a| a.to_string()),
                        priority: l.priority,
                        weight: l.weight,
                        m_priority: l.m_priority,
                        m_weight: l.m_weight,
                        state: if l.reachable() { "up" } else { "down" }.into(),
                        flags: l.flag_letters(),
                    })
                    .collect();
            }
            return Ok(result);
        }
    }
    Ok(result)
}

/// The reply as lispers.net's lig prints it.
pub fn text(r: &LigResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !r.reply {
        out.push_str("*** No map-reply received ***\n");
        return out;
    }
    let replier = r.replier.as_deref().unwrap_or("?");
    let Some(eid) = &r.eid else {
        let _ = writeln!(out, "Received an empty map-reply from {replier}");
        return out;
    };
    let _ = writeln!(
        out,
        "Received map-reply from {replier} with rtt {:.3} secs",
        r.rtt_ms.unwrap_or(0.0) / 1000.0
    );
    let _ = writeln!(out, "Mapping entry for EID {}:", r.requested);
    let _ = writeln!(
        out,
        "{eid}, via map-reply, record ttl: {}, {}, {}, not mobile",
        r.ttl.unwrap_or(0),
        if r.authoritative { "auth" } else { "not auth" },
        r.kind.as_deref().unwrap_or("-")
    );
    if !r.covers_eid {
        let _ = writeln!(
            out,
            "  *** {eid} does not contain {}: the Map-Resolver's answer is wrong, do not use it ***",
            r.requested
        );
    }
    if r.negative {
        let _ = writeln!(
            out,
            "  Negative cache entry, action: {}",
            r.action.as_deref().unwrap_or("-")
        );
        return out;
    }
    let _ = writeln!(out, "  {:<40} {:<8} Priority/Weight", "Locator", "State");
    for l in &r.rlocs {
        let _ = writeln!(
            out,
            "  {:<40} {:<8} {}/{}",
            l.address, l.state, l.priority, l.weight
        );
    }
    out
}
