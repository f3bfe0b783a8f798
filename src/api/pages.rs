//! The web UI: server-rendered HTML, no script and nothing fetched from elsewhere (it works
//! offline). The pages refresh themselves every few seconds, except the lig form.

use axum::Router;
use axum::extract::{Query as QueryParams, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;

use super::tables::{self, Table};
use super::{ApiError, ApiState, LigParams};

/// Seconds between automatic refreshes.
const REFRESH_SECS: u32 = 5;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f8fa}\
header{background:#0b3d5c;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:baseline;flex-wrap:wrap}\
header h1{font-size:1.2em;margin:0}header a{color:#cde7f7;text-decoration:none;margin-right:1em}header a.on{color:#fff;font-weight:bold}\
main{padding:1em}table{border-collapse:collapse;background:#fff;font-size:.9em}\
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;font-family:ui-monospace,monospace}\
th{background:#eaeef2;font-family:system-ui,sans-serif}form{margin:.5em 0 1em}\
input[type=text]{width:18em;font-family:ui-monospace,monospace}.err{color:#b00020}.muted{color:#57606a}";

const PAGES: [(&str, &str); 8] = [
    ("/", "Status"),
    ("/site-cache", "Site cache"),
    ("/map-cache", "Map-cache"),
    ("/database", "Database"),
    ("/peers", "Peers"),
    ("/keys", "Keys"),
    ("/stats", "Stats"),
    ("/lig", "lig"),
];

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(node: &str, path: &str, body: &str, refresh: bool) -> Html<String> {
    let nav: String = PAGES
        .iter()
        .map(|(p, t)| {
            let on = if *p == path { " class=\"on\"" } else { "" };
            format!("<a href=\"{p}\"{on}>{t}</a>")
        })
        .collect();
    let title = PAGES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or("", |(_, t)| t);
    let meta = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">")
    } else {
        String::new()
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{meta}\
<title>{title} - {node} - lisp-decent</title><style>{STYLE}</style></head><body>\
<header><h1>lisp-decent {node}</h1><nav>{nav}</nav></header><main><h2>{title}</h2>{body}</main></body></html>",
        node = esc(node),
    ))
}

fn html_table(t: &Table) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in &t.headers {
        s.push_str(&format!("<th>{}</th>", esc(h)));
    }
    s.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{}</td>", esc(c)));
        }
        s.push_str("</tr>");
    }
    if t.rows.is_empty() {
        s.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"muted\">none</td></tr>",
            t.headers.len()
        ));
    }
    s.push_str("</tbody></table>");
    s
}

fn pairs_table(v: &Value) -> String {
    html_table(&Table {
        headers: vec!["Field", "Value"],
        rows: tables::pairs(v)
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect(),
    })
}

fn error_page(node: &str, path: &str, e: &ApiError) -> Response {
    (
        e.status,
        page(
            node,
            path,
            &format!("<p class=\"err\">{}</p>", esc(&e.message)),
            true,
        ),
    )
        .into_response()
}

async fn list_page(st: &ApiState, path: &str, kind: &str, before: String) -> Response {
    let name = &st.name;
    match super::view_json(st, kind).await {
        Ok(v) => {
            let body = match tables::table(kind, &v) {
                Some(t) => html_table(&t),
                None => pairs_table(&v),
            };
            page(name, path, &format!("{before}{body}"), true).into_response()
        }
        Err(e) => error_page(name, path, &e),
    }
}

async fn status(State(st): State<ApiState>) -> Response {
    match super::view_json(&st, "status").await {
        Ok(v) => {
            let mut brief = v.clone();
            if let Some(o) = brief.as_object_mut() {
                o.remove("counters");
            }
            let body = format!(
                "{}<p class=\"muted\">Every counter is on the <a href=\"/stats\">Stats</a> page \
and at <a href=\"/metrics\">/metrics</a>; the JSON API is under /api/v1.</p>",
                pairs_table(&brief)
            );
            page(&st.name, "/", &body, true).into_response()
        }
        Err(e) => error_page(&st.name, "/", &e),
    }
}

