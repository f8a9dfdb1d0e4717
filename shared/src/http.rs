//! The HTTP endpoints every process serves (design §1): `/health` and `/metrics` (open), and
//! `/admin/node/info` (the `viewer` role, see [`crate::auth`]). Roles add their checks; the
//! gateway adds the admin API on top, each route group behind [`Auth::require`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use crate::auth::{Auth, Role};

/// One named health check: `Ok(detail)` or `Err(reason)`.
pub type Check = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

#[derive(Clone)]
pub struct NodeStatus {
    pub node_id: u64,
    pub roles: Vec<&'static str>,
    pub version: &'static str,
    pub checks: Arc<RwLock<Vec<(String, Check)>>>,
    pub started_ms: u64,
}

impl NodeStatus {
    pub fn new(node_id: u64, roles: Vec<&'static str>) -> Self {
        Self { node_id, roles, version: env!("CARGO_PKG_VERSION"), checks: Arc::default(), started_ms: now_ms() }
    }

    pub fn add_check(&self, name: impl Into<String>, check: Check) {
        self.checks.write().unwrap_or_else(|p| p.into_inner()).push((name.into(), check));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Serialize)]
struct CheckResult {
    name: String,
    ok: bool,
    detail: String,
}

async fn health(State(s): State<NodeStatus>) -> impl IntoResponse {
    let checks: Vec<CheckResult> = s
        .checks
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(name, c)| match c() {
            Ok(detail) => CheckResult { name: name.clone(), ok: true, detail },
            Err(detail) => CheckResult { name: name.clone(), ok: false, detail },
        })
        .collect();
    let healthy = checks.iter().all(|c| c.ok);
    let reasons: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "node_id": s.node_id,
        "roles": s.roles,
        "version": s.version,
        "checks": checks,
        "reasons": reasons,
    });
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn metrics() -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}

async fn node_info(State(s): State<NodeStatus>) -> impl IntoResponse {
    Json(json!({
        "node_id": s.node_id,
        "roles": s.roles,
        "version": s.version,
        "started_ms": s.started_ms,
        "now_ms": now_ms(),
    }))
}

/// The routes every process serves; roles merge more into it. `/admin/*` goes through `auth`.
pub fn router(status: NodeStatus, auth: &Auth) -> Router {
    let admin = auth.require(Role::Viewer, Router::new().route("/admin/node/info", get(node_info)));
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).merge(admin).with_state(status)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await })
}

pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} for HTTP: {e}; is another process using the port? Change listeners.http")
    })
}
