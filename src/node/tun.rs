//! TUN devices, one per Instance-ID (RFC 9300 §8), created with tun-rs; their EID addresses
//! and the routes to remote EID-prefixes are installed over netlink (rtnetlink).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;
use ipnet::IpNet;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tun_rs::{AsyncDevice, DeviceBuilder};

use super::config::InstanceConfig;

/// Encapsulation overhead, at most: IPv6 outer header 40 + UDP 8 + LISP 8, plus lisp-crypto's
/// IV (up to 12) and AEAD tag (16). The TUN MTU leaves room for it on a 1500-byte underlay.
pub const ENCAP_OVERHEAD: u16 = 40 + 8 + 8 + 12 + 16;
pub const TUN_MTU: u16 = 1500 - ENCAP_OVERHEAD;

/// One Instance-ID's device and the remote prefixes routed into it.
pub struct Tun {
    pub instance_id: u32,
    pub device: Arc<AsyncDevice>,
    pub index: u32,
    routed: BTreeSet<IpNet>,
}

async fn netlink() -> anyhow::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

impl Tun {
    /// Creates the device, gives it its EID addresses (host prefixes) and brings it up.
    pub async fn create(cfg: &InstanceConfig) -> anyhow::Result<Tun> {
        let device = DeviceBuilder::new()
            .name(&cfg.tun)
            .mtu(TUN_MTU)
            .build_async()
            .with_context(|| {
                format!(
                    "cannot create TUN device {} (root or CAP_NET_ADMIN needed)",
                    cfg.tun
                )
            })?;
        let index = device.if_index().context("TUN device index")?;
        let h = netlink().await?;
        for a in &cfg.addresses {
            let len = if a.is_ipv4() { 32 } else { 128 };
            h.address()
                .add(index, *a, len)
                .replace()
                .execute()
                .await
                .with_context(|| format!("cannot add {a} to {}", cfg.tun))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("cannot bring {} up", cfg.tun))?;
        Ok(Tun {
            instance_id: cfg.instance_id,
            device: Arc::new(device),
            index,
            routed: BTreeSet::new(),
        })
    }

    /// Makes the routes into the device equal `wanted` (the remote EID-prefixes of its
    /// Instance-ID); returns how many routes were added and removed.
    pub async fn sync_routes(
        &mut self,
        wanted: &BTreeSet<IpNet>,
    ) -> anyhow::Result<(usize, usize)> {
        if *wanted == self.routed {
            return Ok((0, 0));
        }
        let h = netlink().await?;
        let mut added = 0;
        let mut removed = 0;
        for p in wanted.difference(&self.routed.clone()) {
            h.route()
                .add(route(*p, self.index))
                .replace()
                .execute()
                .await
                .with_context(|| format!("route {p}"))?;
            self.routed.insert(*p);
            added += 1;
        }
        for p in self.routed.difference(wanted).copied().collect::<Vec<_>>() {
            // The route may be gone already (the device went down): that is fine.
            let _ = h.route().del(route(p, self.index)).execute().await;
            self.routed.remove(&p);
            removed += 1;
        }
        Ok((added, removed))
    }
}

fn route(p: IpNet, index: u32) -> rtnetlink::packet_route::route::RouteMessage {
    match p {
        IpNet::V4(n) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(index)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(index)
            .build(),
    }
}
