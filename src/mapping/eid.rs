//! EID keys: what a mapping is stored under (RFC 9300 §8: every EID is scoped by an
//! Instance-ID).

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::wire::{Address, Lcaf, LcafBody, MulticastInfo};

/// An EID-prefix in an Instance-ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EidPrefix {
    pub iid: u32,
    pub prefix: IpNet,
}

impl EidPrefix {
    pub fn new(iid: u32, prefix: IpNet) -> Self {
        EidPrefix {
            iid,
            prefix: prefix.trunc(),
        }
    }

    /// The host prefix of an address.
    pub fn host(iid: u32, addr: IpAddr) -> Self {
        EidPrefix::new(iid, IpNet::from(addr))
    }

    pub fn contains(&self, iid: u32, addr: IpAddr) -> bool {
        self.iid == iid && self.prefix.contains(&addr)
    }

    /// The wire form: a plain address for Instance-ID 0 (as both lispers.net and OOR send
    /// it), an Instance-ID LCAF otherwise; and the mask-length.
    pub fn to_wire(&self) -> (Address, u8) {
        (
            wrap_iid(self.iid, Address::from(self.prefix.addr())),
            self.prefix.prefix_len(),
        )
    }
}

impl fmt::Display for EidPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]{}", self.iid, self.prefix)
    }
}

fn wrap_iid(iid: u32, a: Address) -> Address {
    if iid == 0 {
        a
    } else {
        Address::Lcaf(Box::new(Lcaf::new(LcafBody::InstanceId {
            iid,
            address: a,
        })))
    }
}

/// A multicast (S,G) entry; LISP-Decent's peer group is `(0.0.0.0/0, G)` (RFC 9962 §4,
/// RFC 8378).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupEid {
    pub iid: u32,
    pub source: IpNet,
    pub group: IpNet,
}

impl GroupEid {
    /// The `(*, G)` entry of a peer group: source 0.0.0.0/0 or ::/0.
    pub fn any_source(iid: u32, group: IpAddr) -> Self {
        let source = match group {
            IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
        };
        GroupEid {
            iid,
            source,
            group: IpNet::from(group),
        }
    }

    /// The Multicast-Info LCAF (RFC 8060 §4.5.2) and the record mask-length (the source's).
    /// `lispers_padding` selects lispers.net's layout.
    pub fn to_wire(&self, lispers_padding: bool) -> (Address, u8) {
        let m = MulticastInfo {
            iid: self.iid,
            reserved: 0,
            source_mask_len: self.source.prefix_len(),
            group_mask_len: self.group.prefix_len(),
            source: Address::from(self.source.addr()),
            group: Address::from(self.group.addr()),
            lispers_padding,
        };
        (
            Address::Lcaf(Box::new(Lcaf::new(LcafBody::MulticastInfo(m)))),
            self.source.prefix_len(),
        )
    }
}

impl fmt::Display for GroupEid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]({}, {})", self.iid, self.source, self.group)
    }
}

/// Anything a mapping can be registered for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EidKey {
    Prefix(EidPrefix),
    /// A distinguished-name EID (lispers.net registers the node name this way).
    Name {
        iid: u32,
        name: Vec<u8>,
    },
    Group(GroupEid),
}

impl EidKey {
    /// Reads the EID of a record: a plain or Instance-ID-scoped address with its mask-length,
    /// a distinguished name, or a Multicast-Info (S,G). Returns `None` for anything else.
    pub fn from_wire(eid: &Address, mask_len: u8) -> Option<EidKey> {
        let (iid, inner) = match eid {
            Address::Lcaf(l) => match &l.body {
                LcafBody::InstanceId { iid, address } => (*iid & 0x00ff_ffff, address),
                LcafBody::MulticastInfo(m) => {
                    let source = IpNet::new(m.source.ip()?, m.source_mask_len).ok()?.trunc();
                    let group = IpNet::new(m.group.ip()?, m.group_mask_len).ok()?.trunc();
                    if source.addr().is_ipv4() != group.addr().is_ipv4() {
                        return None;
                    }
                    return Some(EidKey::Group(GroupEid {
                        iid: m.iid & 0x00ff_ffff,
                        source,
                        group,
                    }));
                }
                _ => return None,
            },
            other => (0, other),
        };
        match inner {
            Address::Ipv4(_) | Address::Ipv6(_) => {
                let net = IpNet::new(inner.ip()?, mask_len).ok()?;
                Some(EidKey::Prefix(EidPrefix::new(iid, net)))
            }
            Address::Name(n) => Some(EidKey::Name {
                iid,
                name: n.clone(),
            }),
            _ => None,
        }
    }

    /// The wire form and mask-length of the key.
    pub fn to_wire(&self, lispers_padding: bool) -> (Address, u8) {
        match self {
            EidKey::Prefix(p) => p.to_wire(),
            EidKey::Name { iid, name } => (wrap_iid(*iid, Address::Name(name.clone())), 0),
            EidKey::Group(g) => g.to_wire(lispers_padding),
        }
    }

    pub fn iid(&self) -> u32 {
        match self {
            EidKey::Prefix(p) => p.iid,
            EidKey::Name { iid, .. } => *iid,
            EidKey::Group(g) => g.iid,
        }
    }
}

impl fmt::Display for EidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EidKey::Prefix(p) => write!(f, "{p}"),
            EidKey::Name { iid, name } => write!(f, "[{iid}]'{}'", String::from_utf8_lossy(name)),
            EidKey::Group(g) => write!(f, "{g}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_round_trip() {
        for k in [
            EidKey::Prefix(EidPrefix::new(0, "10.1.0.0/16".parse().unwrap())),
            EidKey::Prefix(EidPrefix::new(7, "2001:db8::/32".parse().unwrap())),
            EidKey::Name {
                iid: 0,
                name: b"n1".to_vec(),
            },
            EidKey::Group(GroupEid::any_source(0, "224.1.1.1".parse().unwrap())),
            EidKey::Group(GroupEid::any_source(0, "ff05::1".parse().unwrap())),
        ] {
            for pad in [false, true] {
                let (a, ml) = k.to_wire(pad);
                assert_eq!(EidKey::from_wire(&a, ml), Some(k.clone()), "{k}");
            }
        }
        assert_eq!(
            EidPrefix::new(0, "10.1.2.3/16".parse().unwrap()).to_string(),
            "[0]10.1.0.0/16"
        );
        assert_eq!(
            EidKey::from_wire(&Address::Ipv4("10.0.0.0".parse().unwrap()), 33),
            None
        );
    }
}
