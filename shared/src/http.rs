//! The HTTP server every process runs (design §1): [`NodeStatus`] (who this process is and its
//! health checks) and serving. The routes themselves are in [`crate::admin`].

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;

/// One named health check: `Ok(detail)` or `Err(reason)`.
pub type Check = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

#[derive(Clone)]
pub struct NodeStatus {
    pub node_id: u64,
    pub roles: Vec<&'static str>,
    pub version: &'static str,
    pub checks: Arc<RwLock<Vec<(String, Check)>>>,
    pub started_ms: u64,
    /// Where the node keeps its data (its free space is reported).
    pub data_dir: Option<std::path::PathBuf>,
    /// The config's validation warnings (values that work but are risky).
    pub config_warnings: Vec<String>,
    /// `host:port` other nodes reach this node's HTTP API at (`/admin/diagnose` starts here).
    pub http_addr: Option<String>,
    /// The scrub of this node's WAL, on nodes that have one.
    pub wal: Option<Arc<crate::wal::Scrubber>>,
}

impl NodeStatus {
    pub fn new(node_id: u64, roles: Vec<&'static str>) -> Self {
        Self {
            node_id,
            roles,
            version: env!("CARGO_PKG_VERSION"),
            checks: Arc::default(),
            started_ms: now_ms(),
            data_dir: None,
            config_warnings: Vec::new(),
            http_addr: None,
            wal: None,
        }
    }

    /// Reports `cfg`'s data directory and validation warnings in node info.
    pub fn with_config(mut self, cfg: &crate::config::ChronikConfig) -> Self {
        self.data_dir = Some(cfg.node.data_dir.clone());
        self.config_warnings = cfg.validate().unwrap_or_default();
        self.http_addr = Some(cfg.listeners.advertised_http_addr());
        self
    }

    /// Scrubs `data_dir/wal` every `wal.scrub_interval_secs` and fails the `wal` health check
    /// while the last pass found damage. Needs a tokio runtime.
    pub fn with_wal_scrub(mut self, cfg: &crate::config::ChronikConfig) -> Self {
        let every =
            (cfg.wal.scrub_interval_secs > 0).then(|| std::time::Duration::from_secs(cfg.wal.scrub_interval_secs));
        let scrub = Arc::new(crate::wal::Scrubber::spawn(cfg.node.data_dir.join("wal"), every));
        let s = Arc::downgrade(&scrub);
        self.add_check(
            "wal",
            Arc::new(move || {
                if let Some(why) = crate::wal::failures().first() {
                    return Err(format!(
                        "WAL fail-stopped, no writes are acknowledged: {why}; check the disk (dmesg), then restart the node"
                    ));
                }
                let Some(status) = s.upgrade().map(|s| s.status()) else { return Ok("stopped".into()) };
                match (status.problems.first(), status.last_run_ms) {
                    (Some(p), _) => Err(format!("WAL damage found: {p} (and {} more)", status.problems.len() - 1)),
                    (None, Some(_)) => {
                        Ok(format!("{} stream(s), {} record(s) verified", status.streams, status.records))
                    }
                    (None, None) => Ok("not scrubbed yet".into()),
                }
            }),
        );
        self.wal = Some(scrub);
        self
    }

    pub fn add_check(&self, name: impl Into<String>, check: Check) {
        self.checks.write().unwrap_or_else(|p| p.into_inner()).push((name.into(), check));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
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
