//! The node's views as tables: one place that decides the columns, used by the web pages
//! and by `decent show` (which gets the same JSON over HTTP).

use serde_json::Value;

/// A table: column titles, then rows of cells. An entry with several RLOCs takes one row
/// per RLOC, the entry's own cells only on its first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// The views that are lists, by the name of their API path.
pub const LISTS: [&str; 5] = ["database", "site-cache", "map-cache", "peers", "keys"];

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Seconds as `1d2h`, `3h4m`, `5m6s` or `7s` (as lispers.net shows uptimes).
pub fn duration(v: &Value) -> String {
    let Some(s) = v.as_u64() else {
        return "-".into();
    };
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

fn rloc_cells(r: &Value, extra: bool) -> Vec<String> {
    let mut c = vec![
        cell(&r["address"]),
        cell(&r["state"]),
        format!("{}/{}", cell(&r["priority"]), cell(&r["weight"])),
    ];
    if extra {
        c.push(
            r["rtt_ms"]
                .as_f64()
                .map_or_else(|| "-".into(), |t| format!("{t:.2} ms")),
        );
        c.push(cell(&r["key"]));
        c.push(format!("{}/{}", cell(&r["packets"]), cell(&r["bytes"])));
    }
    c
}

/// Rows for a list of entries, each with an `rlocs` list.
fn with_rlocs(
    items: &[Value],
    entry: impl Fn(&Value) -> Vec<String>,
    extra: bool,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for it in items {
        let first = entry(it);
        let width = first.len();
        let rlocs = it["rlocs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if rlocs.is_empty() {
            let mut row = first;
            row.extend(
                rloc_cells(&Value::Null, extra)
                    .into_iter()
                    .map(|_| "-".into()),
            );
            rows.push(row);
            continue;
        }
        for (i, r) in rlocs.iter().enumerate() {
            let mut row = if i == 0 {
                first.clone()
            } else {
                vec![String::new(); width]
            };
            row.extend(rloc_cells(r, extra));
            rows.push(row);
        }
    }
    rows
}

/// How a column shows its field.
#[derive(Debug, Clone, Copy)]
enum Show {
    Text,
    /// Seconds, as [`duration`].
    Secs,
    /// Seconds ago, or "never".
    Ago,
}

/// A column: its title, the JSON field it shows, and how.
type Column = (&'static str, &'static str, Show);

const DATABASE: &[Column] = &[("EID-prefix", "eid", Show::Text)];
const SITE_CACHE: &[Column] = &[
    ("EID-prefix", "eid", Show::Text),
    ("Registered", "registered", Show::Text),
    ("Registerer", "last_registerer", Show::Text),
    ("xTR-ID", "xtr_id", Show::Text),
    ("First", "first_registered_ago", Show::Secs),
    ("Last", "last_registered_ago", Show::Secs),
    ("TTL (min)", "ttl", Show::Text),
    ("Flags", "flags", Show::Text),
];
const MAP_CACHE: &[Column] = &[
    ("EID-prefix", "eid", Show::Text),
    ("Uptime", "uptime_secs", Show::Secs),
    ("Expires", "expires_in", Show::Secs),
    ("TTL (min)", "ttl", Show::Text),
    ("Source", "source", Show::Text),
    ("Action", "action", Show::Text),
];
const PEERS: &[Column] = &[
    ("RLOC", "rloc", Show::Text),
    ("Name", "name", Show::Text),
    ("xTR-ID", "xtr_id", Show::Text),
    ("Last heard", "last_heard_ago", Show::Ago),
    ("Path", "path", Show::Text),
    ("Via RTR", "via_rtr", Show::Text),
];
const KEYS: &[Column] = &[
    ("RLOC", "rloc", Show::Text),
    ("Direction", "direction", Show::Text),
    ("Cipher suite", "cipher_suite", Show::Text),
    ("Key-id", "key_id", Show::Text),
    ("Age", "age_secs", Show::Secs),
    ("Rekeys", "rekeys", Show::Text),
    ("Packets", "packets", Show::Text),
];

fn cells(cols: &[Column], e: &Value) -> Vec<String> {
    cols.iter()
        .map(|(_, field, show)| {
            let v = &e[*field];
            match show {
                Show::Text => cell(v),
                Show::Secs => duration(v),
                Show::Ago if v.is_u64() => format!("{} ago", duration(v)),
                Show::Ago => "never".into(),
            }
        })
        .collect()
}

/// The table of a list view (`kind` is one of [`LISTS`]); `None` for another kind or JSON
/// that is not a list.
pub fn table(kind: &str, v: &Value) -> Option<Table> {
    let items = v.as_array()?;
    // The columns, and for views with RLOCs whether the map-cache's extra RLOC columns go too.
    let (cols, rlocs): (&[Column], Option<bool>) = match kind {
        "database" => (DATABASE, Some(false)),
        "site-cache" => (SITE_CACHE, Some(false)),
        "map-cache" => (MAP_CACHE, Some(true)),
        "peers" => (PEERS, None),
        "keys" => (KEYS, None),
        _ => return None,
    };
    let mut headers: Vec<&'static str> = cols.iter().map(|c| c.0).collect();
    let rows = match rlocs {
        Some(extra) => {
            headers.extend(["RLOC", "State", "Pri/Wgt"]);
            if extra {
                headers.extend(["RTT", "Key", "Packets/Bytes"]);
            }
            with_rlocs(items, |e| cells(cols, e), extra)
        }
        None => items.iter().map(|e| cells(cols, e)).collect(),
    };
    Some(Table { headers, rows })
}

/// Flattens an object into `dotted.key = value` pairs (status, stats), leaves only.
pub fn pairs(v: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
                out.push((
                    prefix.to_string(),
                    a.iter().map(cell).collect::<Vec<_>>().join(", "),
                ));
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), x, out);
                }
            }
            other => out.push((prefix.to_string(), cell(other))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}

