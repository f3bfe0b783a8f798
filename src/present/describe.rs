//! What `decent decode` says about a LISP packet: one JSON object per packet (the `--json`
//! form, documented in the README), and the readable text block derived from the same
//! typed message. The node logs each control message it sends or receives in the same words
//! at debug level ([`one_line`]).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::crypto::auth::{AuthError, KeyRing};
use crate::wire::{
    Address, ControlMessage, DataHeader, EidRecord, Lcaf, LcafBody, Reader, RlocRecord, WireError,
    action,
};

/// The outcome of authenticating one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Nothing to check: the type has no authentication, or no key was given.
    Unchecked,
    /// Authenticated with the key at this index of the key list.
    Ok(usize),
    Failed(AuthError),
}

impl AuthOutcome {
    pub fn check(bytes: &[u8], msg: &ControlMessage, keys: &KeyRing) -> Self {
        if msg.authentication().is_none() || keys.keys.is_empty() {
            return AuthOutcome::Unchecked;
        }
        match keys.verify(bytes) {
            Ok(i) => AuthOutcome::Ok(i),
            Err(e) => AuthOutcome::Failed(e),
        }
    }

    fn word(&self) -> &'static str {
        match self {
            AuthOutcome::Unchecked => "unchecked",
            AuthOutcome::Ok(_) => "ok",
            AuthOutcome::Failed(_) => "failed",
        }
    }
}

/// Display names of the keys as the user gave them, indexed like the key ring.
pub type KeyNames<'a> = &'a [String];

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn flags(pairs: &[(bool, &'static str)]) -> Vec<&'static str> {
    pairs
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, l)| *l)
        .collect()
}

/// Record TTL as lispers.net prints it (bit 31 set: seconds).
pub fn ttl_text(ttl: u32) -> String {
    if ttl & 0x8000_0000 != 0 {
        format!("{} secs", ttl & 0x7fff_ffff)
    } else if ttl == 0xffff_ffff {
        "infinite".into()
    } else if ttl != 0 && ttl.is_multiple_of(60) {
        format!("{} hours", ttl / 60)
    } else {
        format!("{ttl} mins")
    }
}

/// A structured description of an address; LCAFs by name with their contents.
pub fn address_json(a: &Address) -> Value {
    match a {
        Address::Lcaf(l) => lcaf_json(l),
        Address::None => json!({"afi": 0}),
        Address::Name(n) => json!({"afi": a.afi(), "name": String::from_utf8_lossy(n)}),
        _ => json!({"afi": a.afi(), "address": a.to_string()}),
    }
}

fn list_json(v: &[Address]) -> Value {
    Value::Array(v.iter().map(address_json).collect())
}

fn lcaf_json(l: &Lcaf) -> Value {
    let mut o = match &l.body {
        LcafBody::AfiList(v) => json!({"items": list_json(v)}),
        LcafBody::InstanceId { iid, address } => {
            json!({"iid": iid, "iid_mask_len": l.rsvd2, "address": address_json(address)})
        }
        LcafBody::Geo(g) => json!({
            "latitude": format!("{}-{}-{}-{}", g.lat_degrees, g.lat_minutes, g.lat_seconds, if g.north {'N'} else {'S'}),
            "longitude": format!("{}-{}-{}-{}", g.lon_degrees, g.lon_minutes, g.lon_seconds, if g.east {'E'} else {'W'}),
            "altitude": g.altitude, "address": address_json(&g.address)}),
        LcafBody::NatTraversal(n) => json!({
            "ms_port": n.ms_port, "etr_port": n.etr_port,
            "global_etr_rloc": address_json(&n.global_etr_rloc), "ms_rloc": address_json(&n.ms_rloc),
            "private_etr_rloc": address_json(&n.private_etr_rloc), "rtr_rlocs": list_json(&n.rtr_rlocs)}),
        LcafBody::MulticastInfo(m) => json!({
            "iid": m.iid, "source": address_json(&m.source), "source_mask_len": m.source_mask_len,
            "group": address_json(&m.group), "group_mask_len": m.group_mask_len,
            "flags": l.rsvd2, "lispers_padding": m.lispers_padding}),
        LcafBody::ExplicitLocatorPath(h) => json!({"hops": h.iter().map(|h| json!({
            "address": address_json(&h.address),
            "lookup": h.flags & crate::wire::ElpHop::LOOKUP != 0,
            "probe": h.flags & crate::wire::ElpHop::PROBE != 0,
            "strict": h.flags & crate::wire::ElpHop::STRICT != 0})).collect::<Vec<_>>()}),
        LcafBody::SecurityKey(k) => json!({
            "cipher_suite": k.cipher_suite, "key_count": k.keys.len(),
            "key_lengths": k.keys.iter().map(Vec::len).collect::<Vec<_>>(),
            "revoke": k.rsvd4 & crate::wire::SecurityKey::REVOKE != 0,
            "locator": address_json(&k.locator)}),
        LcafBody::SourceDest(sd) => json!({
            "source": address_json(&sd.source), "source_mask_len": sd.source_mask_len,
            "dest": address_json(&sd.dest), "dest_mask_len": sd.dest_mask_len}),
        LcafBody::ReplicationList(e) => json!({"entries": e.iter().map(|e| json!({
            "address": address_json(&e.address), "level": e.level,
            "name": e.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned())})).collect::<Vec<_>>()}),
        LcafBody::Json { json: j, address } => json!({
            "json": String::from_utf8_lossy(j), "binary": l.rsvd2 & 1 != 0, "address": address_json(address)}),
        LcafBody::Unknown { payload, .. } => json!({"payload": hex(payload)}),
    };
    if let Value::Object(m) = &mut o {
        m.insert("afi".into(), json!(crate::wire::afi::LCAF));
        m.insert("lcaf".into(), json!(l.type_name()));
        m.insert("lcaf_type".into(), json!(l.lcaf_type()));
        m.insert("text".into(), json!(l.to_string()));
    }
    o
}

