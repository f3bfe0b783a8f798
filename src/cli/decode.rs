//! `decent decode`: a LISP dissector for hex strings and packet captures.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::crypto::auth::{AuthKey, KeyRing};
use crate::present::capture::{FrameItem, read_capture};
use crate::present::describe::{self, AuthOutcome};
use crate::wire::{ControlMessage, WireError};

/// Arguments of `decent decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The packet as hex (a LISP control message, or a data packet with --data); several
    /// arguments are joined, so `32 00 08 01 ...` works.
    #[arg(required_unless_present = "pcap", conflicts_with = "pcap")]
    pub hex: Vec<String>,
    /// Decode every LISP packet (UDP 4341 and 4342) of a pcap or pcapng file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// A shared secret to authenticate Map-Registers, Map-Notifies and Info messages with, and
    /// to check the site-key signature of key exchanges (repeatable). `[n]secret` restricts
    /// it to key-id n, as lispers.net writes keys.
    #[arg(long = "key", value_name = "SECRET")]
    pub keys: Vec<String>,
    /// Treat the hex input as a LISP data packet (UDP 4341) rather than a control message.
    #[arg(long)]
    pub data: bool,
    /// One JSON object per LISP packet, one per line (JSON Lines).
    #[arg(long)]
    pub json: bool,
}

/// Where a payload came from.
struct Origin {
    frame: Option<u64>,
    src: Option<String>,
    dst: Option<String>,
    sport: Option<u16>,
    dport: Option<u16>,
}

/// Describes one LISP payload; `Err` carries the parse error and the partial object.
fn describe_payload(
    payload: &[u8],
    data: bool,
    keys: &KeyRing,
    names: &[String],
) -> Result<Value, (WireError, Value)> {
    if data {
        return describe::data_json(payload).map_err(|e| (e, json!({"type": "data"})));
    }
    // A key exchange signed with the site key ends with a trailer (crypto::kx_auth).
    if let Some((message, _)) = crate::crypto::kx_auth::split(payload)
        && let Ok(msg) = ControlMessage::parse(message)
    {
        let mut o = describe::message_json(&msg);
        let secrets: Vec<Vec<u8>> = keys.keys.iter().map(|k| k.secret.clone()).collect();
        describe::add_key_exchange_signature(&mut o, payload, &secrets, names);
        return Ok(o);
    }
    let msg = ControlMessage::parse(payload).map_err(|e| {
        let t = payload.first().map(|b| b >> 4);
        (e, json!({"type": t}))
    })?;
    let mut o = describe::message_json(&msg);
    let outcome = AuthOutcome::check(payload, &msg, keys);
    describe::add_auth(&mut o, &outcome, names);
    Ok(o)
}

pub fn run(args: &DecodeArgs) -> anyhow::Result<bool> {
    let names: Vec<String> = args.keys.clone();
    let mut keys = KeyRing::new(
        args.keys
            .iter()
            .map(|k| AuthKey::parse_lispers(k))
            .collect(),
    );
    // A dissector shows what verifies, truncated lengths included.
    keys.accept_truncated = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut ok = true;
    let mut emit =
        |origin: Origin, payload: &[u8], data: bool, out: &mut dyn Write| -> anyhow::Result<()> {
            let mut head = json!({
                "frame": origin.frame, "src": origin.src, "dst": origin.dst,
                "sport": origin.sport, "dport": origin.dport, "length": payload.len(),
            });
            let (body, err) = match describe_payload(payload, data, &keys, &names) {
                Ok(o) => (o, None),
                Err((e, o)) => (o, Some(e)),
            };
            if let (Value::Object(h), Value::Object(b)) = (&mut head, body) {
                h.extend(b);
            }
            if let Some(e) = &err {
                ok = false;
                head["error"] = json!(e.to_string());
                head["error_field"] = json!(e.field());
                head["error_offset"] = json!(e.offset());
            }
            if args.json {
                writeln!(out, "{head}")?;
                return Ok(());
            }
            let mut text = String::new();
            match origin.frame {
                Some(f) => text.push_str(&format!("frame {f}: ")),
                None => text.push_str("packet: "),
            }
            if let (Some(s), Some(d)) = (&origin.src, &origin.dst) {
                text.push_str(&format!(
                    "{s}:{} -> {d}:{}, ",
                    origin.sport.unwrap_or(0),
                    origin.dport.unwrap_or(0)
                ));
            }
            text.push_str(&format!("{} bytes\n", payload.len()));
            match &err {
                Some(e) => text.push_str(&format!("  error: {e}\n")),
                None => describe::text(&head, &mut text, "  "),
            }
            writeln!(out, "{text}")?;
            Ok(())
        };
    if let Some(path) = &args.pcap {
        let items = read_capture(path)?;
        if items.is_empty() {
            eprintln!(
                "decent decode: no LISP packets (UDP 4341 / 4342) in {}",
                path.display()
            );
        }
        for item in items {
            match item {
                FrameItem::Lisp(d) => {
                    let data = d.is_data();
                    let origin = Origin {
                        frame: Some(d.frame),
                        src: Some(d.src.to_string()),
                        dst: Some(d.dst.to_string()),
                        sport: Some(d.sport),
                        dport: Some(d.dport),
                    };
                    emit(origin, &d.payload, data, &mut out)?;
                }
                FrameItem::Note { frame, text } => {
                    if args.json {
                        eprintln!("frame {frame}: {text}");
                    } else {
                        writeln!(out, "frame {frame}: note: {text}\n")?;
                    }
                }
            }
        }
    } else {
        let joined: String = args
            .hex
            .concat()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let joined = joined.strip_prefix("0x").unwrap_or(&joined);
        let bytes = hex::decode(joined).context("the packet is not valid hex")?;
        if bytes.is_empty() {
            bail!("the packet is empty");
        }
        let origin = Origin {
            frame: None,
            src: None,
            dst: None,
            sport: None,
            dport: None,
        };
        emit(origin, &bytes, args.data, &mut out)?;
    }
    Ok(ok)
}
