//! The agent's HTTP side: Patroni's health paths (200 or 503 as Patroni
//! answers them, so HAProxy and load balancers configured for Patroni work
//! unchanged) and `/metrics` in Prometheus text with Patroni's metric
//! names plus pgscale's own.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use doctor::health::{self, NodeHealth};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the last tick saw, for the health paths.
#[derive(Clone, Debug)]
pub struct Seen {
    pub health: NodeHealth,
    pub role: String,
    pub timeline: u32,
    pub lsn: u64,
    pub decision: serde_json::Value,
    pub mode: String,
    pub last_tick: Instant,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            health: NodeHealth::default(),
            role: "unknown".into(),
            timeline: 0,
            lsn: 0,
            decision: serde_json::Value::Null,
            mode: String::new(),
            last_tick: Instant::now(),
        }
    }
}

/// Metrics, registered once and updated every tick.
pub struct Metrics {
    registry: Registry,
    pub postgres_running: Gauge,
    pub primary: Gauge,
    pub replica: Gauge,
    pub sync_standby: Gauge,
    pub xlog_location: Gauge,
    pub xlog_received_location: Gauge,
    pub timeline: Gauge,
    pub cluster_unlocked: Gauge,
    pub is_paused: Gauge,
    pub dcs_last_seen: Gauge,
    pub lease_margin: Gauge<f64, AtomicU64>,
    pub fences: Counter,
    pub blocked: Family<Vec<(String, String)>, Gauge>,
    pub sync_ackers: Gauge,
}

impl Metrics {
    pub fn new(cluster: &str, node: &str) -> Metrics {
        let mut registry = Registry::with_labels(
            [
                (std::borrow::Cow::Borrowed("scope"), std::borrow::Cow::Owned(cluster.to_string())),
                (std::borrow::Cow::Borrowed("name"), std::borrow::Cow::Owned(node.to_string())),
            ]
            .into_iter(),
        );
        let m = Metrics {
            postgres_running: Gauge::default(),
            primary: Gauge::default(),
            replica: Gauge::default(),
            sync_standby: Gauge::default(),
            xlog_location: Gauge::default(),
            xlog_received_location: Gauge::default(),
            timeline: Gauge::default(),
            cluster_unlocked: Gauge::default(),
            is_paused: Gauge::default(),
            dcs_last_seen: Gauge::default(),
            lease_margin: Gauge::default(),
            fences: Counter::default(),
            blocked: Family::default(),
            sync_ackers: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("patroni_postgres_running", "PostgreSQL answers (1) or not (0)", m.postgres_running.clone());
        r.register("patroni_primary", "This node runs as the primary holding the leader key", m.primary.clone());
        r.register("patroni_replica", "This node runs as a standby", m.replica.clone());
        r.register("patroni_sync_standby", "This standby acknowledges commits", m.sync_standby.clone());
        r.register("patroni_xlog_location", "The primary's current WAL position", m.xlog_location.clone());
        r.register(
            "patroni_xlog_received_location",
            "A standby's received WAL position",
            m.xlog_received_location.clone(),
        );
        r.register("patroni_postgres_timeline", "PostgreSQL timeline", m.timeline.clone());
        r.register("patroni_cluster_unlocked", "No node holds the leader key", m.cluster_unlocked.clone());
        r.register("patroni_is_paused", "Automatic failover is paused or disabled", m.is_paused.clone());
        r.register("patroni_dcs_last_seen", "When etcd last answered (Unix seconds)", m.dcs_last_seen.clone());
        r.register(
            "pgscale_lease_margin_seconds",
            "Seconds left before the leader must fence itself (Fence A)",
            m.lease_margin.clone(),
        );
        r.register("pgscale_fence", "Times this agent fenced its PostgreSQL", m.fences.clone());
        r.register("pgscale_failover_blocked", "Automatic failover blocked, by reason", m.blocked.clone());
        r.register(
            "pgscale_sync_ackers",
            "Standbys that may acknowledge commits (the leader's view)",
            m.sync_ackers.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

#[derive(Clone)]
pub struct Shared {
    pub seen: Arc<Mutex<Seen>>,
    pub metrics: Arc<Metrics>,
}

/// Serve on `listener` until the process ends.
pub fn serve(listener: tokio::net::TcpListener, shared: Shared) -> tokio::task::JoinHandle<()> {
    let app = Router::new().route("/metrics", get(metrics)).fallback(check).with_state(shared);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("HTTP: {e}");
        }
    })
}

async fn metrics(State(s): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.text())
        .into_response()
}

async fn check(State(s): State<Shared>, uri: Uri) -> Response {
    let seen = s.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut h = seen.health.clone();
    // The loop itself is alive when it ticked within the last few seconds.
    h.loop_alive = seen.last_tick.elapsed().as_secs() < 5;
    let path = if uri.path() == "/patroni" { "/" } else { uri.path() };
    let Some(code) = health::status(path, uri.query().unwrap_or(""), &h) else {
        return (StatusCode::NOT_FOUND, "no such path\n").into_response();
    };
    let body = serde_json::json!({
        "state": if h.running { "running" } else { "stopped" },
        "role": seen.role,
        "timeline": seen.timeline,
        "xlog": if seen.role == "primary" { serde_json::json!({ "location": seen.lsn }) } else { serde_json::json!({ "received_location": seen.lsn }) },
        "pgscale": { "mode": seen.mode, "decision": seen.decision },
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