fn rloc_json(r: &RlocRecord) -> Value {
    json!({
        "address": r.locator.ip().map_or_else(|| r.locator.to_string(), |ip| ip.to_string()),
        "priority": r.priority, "weight": r.weight, "m_priority": r.m_priority, "m_weight": r.m_weight,
        "flags": r.flag_letters(), "local": r.local(), "probed": r.probed(), "reachable": r.reachable(),
        "locator": address_json(&r.locator),
    })
}

fn record_json(r: &EidRecord) -> Value {
    json!({
        "eid": r.eid_text(), "ttl": r.ttl, "ttl_text": ttl_text(r.ttl),
        "action": action::name(r.action), "authoritative": r.authoritative,
        "map_version": r.map_version, "eid_address": address_json(&r.eid),
        "rlocs": r.rlocs.iter().map(rloc_json).collect::<Vec<_>>(),
    })
}

/// The JSON object of a control message (without the packet's addresses).
pub fn message_json(m: &ControlMessage) -> Value {
    let mut o = json!({"type": m.type_name(), "nonce": m.nonce().map(|n| hex(n))});
    let extra = match m {
        ControlMessage::MapRequest(q) => json!({
            "flags": flags(&[(q.authoritative, "A"), (q.map_reply.is_some(), "M"), (q.probe, "P"), (q.smr, "S"),
                (q.pitr, "p"), (q.smr_invoked, "s"), (q.mobile, "m"), (q.trailer.is_some(), "I"),
                (q.local_xtr, "L"), (q.dont_reply, "D")]),
            "source_eid": address_json(&q.source_eid),
            "itr_rlocs": list_json(&q.itr_rlocs),
            "records": q.records.iter().map(|r| json!({"eid": r.eid_text(), "ttl": null, "rlocs": [],
                "eid_address": address_json(&r.eid)})).collect::<Vec<_>>(),
            "map_reply": q.map_reply.as_ref().map(record_json),
            "xtr_id": q.trailer.map(|t| hex(&t.xtr_id)), "site_id": q.trailer.map(|t| hex(&t.site_id)),
        }),
        ControlMessage::MapReply(r) => json!({
            "flags": flags(&[(r.probe, "P"), (r.echo_nonce, "E"), (r.security, "S")]),
            "records": r.records.iter().map(record_json).collect::<Vec<_>>(),
        }),
        ControlMessage::MapRegister(r) => json!({
            "flags": flags(&[(r.proxy_reply, "P"), (r.security, "S"), (r.trailer.is_some(), "I"),
                (r.eid_notify, "E"), (r.use_ttl, "T"), (r.merge, "a"), (r.want_notify, "M")]),
            "key_id": r.auth.key_id, "alg_id": r.auth.alg_id, "auth_len": r.auth.data.len(),
            "records": r.records.iter().map(record_json).collect::<Vec<_>>(),
            "xtr_id": r.trailer.map(|t| hex(&t.xtr_id)), "site_id": r.trailer.map(|t| hex(&t.site_id)),
        }),
        ControlMessage::MapNotify(n) | ControlMessage::MapNotifyAck(n) => json!({
            "flags": flags(&[(n.trailer.is_some() && !n.unflagged_trailer, "I")]),
            "key_id": n.auth.key_id, "alg_id": n.auth.alg_id, "auth_len": n.auth.data.len(),
            "records": n.records.iter().map(record_json).collect::<Vec<_>>(),
            "xtr_id": n.trailer.map(|t| hex(&t.xtr_id)), "site_id": n.trailer.map(|t| hex(&t.site_id)),
        }),
        ControlMessage::MapReferral(r) => json!({
            "records": r.records.iter().map(|rr| {
                let mut v = record_json(&rr.record);
                v["signatures"] = json!(rr.signatures.len());
                v
            }).collect::<Vec<_>>(),
        }),
        ControlMessage::Info(i) => json!({
            "flags": flags(&[(i.reply, "R")]),
            "key_id": i.auth.key_id, "alg_id": i.auth.alg_id, "auth_len": i.auth.data.len(),
            "records": [{"eid": crate::wire::eid_text(&i.eid, i.mask_len), "ttl": i.ttl, "rlocs": []}],
            "info_ttl": i.ttl, "nat": address_json(&i.payload),
        }),
        ControlMessage::Ecm(e) => {
            let inner = message_json(&e.inner);
            json!({
                "flags": flags(&[(e.security, "S"), (e.ddt, "D"), (e.to_etr, "E"), (e.to_ms, "M")]),
                "nonce": inner["nonce"].clone(),
                "records": inner["records"].clone(),
                "inner_ip": {"src": e.inner_header.ip.src().to_string(), "dst": e.inner_header.ip.dst().to_string(),
                    "ttl": e.inner_header.ip.ttl(), "sport": e.inner_header.sport, "dport": e.inner_header.dport},
                "inner": inner,
            })
        }
    };
    if let (Value::Object(o), Value::Object(extra)) = (&mut o, extra) {
        o.extend(extra);
    }
    o
}

