//! `decent lig`: LISP Internet Groper (RFC 6835). Sends an ECM Map-Request for an EID to a
//! Map-Resolver (the local node by default) and prints the mapping it gets back, as text in
//! lispers.net's layout or as JSON. The lookup itself is [`crate::node::lig`].

use std::time::Duration;

use crate::node::lig::{self, LigEid};
use crate::wire::CONTROL_PORT;

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

pub fn run(args: &LigArgs) -> anyhow::Result<bool> {
    let (iid, eid) = lig::parse_eid(&args.eid, args.iid)?;
    let target = lig::resolve_target(&args.to, args.port)?;
    if !args.json {
        let text = match &eid {
            LigEid::Ip(a) => format!("[{iid}]{a}"),
            LigEid::Name(n) => format!("[{iid}]'{n}'"),
        };
        println!("Send map-request to {} for EID {text} ...", target.ip());
    }
    let r = lig::lig(
        iid,
        &eid,
        target,
        args.count,
        Duration::from_secs_f64(args.timeout.clamp(0.1, 60.0)),
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", lig::text(&r));
    }
    Ok(r.reply)
}