#[derive(Debug, Deserialize)]
struct SiteParams {
    eid: Option<String>,
}

async fn site_cache(
    State(st): State<ApiState>,
    QueryParams(p): QueryParams<SiteParams>,
) -> Response {
    let asked = p.eid.as_deref().map(str::trim).unwrap_or("");
    let mut before = format!(
        "<form method=\"get\" action=\"/site-cache\"><label>Enter EID for Site-Cache lookup: \
<input type=\"text\" name=\"eid\" value=\"{}\" placeholder=\"[0]10.1.0.1\"></label> \
<button type=\"submit\">Lookup</button></form>",
        esc(asked)
    );
    if !asked.is_empty() {
        match super::site_lookup(&st, asked).await {
            Ok(v) => {
                let v = serde_json::to_value(v).unwrap_or_default();
                if let Some(t) = tables::table("site-cache", &v) {
                    before.push_str(&format!(
                        "<h3>Longest match for {}</h3>{}<h3>All registrations</h3>",
                        esc(asked),
                        html_table(&t)
                    ));
                }
            }
            Err(e) => before.push_str(&format!(
                "<p class=\"err\" id=\"lookup-error\">{}</p>",
                esc(&e.message)
            )),
        }
    }
    list_page(&st, "/site-cache", "site-cache", before).await
}

macro_rules! list_handler {
    ($name:ident, $path:literal, $kind:literal) => {
        async fn $name(State(st): State<ApiState>) -> Response {
            list_page(&st, $path, $kind, String::new()).await
        }
    };
}

list_handler!(map_cache, "/map-cache", "map-cache");
list_handler!(database, "/database", "database");
list_handler!(peers, "/peers", "peers");
list_handler!(keys, "/keys", "keys");
list_handler!(stats, "/stats", "stats");

async fn lig(
    State(st): State<ApiState>,
    headers: axum::http::HeaderMap,
    QueryParams(p): QueryParams<LigParams>,
) -> Response {
    let eid = p.eid.as_deref().map(str::trim).unwrap_or("");
    let to = p.to.as_deref().map(str::trim).unwrap_or("");
    let mut body = format!(
        "<form method=\"get\" action=\"/lig\"><label>EID: <input type=\"text\" name=\"eid\" \
value=\"{}\" placeholder=\"10.2.0.1, [1]fd00::1 or 'n2'\"></label> <label>Map-Resolver: \
<input type=\"text\" name=\"to\" value=\"{}\" placeholder=\"{} (this node)\"></label> \
<button type=\"submit\">lig</button></form>",
        esc(eid),
        esc(to),
        st.resolver.ip()
    );
    let mut code = StatusCode::OK;
    if !eid.is_empty() {
        match super::run_lig(&st, &p, &headers).await {
            Ok(r) => body.push_str(&format!(
                "<pre id=\"lig-result\">{}</pre>",
                esc(&crate::node::lig::text(&r))
            )),
            Err(e) => {
                code = e.status;
                body.push_str(&format!("<p class=\"err\">{}</p>", esc(&e.message)));
            }
        }
    }
    (code, page(&st.name, "/lig", &body, false)).into_response()
}

/// The routes of the pages.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(status))
        .route("/site-cache", get(site_cache))
        .route("/map-cache", get(map_cache))
        .route("/database", get(database))
        .route("/peers", get(peers))
        .route("/keys", get(keys))
        .route("/stats", get(stats))
        .route("/lig", get(lig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_renders() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let Html(h) = page("n<1>", "/peers", "<p>x</p>", true);
        assert!(
            h.contains("<title>Peers - n&lt;1&gt; - lisp-decent</title>"),
            "{h}"
        );
        assert!(h.contains("<a href=\"/peers\" class=\"on\">Peers</a>"));
        assert!(h.contains("http-equiv=\"refresh\""));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no outside resource"
        );
        let Html(h) = page("n1", "/lig", "", false);
        assert!(!h.contains("refresh"));
        let t = Table {
            headers: vec!["A"],
            rows: vec![],
        };
        assert!(html_table(&t).contains("colspan=\"1\" class=\"muted\">none"));
    }
}
