//! proptest strategies for every wire type, built so that each generated value is one the
//! parser can give back exactly (e.g. an unknown AFI only where its region ends).
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use lisp_decent::wire::*;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

pub fn name() -> impl Strategy<Value = Vec<u8>> {
    vec(1u8..=255, 1..12)
}

/// A plain address (no LCAF, no unknown AFI).
pub fn plain_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        Just(Address::None),
        any::<[u8; 4]>().prop_map(|b| Address::Ipv4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Address::Ipv6(Ipv6Addr::from(b))),
        any::<[u8; 6]>().prop_map(Address::Mac),
        name().prop_map(Address::Name),
    ]
}

/// An AFI none of the parsers knows, with its bytes: valid only at the end of a region.
pub fn unknown_address() -> impl Strategy<Value = Address> {
    (
        any::<u16>().prop_filter("unknown AFI", |a| ![0, 1, 2, 6, 17, 16387].contains(a)),
        vec(any::<u8>(), 0..10),
    )
        .prop_map(|(afi, bytes)| Address::Unknown { afi, bytes })
}

fn lcaf_with(inner: BoxedStrategy<Address>, tail: BoxedStrategy<Address>) -> BoxedStrategy<Lcaf> {
    let body = prop_oneof![
        (vec(inner.clone(), 0..3), option::of(tail.clone())).prop_map(|(mut v, t)| {
            v.extend(t);
            LcafBody::AfiList(v)
        }),
        (any::<u32>(), tail.clone())
            .prop_map(|(iid, address)| LcafBody::InstanceId { iid, address }),
        (
            (any::<bool>(), 0u16..0x8000, any::<u8>(), any::<u8>()),
            (any::<bool>(), 0u16..0x8000, any::<u8>(), any::<u8>()),
            any::<i32>(),
            inner.clone()
        )
            .prop_map(
                |(lat, lon, altitude, address)| LcafBody::Geo(GeoCoordinates {
                    north: lat.0,
                    lat_degrees: lat.1,
                    lat_minutes: lat.2,
                    lat_seconds: lat.3,
                    east: lon.0,
                    lon_degrees: lon.1,
                    lon_minutes: lon.2,
                    lon_seconds: lon.3,
                    altitude,
                    address,
                })
            ),
        (
            any::<u16>(),
            any::<u16>(),
            inner.clone(),
            inner.clone(),
            inner.clone(),
            vec(inner.clone(), 0..3)
        )
            .prop_map(
                |(ms_port, etr_port, g, m, p, rtr_rlocs)| LcafBody::NatTraversal(NatTraversal {
                    ms_port,
                    etr_port,
                    global_etr_rloc: g,
                    ms_rloc: m,
                    private_etr_rloc: p,
                    rtr_rlocs,
                })
            ),
        multicast_info(inner.clone()).prop_map(LcafBody::MulticastInfo),
        vec(
            (any::<u16>(), inner.clone()).prop_map(|(flags, address)| ElpHop { flags, address }),
            0..3
        )
        .prop_map(LcafBody::ExplicitLocatorPath),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            vec(vec(any::<u8>(), 0..40), 0..4),
            inner.clone()
        )
            .prop_map(
                |(rsvd3, cipher_suite, rsvd4, keys, locator)| LcafBody::SecurityKey(SecurityKey {
                    rsvd3,
                    cipher_suite,
                    rsvd4,
                    keys,
                    locator,
                })
            ),
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            inner.clone(),
            inner.clone()
        )
            .prop_map(|(reserved, sml, dml, s, d)| {
                LcafBody::SourceDest(SourceDest {
                    reserved,
                    source_mask_len: sml,
                    dest_mask_len: dml,
                    source: s,
                    dest: d,
                })
            }),
        vec(
            // Reserved 17 would read as a name of the entry before; peers send 0.
            (
                0u16..17,
                any::<u8>(),
                any::<u8>(),
                inner.clone(),
                option::of(name())
            )
                .prop_map(|(reserved, rsvd3, level, address, name)| RleEntry {
                    reserved,
                    rsvd3,
                    level,
                    address,
                    name,
                }),
            0..3
        )
        .prop_map(LcafBody::ReplicationList),
        (vec(any::<u8>(), 0..30), tail)
            .prop_map(|(json, address)| LcafBody::Json { json, address }),
        (
            prop_oneof![
                Just(0u8),
                Just(3),
                Just(4),
                Just(6),
                Just(8),
                Just(15),
                Just(16),
                Just(17),
                Just(255)
            ],
            vec(any::<u8>(), 0..20)
        )
            .prop_map(|(lcaf_type, payload)| LcafBody::Unknown { lcaf_type, payload }),
    ];
    (any::<u8>(), any::<u8>(), any::<u8>(), body)
        .prop_map(|(rsvd1, flags, rsvd2, body)| Lcaf {
            rsvd1,
            flags,
            rsvd2,
            body,
        })
        .boxed()
}

