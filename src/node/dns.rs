//! Pull mode: resolving the Map-Server set names `<index>.<suffix>` (RFC 9962 §5) with
//! hickory, periodically, in a task of its own so a slow DNS never stalls the engine.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::config::DnsSettings;
use crate::control::PullMode;

/// Builds the resolver: the configured server, or the system's (/etc/resolv.conf).
pub fn resolver(settings: &DnsSettings) -> anyhow::Result<TokioResolver> {
    let mut builder = match settings.server {
        Some(sa) => {
            let mut conn = ConnectionConfig::udp();
            conn.port = sa.port();
            let ns = NameServerConfig::new(sa.ip(), true, vec![conn]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio()?,
    };
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    // The node re-resolves on its own schedule; answers are not kept past it.
    opts.cache_size = 0;
    Ok(builder.build()?)
}

/// The addresses of set `index`: every A and AAAA record of `<index>.<suffix>`.
pub async fn resolve_set(r: &TokioResolver, pull: &PullMode, index: u32) -> Vec<IpAddr> {
    let name = format!("{index}.{}.", pull.dns_suffix.trim_end_matches('.'));
    match r.lookup_ip(name.as_str()).await {
        Ok(l) => {
            let mut v: Vec<IpAddr> = l.iter().collect();
            v.sort();
            v.dedup();
            v
        }
        Err(e) => {
            debug!(%name, "no Map-Server set: {e}");
            Vec::new()
        }
    }
}

/// Resolves every set now and then every `resolve_interval`, sending what changed.
pub fn spawn(
    pull: PullMode,
    settings: DnsSettings,
    tx: mpsc::Sender<(u32, Vec<IpAddr>)>,
) -> anyhow::Result<()> {
    let r = resolver(&settings)?;
    tokio::spawn(async move {
        let mut known: Vec<Option<Vec<IpAddr>>> = vec![None; pull.modulus as usize];
        loop {
            for index in 0..pull.modulus {
                let addrs = resolve_set(&r, &pull, index).await;
                let slot = &mut known[index as usize];
                if slot.as_ref() != Some(&addrs) {
                    info!(index, ?addrs, "Map-Server set resolved");
                    *slot = Some(addrs.clone());
                    if tx.send((index, addrs)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(settings.resolve_interval).await;
        }
    });
    Ok(())
}
