//! Interface addresses over netlink (rtnetlink): an RLOC given as an interface name, and the
//! interface index a multicast group is joined on.

use std::net::IpAddr;

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkFlags;

/// The index and the usable addresses (no IPv6 link-local) of an interface: none while its
/// link is not running (administratively down, or no carrier), as an RLOC there reaches
/// nobody.
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
        let running = LinkFlags::Up | LinkFlags::Running;
        if !link.header.flags.contains(running) {
            return Ok((index, out));
        }
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

/// Watches the kernel's address and link changes (netlink multicast groups RTMGRP_LINK,
/// RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR): each address added or removed and each link
/// change puts a signal in the returned channel (one at most waiting: a burst of changes,
/// an address moved from one interface to another, is one signal), so the node re-reads its
/// interface RLOCs at once instead of at its next poll. The watch ends with the runtime.
pub fn watch() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use futures_util::StreamExt;
    use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
    use rtnetlink::packet_core::NetlinkPayload;
    use rtnetlink::packet_route::RouteNetlinkMessage;
    use rtnetlink::sys::AsyncSocket;

    let (mut conn, _handle, mut messages) =
        rtnetlink::new_connection().context("cannot open a netlink socket")?;
    let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    conn.socket_mut()
        .socket_mut()
        .bind(&rtnetlink::sys::SocketAddr::new(0, groups))
        .context("cannot join the netlink address and link groups")?;
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some((m, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(m) = m.payload else {
                continue;
            };
            let change = matches!(
                m,
                RouteNetlinkMessage::NewAddress(_)
                    | RouteNetlinkMessage::DelAddress(_)
                    | RouteNetlinkMessage::NewLink(_)
                    | RouteNetlinkMessage::DelLink(_)
            );
            if change {
                match tx.try_send(()) {
                    Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => return,
                }
            }
        }
    });
    Ok(rx)
}
