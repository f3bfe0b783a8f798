//! Interface addresses over netlink (rtnetlink): an RLOC given as an interface name, and the
//! interface index a multicast group is joined on.

use std::net::IpAddr;

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;

/// The index and the usable addresses (no IPv6 link-local) of an interface.
pub async fn addresses(name: &str) -> anyhow::Result<(u32, Vec<IpAddr>)> {
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
    let task = tokio::spawn(conn);
    let result = async {
        let mut links = handle.link().get().match_name(name.to_string()).execute();
        let Some(link) = links
            .try_next()
            .await
            .with_context(|| format!("interface {name}"))?
        else {
            bail!("no interface named {name}");
        };
        let index = link.header.index;
        let mut out = Vec::new();
        let mut addrs = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = addrs.try_next().await? {
            for attr in msg.attributes {
                if let AddressAttribute::Address(a) = attr {
                    let link_local =
                        matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                    if !link_local && !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        Ok((index, out))
    }
    .await;
    task.abort();
    result
}

/// The interface that holds `addr`, by index.
pub async fn index_of(addr: IpAddr) -> anyhow::Result<u32> {
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
    let task = tokio::spawn(conn);
    let result = async {
        let mut addrs = handle.address().get().set_address_filter(addr).execute();
        while let Some(msg) = addrs.try_next().await? {
            if msg
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(x) if *x == addr))
            {
                return Ok(msg.header.index);
            }
        }
        bail!("no interface holds {addr}")
    }
    .await;
    task.abort();
    result
}