/// A table as aligned text columns (for a terminal).
pub fn aligned(t: &Table) -> String {
    let mut widths: Vec<usize> = t.headers.iter().map(|h| h.len()).collect();
    for r in &t.rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut s = String::new();
        for (c, w) in cells.iter().zip(&widths) {
            s.push_str(&format!("{c:<w$}  "));
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(t.headers.to_vec(), &mut out);
    for r in &t.rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_row_per_rloc_and_aligned_columns() {
        let v = json!([
            {"eid": "[0]10.1.0.0/16", "rlocs": [
                {"address": "192.0.2.1", "state": "up", "priority": 1, "weight": 100},
                {"address": "192.0.2.11", "state": "down", "priority": 2, "weight": 0}]},
            {"eid": "[0]10.2.0.0/16", "rlocs": []}
        ]);
        let t = table("database", &v).unwrap();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0], ["[0]10.1.0.0/16", "192.0.2.1", "up", "1/100"]);
        assert_eq!(t.rows[1], ["", "192.0.2.11", "down", "2/0"]);
        assert_eq!(t.rows[2], ["[0]10.2.0.0/16", "-", "-", "-"]);
        let text = aligned(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "EID-prefix      RLOC        State  Pri/Wgt");
        assert_eq!(lines[2], "                192.0.2.11  down   2/0");
        assert!(table("nonsense", &v).is_none());
        assert!(table("database", &json!({})).is_none());
    }

    #[test]
    fn peers_say_when_last_heard() {
        let v = json!([
            {"rloc": "192.0.2.2", "name": "n2", "xtr_id": "ab", "last_heard_ago": 65,
             "path": "direct", "via_rtr": null},
            {"rloc": "192.0.2.3", "name": null, "xtr_id": null, "last_heard_ago": null,
             "path": "rtr", "via_rtr": "192.0.2.1"}
        ]);
        let t = table("peers", &v).unwrap();
        assert_eq!(
            t.headers,
            ["RLOC", "Name", "xTR-ID", "Last heard", "Path", "Via RTR"]
        );
        assert_eq!(
            t.rows[0],
            ["192.0.2.2", "n2", "ab", "1m05s ago", "direct", "-"]
        );
        assert_eq!(
            t.rows[1],
            ["192.0.2.3", "-", "-", "never", "rtr", "192.0.2.1"]
        );
        let m = table("map-cache", &json!([])).unwrap();
        assert_eq!(m.headers.len(), 12);
        assert_eq!(m.headers[9..], ["RTT", "Key", "Packets/Bytes"]);
    }

    #[test]
    fn durations_and_pairs() {
        assert_eq!(duration(&json!(7)), "7s");
        assert_eq!(duration(&json!(65)), "1m05s");
        assert_eq!(duration(&json!(3725)), "1h02m");
        assert_eq!(duration(&json!(90000)), "1d01h");
        assert_eq!(duration(&Value::Null), "-");
        let p = pairs(&json!({"a": {"b": 1, "c": ["x", "y"]}, "d": null}));
        assert_eq!(
            p,
            [
                ("a.b".to_string(), "1".to_string()),
                ("a.c".into(), "x, y".into()),
                ("d".into(), "-".into())
            ]
        );
    }
}
