//! Longest-prefix-match tables per Instance-ID and address family (prefix-trie).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::eid::EidPrefix;

/// The prefixes of one Instance-ID.
#[derive(Debug, Clone)]
struct Family<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

/// A map from EID-prefixes to values with longest-prefix match, per Instance-ID.
#[derive(Debug, Clone)]
pub struct PrefixTable<T> {
    iids: HashMap<u32, Family<T>>,
    len: usize,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            iids: HashMap::new(),
            len: 0,
        }
    }
}

impl<T> PrefixTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, p: EidPrefix, v: T) -> Option<T> {
        let f = self.iids.entry(p.iid).or_default();
        let old = match p.prefix {
            IpNet::V4(n) => f.v4.insert(n, v),
            IpNet::V6(n) => f.v6.insert(n, v),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, p: &EidPrefix) -> Option<T> {
        let f = self.iids.get_mut(&p.iid)?;
        let old = match p.prefix {
            IpNet::V4(n) => f.v4.remove(&n),
            IpNet::V6(n) => f.v6.remove(&n),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn get(&self, p: &EidPrefix) -> Option<&T> {
        let f = self.iids.get(&p.iid)?;
        match p.prefix {
            IpNet::V4(n) => f.v4.get(&n),
            IpNet::V6(n) => f.v6.get(&n),
        }
    }

    pub fn get_mut(&mut self, p: &EidPrefix) -> Option<&mut T> {
        let f = self.iids.get_mut(&p.iid)?;
        match p.prefix {
            IpNet::V4(n) => f.v4.get_mut(&n),
            IpNet::V6(n) => f.v6.get_mut(&n),
        }
    }

    /// Longest-prefix match of an address.
    pub fn lookup(&self, iid: u32, addr: IpAddr) -> Option<(EidPrefix, &T)> {
        self.lookup_prefix(&EidPrefix::host(iid, addr))
    }

    /// The longest stored prefix covering `p` (`p` itself included).
    pub fn lookup_prefix(&self, p: &EidPrefix) -> Option<(EidPrefix, &T)> {
        let f = self.iids.get(&p.iid)?;
        match p.prefix {
            IpNet::V4(n) => {
                f.v4.get_lpm(&n)
                    .map(|(k, v)| (EidPrefix::new(p.iid, IpNet::V4(k)), v))
            }
            IpNet::V6(n) => {
                f.v6.get_lpm(&n)
                    .map(|(k, v)| (EidPrefix::new(p.iid, IpNet::V6(k)), v))
            }
        }
    }

    /// Whether any stored prefix lies inside `p` (`p` itself included), other than `except`.
    pub fn has_within(&self, p: &EidPrefix, except: Option<&EidPrefix>) -> bool {
        let Some(f) = self.iids.get(&p.iid) else {
            return false;
        };
        let skip = |k: IpNet| except.is_some_and(|e| e.prefix == k);
        match p.prefix {
            IpNet::V4(n) => f.v4.children(&n).any(|(k, _)| !skip(IpNet::V4(k))),
            IpNet::V6(n) => f.v6.children(&n).any(|(k, _)| !skip(IpNet::V6(k))),
        }
    }

    /// Every prefix and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (EidPrefix, &T)> {
        self.iids.iter().flat_map(|(iid, f)| {
            let iid = *iid;
            f.v4.iter()
                .map(move |(k, v)| (EidPrefix::new(iid, IpNet::V4(k)), v))
                .chain(
                    f.v6.iter()
                        .map(move |(k, v)| (EidPrefix::new(iid, IpNet::V6(k)), v)),
                )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(iid: u32, s: &str) -> EidPrefix {
        EidPrefix::new(iid, s.parse().unwrap())
    }

    #[test]
    fn longest_match_per_instance_id() {
        let mut t = PrefixTable::new();
        t.insert(p(0, "10.0.0.0/8"), 1);
        t.insert(p(0, "10.1.0.0/16"), 2);
        t.insert(p(5, "10.1.0.0/16"), 3);
        t.insert(p(0, "2001:db8::/32"), 4);
        assert_eq!(t.len(), 4);
        assert_eq!(
            t.lookup(0, "10.1.2.3".parse().unwrap()).map(|x| *x.1),
            Some(2)
        );
        assert_eq!(
            t.lookup(0, "10.2.2.3".parse().unwrap()).map(|x| *x.1),
            Some(1)
        );
        assert_eq!(
            t.lookup(5, "10.1.2.3".parse().unwrap()).map(|x| *x.1),
            Some(3)
        );
        assert_eq!(t.lookup(5, "10.2.2.3".parse().unwrap()), None);
        assert_eq!(
            t.lookup(0, "2001:db8::1".parse().unwrap()).map(|x| *x.1),
            Some(4)
        );
        assert!(t.has_within(&p(0, "10.0.0.0/7"), None));
        assert!(t.has_within(&p(0, "10.1.0.0/16"), None));
        assert!(!t.has_within(&p(0, "10.1.0.0/16"), Some(&p(0, "10.1.0.0/16"))));
        assert!(!t.has_within(&p(0, "11.0.0.0/8"), None));
        assert_eq!(t.remove(&p(0, "10.1.0.0/16")), Some(2));
        assert_eq!(t.len(), 3);
        assert_eq!(t.iter().count(), 3);
    }
}