fn multicast_info(inner: BoxedStrategy<Address>) -> impl Strategy<Value = MulticastInfo> {
    let rfc = (
        any::<u32>(),
        any::<u16>(),
        any::<u8>(),
        any::<u8>(),
        inner.clone(),
        inner.clone(),
    )
        .prop_map(|(iid, reserved, sml, gml, source, group)| MulticastInfo {
            iid,
            reserved,
            source_mask_len: sml,
            group_mask_len: gml,
            source,
            group,
            lispers_padding: false,
        });
    // lispers' padded layout as lispers sends it: reserved 0 and mask lengths that are not
    // an AFI when read as one (it always sends a /32 or /128 group).
    let padded = (any::<u32>(), 0u8..=128, 18u8..=128, inner.clone(), inner).prop_map(
        |(iid, sml, gml, source, group)| MulticastInfo {
            iid,
            reserved: 0,
            source_mask_len: sml,
            group_mask_len: gml,
            source,
            group,
            lispers_padding: true,
        },
    );
    prop_oneof![rfc, padded]
}

/// Any address an LCAF-aware parser gives back exactly, LCAFs nested up to three levels.
pub fn address() -> BoxedStrategy<Address> {
    plain_address()
        .boxed()
        .prop_recursive(3, 24, 4, |inner| {
            let tail = prop_oneof![4 => inner.clone(), 1 => unknown_address()].boxed();
            prop_oneof![
                2 => inner.clone(),
                1 => lcaf_with(inner, tail).prop_map(|l| Address::Lcaf(Box::new(l))),
            ]
        })
        .boxed()
}

/// An LCAF of any type.
pub fn lcaf() -> BoxedStrategy<Lcaf> {
    let tail = prop_oneof![4 => address(), 1 => unknown_address()].boxed();
    lcaf_with(address(), tail)
}

pub fn rloc() -> impl Strategy<Value = RlocRecord> {
    (any::<[u8; 4]>(), any::<u16>(), address()).prop_map(|(p, flags, locator)| RlocRecord {
        priority: p[0],
        weight: p[1],
        m_priority: p[2],
        m_weight: p[3],
        flags,
        locator,
    })
}

pub fn eid_record() -> impl Strategy<Value = EidRecord> {
    (
        any::<u32>(),
        any::<u8>(),
        0u8..8,
        any::<bool>(),
        0u16..0x1000,
        0u8..16,
        0u16..0x1000,
        address(),
        vec(rloc(), 0..3),
    )
        .prop_map(
            |(
                ttl,
                mask_len,
                action,
                authoritative,
                reserved,
                rsvd_version,
                map_version,
                eid,
                rlocs,
            )| EidRecord {
                ttl,
                mask_len,
                action,
                authoritative,
                reserved,
                rsvd_version,
                map_version,
                eid,
                rlocs,
            },
        )
}

pub fn trailer() -> impl Strategy<Value = XtrTrailer> {
    (any::<[u8; 16]>(), any::<[u8; 8]>())
        .prop_map(|(xtr_id, site_id)| XtrTrailer { xtr_id, site_id })
}