/// The JSON object of a LISP data packet (UDP 4341).
pub fn data_json(bytes: &[u8]) -> Result<Value, WireError> {
    let h = DataHeader::parse(bytes)?;
    let payload = &bytes[DataHeader::LEN..];
    let mut o = json!({
        "type": "data",
        "nonce": h.has(DataHeader::N).then(|| hex(&h.nonce.to_be_bytes()[1..])),
        "records": [],
        "flags": h.flag_letters(), "key_id": h.key_id,
        "instance_id": h.instance_id(), "lsbs": h.lsbs(),
        "payload_len": payload.len(),
        "encrypted": h.key_id != 0,
    });
    if h.key_id == 0 {
        if h.instance_id() == Some(crate::wire::CONTROL_INSTANCE_ID) {
            let mut r = Reader::new(payload);
            let (hdr, mut body) = crate::wire::IpUdp::parse(&mut r)?;
            let inner = ControlMessage::parse_from(&mut body)?;
            o["inner_ip"] = json!({"src": hdr.ip.src().to_string(), "dst": hdr.ip.dst().to_string(),
                "sport": hdr.sport, "dport": hdr.dport});
            o["records"] = message_json(&inner)["records"].clone();
            o["inner"] = message_json(&inner);
        } else if let Ok(ip) = etherparse::IpSlice::from_slice(payload) {
            let (src, dst, proto) = match &ip {
                etherparse::IpSlice::Ipv4(s) => (
                    s.header().source_addr().to_string(),
                    s.header().destination_addr().to_string(),
                    s.header().protocol().0,
                ),
                etherparse::IpSlice::Ipv6(s) => (
                    s.header().source_addr().to_string(),
                    s.header().destination_addr().to_string(),
                    s.payload().ip_number.0,
                ),
            };
            o["inner_ip"] = json!({"src": src, "dst": dst, "protocol": proto});
        }
    }
    Ok(o)
}

