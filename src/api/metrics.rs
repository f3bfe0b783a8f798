//! `/metrics` in the Prometheus / OpenMetrics text format (prometheus-client). Each scrape
//! takes one snapshot of the node and encodes it: the counters live in the node's task,
//! where the data path counts without atomics, and are copied here only when asked for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::dataplane::stats::Directions;

use super::ApiState;
use crate::node::handle::{Answer, Query};
use crate::node::view::MetricsView;

/// Requests the API answered, by outcome (counted by [`count`] around every route).
#[derive(Debug, Default)]
pub struct HttpCounters {
    ok: AtomicU64,
    errors: AtomicU64,
    /// Writes without the right token (401, 403).
    refused: AtomicU64,
    /// Connections closed at once: the API held its most.
    connections_refused: AtomicU64,
}

impl HttpCounters {
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts each request by the status of its answer.
pub async fn count(
    State(c): State<Arc<HttpCounters>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let slot = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        &c.refused
    } else if status.is_client_error() || status.is_server_error() {
        &c.errors
    } else {
        &c.ok
    };
    slot.fetch_add(1, Ordering::Relaxed);
    resp
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// A family of counters, set from snapshot values.
struct Counters(Family<Labels, Counter>);

impl Counters {
    fn new(r: &mut Registry, name: &str, help: &str) -> Self {
        let f = Family::<Labels, Counter>::default();
        r.register(name, help, f.clone());
        Counters(f)
    }
    fn set(&self, l: &[(&str, &str)], v: u64) {
        self.0.get_or_create(&labels(l)).inc_by(v);
    }
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

/// Traffic in each direction by one label (an Instance-ID or an RLOC).
fn traffic<'a, K: ToString + 'a>(
    packets: &Counters,
    bytes: &Counters,
    label: &str,
    by: impl Iterator<Item = (&'a K, &'a Directions)>,
) {
    for (key, dirs) in by {
        let key = key.to_string();
        for (dir, t) in [
            ("encapsulated", dirs.encapsulated),
            ("decapsulated", dirs.decapsulated),
        ] {
            let l = [(label, key.as_str()), ("direction", dir)];
            packets.set(&l, t.packets);
            bytes.set(&l, t.bytes);
        }
    }
}

/// Encodes one snapshot of the node.
pub fn render(m: &MetricsView, http: &HttpCounters) -> String {
    let mut r = Registry::with_prefix("lisp_decent");
    let s = &m.status;
    let control = &s.counters.control;
    let data = &s.counters.data;

    let pk = Counters::new(
        &mut r,
        "instance_packets",
        "Data packets encapsulated / decapsulated per Instance-ID",
    );
    let by = Counters::new(
        &mut r,
        "instance_bytes",
        "Inner bytes encapsulated / decapsulated per Instance-ID",
    );
    traffic(&pk, &by, "instance_id", data.per_instance.iter());
    let pk = Counters::new(
        &mut r,
        "rloc_packets",
        "Data packets encapsulated to / decapsulated from each RLOC",
    );
    let by = Counters::new(
        &mut r,
        "rloc_bytes",
        "Inner bytes encapsulated to / decapsulated from each RLOC",
    );
    traffic(&pk, &by, "rloc", data.per_rloc.iter());
    let drops = Counters::new(&mut r, "data_drops", "Data packets dropped, by reason");
    for (reason, n) in &data.drops {
        let name = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        drops.set(&[("reason", name.as_str())], *n);
    }
    let crypto = Counters::new(
        &mut r,
        "crypto_packets",
        "Data packets sealed / opened with lisp-crypto (RFC 8061)",
    );
    crypto.set(&[("operation", "encrypt")], data.encrypted);
    crypto.set(&[("operation", "decrypt")], data.decrypted);
    let relayed = Counters::new(
        &mut r,
        "rtr_relayed_packets",
        "As RTR: data packets from or to nodes behind NATs encapsulated again",
    );
    relayed.set(&[], data.relayed);

    let regs = Counters::new(
        &mut r,
        "map_registers",
        "Map-Registers sent, received and accepted",
    );
    for (event, n) in [
        ("sent", control.map_registers_sent),
        ("received", control.map_registers_received),
        ("accepted", control.map_registers_accepted),
    ] {
        regs.set(&[("event", event)], n);
    }
    let rejected = Counters::new(
        &mut r,
        "map_registers_rejected",
        "Map-Registers refused, by reason",
    );
    for (reason, n) in [
        ("unauthenticated", control.register_rejected_unauthenticated),
        ("authentication", control.register_rejected_auth),
        ("not_allowed", control.register_rejected_not_allowed),
        ("bad_eid", control.register_rejected_bad_eid),
    ] {
        rejected.set(&[("reason", reason)], n);
    }
    let reqs = Counters::new(&mut r, "map_requests", "Map-Requests sent and received");
    reqs.set(&[("direction", "sent")], control.map_requests_sent);
    reqs.set(&[("direction", "received")], control.map_requests_received);
    let reps = Counters::new(&mut r, "map_replies", "Map-Replies sent and received");
    reps.set(&[("direction", "sent")], control.map_replies_sent);
    reps.set(&[("direction", "received")], control.map_replies_received);
    let events = Counters::new(
        &mut r,
        "control_events",
        "Every counter of the control engine, by name (as in /api/v1/stats)",
    );
    // Every field by its name: the serialized form of the typed counters.
    if let Ok(Value::Object(m)) = serde_json::to_value(control) {
        for (name, n) in m {
            events.set(&[("event", name.as_str())], u(&n));
        }
    }

    let rtt = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    r.register(
        "probe_rtt_seconds",
        "Round-trip time of the last RLOC-probe, per RLOC",
        rtt.clone(),
    );
    let rekeys = Counters::new(
        &mut r,
        "rekeys",
        "lisp-crypto keys agreed again with an RLOC",
    );
    for p in &m.probes {
        if let Some(ms) = p.rtt_ms {
            rtt.get_or_create(&labels(&[("rloc", &p.rloc)]))
                .set(ms / 1000.0);
        }
        rekeys.set(&[("rloc", &p.rloc)], p.rekeys);
    }

    gauge(
        &mut r,
        "site_cache_entries",
        "EIDs registered in this Map-Server",
        s.site_cache_entries as i64,
    );
    gauge(
        &mut r,
        "map_cache_entries",
        "Mappings in the ITR's map-cache",
        s.map_cache_entries as i64,
    );
    gauge(
        &mut r,
        "peers",
        "Members of the peer group, this node left out",
        s.members as i64,
    );
    gauge(
        &mut r,
        "uptime_seconds",
        "Seconds since the node started",
        s.uptime_secs as i64,
    );
    let api = Counters::new(&mut r, "api_requests", "HTTP API requests, by outcome");
    for (outcome, n) in [
        ("ok", &http.ok),
        ("error", &http.errors),
        ("refused", &http.refused),
    ] {
        api.set(&[("outcome", outcome)], n.load(Ordering::Relaxed));
    }
    let conns = Counters::new(
        &mut r,
        "api_connections_refused",
        "HTTP connections closed at once: the API held its most",
    );
    conns.set(&[], http.connections_refused.load(Ordering::Relaxed));

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

pub async fn handler(State(st): State<ApiState>) -> Response {
    match st.ask(Query::Metrics).await {
        Ok(Answer::Metrics(m)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            render(&m, &st.counters),
        )
            .into_response(),
        Ok(_) => (StatusCode::INTERNAL_SERVER_ERROR, "unexpected answer").into_response(),
        Err(e) => e.into_response(),
    }
}