fn authentication() -> impl Strategy<Value = Authentication> {
    (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(|(key_id, alg_id, data)| {
        Authentication {
            key_id,
            alg_id,
            data,
        }
    })
}

pub fn map_request() -> impl Strategy<Value = MapRequest> {
    (
        any::<[bool; 8]>(),
        any::<u32>(),
        any::<[u8; 8]>(),
        address(),
        vec(address(), 1..4),
        vec(
            (any::<u8>(), any::<u8>(), address()).prop_map(|(reserved, mask_len, eid)| {
                RequestRecord {
                    reserved,
                    mask_len,
                    eid,
                }
            }),
            0..3,
        ),
        option::of(eid_record()),
        option::of(trailer()),
    )
        .prop_map(
            |(f, reserved, nonce, source_eid, itr_rlocs, records, map_reply, trailer)| MapRequest {
                authoritative: f[0],
                probe: f[1],
                smr: f[2],
                pitr: f[3],
                smr_invoked: f[4],
                mobile: f[5],
                local_xtr: f[6],
                dont_reply: f[7],
                reserved: reserved & map_request::RESERVED_MASK,
                nonce,
                source_eid,
                itr_rlocs,
                records,
                map_reply,
                trailer,
            },
        )
}

pub fn map_reply() -> impl Strategy<Value = MapReply> {
    (
        any::<[bool; 3]>(),
        any::<u32>(),
        any::<[u8; 8]>(),
        vec(eid_record(), 0..3),
    )
        .prop_map(|(f, reserved, nonce, records)| MapReply {
            probe: f[0],
            echo_nonce: f[1],
            security: f[2],
            reserved: reserved & map_reply::RESERVED_MASK,
            nonce,
            records,
        })
}

pub fn map_register() -> impl Strategy<Value = MapRegister> {
    (
        any::<[bool; 6]>(),
        any::<u32>(),
        any::<[u8; 8]>(),
        authentication(),
        vec(eid_record(), 0..3),
        option::of(trailer()),
    )
        .prop_map(|(f, reserved, nonce, auth, records, trailer)| MapRegister {
            proxy_reply: f[0],
            security: f[1],
            eid_notify: f[2],
            use_ttl: f[3],
            merge: f[4],
            want_notify: f[5],
            reserved: reserved & map_register::REGISTER_RESERVED_MASK,
            nonce,
            auth,
            records,
            trailer,
        })
}

pub fn map_notify() -> impl Strategy<Value = MapNotify> {
    (
        any::<u32>(),
        any::<[u8; 8]>(),
        authentication(),
        vec(eid_record(), 0..3),
        option::of(trailer()),
        any::<bool>(),
    )
        .prop_map(
            |(reserved, nonce, auth, records, trailer, unflagged)| MapNotify {
                reserved: reserved & map_register::NOTIFY_RESERVED_MASK,
                nonce,
                auth,
                records,
                unflagged_trailer: unflagged && trailer.is_some(),
                trailer,
            },
        )
}

pub fn map_referral() -> impl Strategy<Value = MapReferral> {
    let sig = (
        any::<[u32; 3]>(),
        any::<u16>(),
        any::<u8>(),
        any::<[u8; 3]>(),
        vec(any::<u8>(), 0..20),
    )
        .prop_map(
            |(t, key_tag, algorithm, reserved, signature)| ReferralSignature {
                original_ttl: t[0],
                expiration: t[1],
                inception: t[2],
                key_tag,
                algorithm,
                reserved,
                signature,
            },
        );
    let rec = (eid_record(), vec(sig, 0..3)).prop_map(|(mut record, signatures)| {
        record.rsvd_version = signatures.len() as u8;
        ReferralRecord { record, signatures }
    });
    (any::<u32>(), any::<[u8; 8]>(), vec(rec, 0..3)).prop_map(|(reserved, nonce, records)| {
        MapReferral {
            reserved: reserved & map_referral::RESERVED_MASK,
            nonce,
            records,
        }
    })
}

pub fn info() -> impl Strategy<Value = InfoMessage> {
    (
        any::<bool>(),
        any::<u32>(),
        any::<[u8; 8]>(),
        authentication(),
        any::<u32>(),
        any::<[u8; 2]>(),
        address(),
        prop_oneof![address(), lcaf().prop_map(|l| Address::Lcaf(Box::new(l)))],
    )
        .prop_map(
            |(reply, reserved, nonce, auth, ttl, b, eid, payload)| InfoMessage {
                reply,
                reserved: reserved & info::RESERVED_MASK,
                nonce,
                auth,
                ttl,
                reserved2: b[0],
                mask_len: b[1],
                eid,
                payload,
            },
        )
}

pub fn ip_udp() -> impl Strategy<Value = IpUdp> {
    let v4 = (
        any::<[u8; 2]>(),
        any::<[u16; 2]>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        (0usize..=10).prop_flat_map(|n| vec(any::<u8>(), n * 4)),
    )
        .prop_map(|(b, w, src, dst, options)| InnerIp::V4 {
            tos: b[0],
            identification: w[0],
            flags_fragment: w[1],
            ttl: b[1],
            checksum: Checksum::Valid,
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
            options,
        });
    let v6 = (
        any::<u8>(),
        0u32..0x10_0000,
        any::<u8>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(traffic_class, flow_label, hop_limit, src, dst)| InnerIp::V6 {
                traffic_class,
                flow_label,
                hop_limit,
                src: Ipv6Addr::from(src),
                dst: Ipv6Addr::from(dst),
            },
        );
    (
        prop_oneof![v4, v6],
        any::<u16>(),
        any::<u16>(),
        prop_oneof![Just(Checksum::Zero), Just(Checksum::Valid)],
    )
        .prop_map(|(ip, sport, dport, udp_checksum)| IpUdp {
            ip,
            sport,
            dport,
            udp_checksum,
        })
}

/// Every control message type but the ECM.
pub fn plain_message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![
        map_request().prop_map(ControlMessage::MapRequest),
        map_reply().prop_map(ControlMessage::MapReply),
        map_register().prop_map(ControlMessage::MapRegister),
        map_notify().prop_map(ControlMessage::MapNotify),
        map_notify().prop_map(ControlMessage::MapNotifyAck),
        map_referral().prop_map(ControlMessage::MapReferral),
        info().prop_map(ControlMessage::Info),
    ]
}

pub fn ecm() -> impl Strategy<Value = Ecm> {
    (any::<[bool; 4]>(), any::<u32>(), ip_udp(), plain_message()).prop_map(
        |(f, reserved, inner_header, inner)| Ecm {
            security: f[0],
            ddt: f[1],
            to_etr: f[2],
            to_ms: f[3],
            reserved: reserved & ecm::RESERVED_MASK,
            inner_header,
            inner: Box::new(inner),
        },
    )
}

pub fn message() -> impl Strategy<Value = ControlMessage> {
    prop_oneof![6 => plain_message(), 1 => ecm().prop_map(ControlMessage::Ecm)]
}

pub fn data_header() -> impl Strategy<Value = DataHeader> {
    (any::<u8>(), 0u8..4, 0u32..0x100_0000, any::<u32>()).prop_map(|(f, key_id, nonce, id_lsbs)| {
        DataHeader {
            flags: f & 0xfc,
            key_id,
            nonce,
            id_lsbs,
        }
    })
}