/// Adds the authentication verdict to a message object.
pub fn add_auth(o: &mut Value, outcome: &AuthOutcome, names: KeyNames<'_>) {
    o["auth"] = json!(outcome.word());
    o["key"] = match outcome {
        AuthOutcome::Ok(i) => json!(names.get(*i)),
        _ => Value::Null,
    };
    if let AuthOutcome::Failed(e) = outcome {
        o["auth_error"] = json!(e.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Text

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn flag_list(v: &Value) -> String {
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(s).collect::<Vec<_>>().join(""),
        Value::String(st) => st.clone(),
        _ => "none".into(),
    }
}

fn addr_text(v: &Value) -> String {
    if let Some(t) = v.get("text") {
        s(t)
    } else if let Some(a) = v.get("address") {
        s(a)
    } else {
        "no-address".into()
    }
}

fn title(t: &str) -> &'static str {
    match t {
        "map-request" => "Map-Request",
        "map-reply" => "Map-Reply",
        "map-register" => "Map-Register",
        "map-notify" => "Map-Notify",
        "map-notify-ack" => "Map-Notify-Ack",
        "map-referral" => "Map-Referral",
        "info-request" => "Info-Request",
        "info-reply" => "Info-Reply",
        "ecm" => "ECM",
        _ => "LISP data",
    }
}

fn write_record(out: &mut String, indent: &str, r: &Value) {
    if r["ttl"].is_null() {
        let _ = writeln!(out, "{indent}EID {}", s(&r["eid"]));
        return;
    }
    let _ = writeln!(
        out,
        "{indent}EID-record {}, ttl {}, action {}, {}, map-version {}, {} rloc(s)",
        s(&r["eid"]),
        s(&r["ttl_text"]),
        s(&r["action"]),
        if r["authoritative"] == json!(true) {
            "auth"
        } else {
            "not-auth"
        },
        s(&r["map_version"]),
        r["rlocs"].as_array().map_or(0, Vec::len)
    );
    for l in r["rlocs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{indent}  RLOC {}, up/uw/mp/mw: {}/{}/{}/{}, flags: {}",
            s(&l["address"]),
            s(&l["priority"]),
            s(&l["weight"]),
            s(&l["m_priority"]),
            s(&l["m_weight"]),
            s(&l["flags"])
        );
        if l["locator"].get("lcaf").is_some() {
            let _ = writeln!(out, "{indent}    {}", addr_text(&l["locator"]));
        }
    }
}

/// The readable block of a described message (control or data), from its JSON object.
pub fn text(o: &Value, out: &mut String, indent: &str) {
    let t = s(&o["type"]);
    let mut head = format!("{indent}{}", title(&t));
    if t != "data" {
        let _ = write!(head, ", flags: {}", flag_list(&o["flags"]));
        if !o["nonce"].is_null() {
            let _ = write!(head, ", nonce 0x{}", s(&o["nonce"]));
        }
    }
    if o.get("key_id").is_some() && t != "data" {
        let _ = write!(
            head,
            ", key-id {}, alg-id {}, auth-len {}",
            s(&o["key_id"]),
            s(&o["alg_id"]),
            s(&o["auth_len"])
        );
    }
    out.push_str(&head);
    out.push('\n');
    match t.as_str() {
        "data" => {
            let _ = writeln!(
                out,
                "{indent}  flags {}, nonce {}, instance-id {}, key-id {}{}, {} payload bytes",
                s(&o["flags"]),
                o["nonce"].as_str().map_or("-".into(), |n| format!("0x{n}")),
                s(&o["instance_id"]),
                s(&o["key_id"]),
                if o["encrypted"] == json!(true) {
                    " (encrypted)"
                } else {
                    ""
                },
                s(&o["payload_len"])
            );
            if let Some(ip) = o.get("inner_ip") {
                let _ = writeln!(
                    out,
                    "{indent}  inner {} -> {}{}",
                    s(&ip["src"]),
                    s(&ip["dst"]),
                    ip.get("protocol")
                        .map_or(String::new(), |p| format!(", protocol {}", s(p)))
                );
            }
        }
        "map-request" => {
            let _ = writeln!(out, "{indent}  source-eid {}", addr_text(&o["source_eid"]));
            for r in o["itr_rlocs"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{indent}  itr-rloc {}", addr_text(r));
            }
        }
        "ecm" => {
            let ip = &o["inner_ip"];
            let _ = writeln!(
                out,
                "{indent}  inner {}:{} -> {}:{}, ttl {}",
                s(&ip["src"]),
                s(&ip["sport"]),
                s(&ip["dst"]),
                s(&ip["dport"]),
                s(&ip["ttl"])
            );
        }
        "info-request" | "info-reply" => {
            let _ = writeln!(out, "{indent}  nat {}", addr_text(&o["nat"]));
        }
        _ => {}
    }
    if t != "ecm" {
        for r in o["records"].as_array().into_iter().flatten() {
            write_record(out, &format!("{indent}  "), r);
        }
        if let Some(m) = o.get("map_reply").filter(|m| !m.is_null()) {
            let _ = writeln!(out, "{indent}  map-reply record:");
            write_record(out, &format!("{indent}    "), m);
        }
    }
    if !o["xtr_id"].is_null() && o.get("xtr_id").is_some() {
        let _ = writeln!(
            out,
            "{indent}  xtr-id 0x{}, site-id 0x{}",
            s(&o["xtr_id"]),
            s(&o["site_id"])
        );
    }
    if let Some(a) = o.get("auth")
        && (o.get("key_id").is_some() || a != "unchecked")
    {
        let _ = match s(a).as_str() {
            "ok" => writeln!(out, "{indent}  auth: ok with key '{}'", s(&o["key"])),
            "failed" => writeln!(out, "{indent}  auth: FAILED ({})", s(&o["auth_error"])),
            _ => writeln!(out, "{indent}  auth: unchecked (no --key given)"),
        };
    }
    if let Some(k) = o.get("key_exchange_signature") {
        let _ = match s(k).as_str() {
            "ok" => writeln!(
                out,
                "{indent}  key-exchange signature: ok with key '{}'",
                s(&o["key"])
            ),
            "failed" => writeln!(out, "{indent}  key-exchange signature: FAILED"),
            _ => writeln!(
                out,
                "{indent}  key-exchange signature: unchecked (no --key given)"
            ),
        };
    }
    if let Some(inner) = o.get("inner") {
        text(inner, out, &format!("{indent}  "));
    }
}

/// A control message that ends with the site-key signature of a key exchange
/// ([`crate::crypto::kx_auth`]): the message, and the verdict under `secrets` (`names` in
/// the same order): `ok` with the key's name, `failed`, or `unchecked` without a key.
pub fn add_key_exchange_signature(
    o: &mut Value,
    signed: &[u8],
    secrets: &[Vec<u8>],
    names: KeyNames<'_>,
) {
    let verdict = secrets
        .iter()
        .position(|k| crate::crypto::kx_auth::KxKey::from_site_key(k).verify(signed));
    o["key_exchange_signature"] = json!(match (verdict, secrets.is_empty()) {
        (Some(_), _) => "ok",
        (None, true) => "unchecked",
        (None, false) => "failed",
    });
    o["key"] = json!(verdict.and_then(|i| names.get(i)));
}

/// One control message (or LISP data carrying one) as a single line in `decent decode`'s
/// words, for the debug log; unparseable bytes say why.
pub fn one_line(bytes: &[u8], data: bool) -> String {
    let o = if data {
        data_json(bytes)
    } else {
        let message = match crate::crypto::kx_auth::split(bytes) {
            Some((m, _)) if ControlMessage::parse(m).is_ok() => m,
            _ => bytes,
        };
        ControlMessage::parse(message).map(|m| message_json(&m))
    };
    match o {
        Ok(o) => {
            let mut t = String::new();
            text(&o, &mut t, "");
            t.lines().map(str::trim).collect::<Vec<_>>().join("; ")
        }
        Err(e) => format!("malformed ({e}), {} bytes", bytes.len()),
    }
}
