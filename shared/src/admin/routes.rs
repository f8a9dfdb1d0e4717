//! The route table: every HTTP route a process serves, with its required role and bodies, and
//! the handlers. [`router`] and [`super::openapi_document`] both read [`table`].

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use super::types::*;
use super::{AdminApi, ClusterControl, ClusterView, LocalGroups};
use crate::auth::{Auth, Role};
use crate::error::{ChronikError, ErrorCode};
use crate::http::now_ms;

pub(super) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// What a route answers with on success.
pub(super) enum Answer {
    Json(SchemaFn),
    Other(&'static str),
}

pub(super) struct Route {
    pub method: Method,
    /// axum's path syntax, which is also OpenAPI's (`/admin/topics/{name}`).
    pub path: &'static str,
    /// `None`: open (health and metrics); else the least role a token needs.
    pub role: Option<Role>,
    pub summary: &'static str,
    pub request: Option<SchemaFn>,
    pub answer: Answer,
    handler: MethodRouter<AdminApi>,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

impl Route {
    fn new(
        method: Method,
        path: &'static str,
        role: Option<Role>,
        summary: &'static str,
        handler: MethodRouter<AdminApi>,
    ) -> Route {
        Route { method, path, role, summary, request: None, answer: Answer::Other("text/plain"), handler }
    }

    fn takes<T: JsonSchema>(mut self) -> Route {
        self.request = Some(schema::<T>);
        self
    }

    fn answers<T: JsonSchema>(mut self) -> Route {
        self.answer = Answer::Json(schema::<T>);
        self
    }

    fn answers_other(mut self, content_type: &'static str) -> Route {
        self.answer = Answer::Other(content_type);
        self
    }
}

/// Every route, in the order the OpenAPI document lists them.
pub(super) fn table() -> Vec<Route> {
    use Role::{Admin, Operator, Viewer};
    let v = Some(Viewer);
    let o = Some(Operator);
    let a = Some(Admin);
    vec![
        Route::new(
            Method::GET,
            "/health",
            None,
            "This process's health and the checks behind it; 503 with the reasons when unhealthy",
            get(health),
        )
        .answers::<Health>(),
        Route::new(Method::GET, "/metrics", None, "Prometheus metrics (text exposition format)", get(metrics))
            .answers_other("text/plain; version=0.0.4"),
        Route::new(Method::GET, "/admin/openapi.json", v, "This document", get(openapi))
            .answers_other("application/json"),
        Route::new(
            Method::GET,
            "/admin/node/info",
            v,
            "This node: id, roles, version, clock, Raft groups",
            get(node_info),
        )
        .answers::<NodeInfo>(),
        Route::new(
            Method::GET,
            "/admin/cluster/members",
            v,
            "Control-plane membership, data nodes and gateways, as this node sees them",
            get(members),
        )
        .answers::<Members>(),
        Route::new(
            Method::GET,
            "/admin/cluster/leader",
            v,
            "The control-plane leader and term as this node sees them",
            get(leader),
        )
        .answers::<LeaderInfo>(),
        Route::new(
            Method::GET,
            "/admin/diagnose",
            v,
            "The Quick Diagnostic Checklist across every node this one knows (as `chronik-server doctor`)",
            get(diagnose),
        )
        .answers::<crate::doctor::Diagnosis>(),
        Route::new(
            Method::GET,
            "/admin/cluster/partitions",
            v,
            "Leader, replicas and ISR of __meta and of every data partition",
            get(partitions),
        )
        .answers::<Vec<PartitionRow>>(),
        Route::new(
            Method::POST,
            "/admin/cluster/transfer-leader",
            o,
            "Hand leadership of __meta (or of topic/partition) to target_node_id; answers once it leads",
            post(transfer_leader),
        )
        .takes::<TransferLeader>()
        .answers::<Transferred>(),
        Route::new(
            Method::POST,
            "/admin/cluster/add-learner",
            a,
            "Add a control node as a non-voting learner; it catches up in the background",
            post(add_learner),
        )
        .takes::<AddLearner>()
        .answers::<Members>(),
        Route::new(Method::POST, "/admin/cluster/promote", a, "Promote a caught-up learner to voter", post(promote))
            .takes::<NodeRef>()
            .answers::<Members>(),
        Route::new(
            Method::POST,
            "/admin/cluster/remove-member",
            a,
            "Remove a voter or learner from the control plane",
            post(remove_member),
        )
        .takes::<NodeRef>()
        .answers::<Members>(),
        Route::new(
            Method::POST,
            "/admin/snapshot",
            o,
            "Snapshot this node's Raft groups now (all, or the one the optional body names)",
            post(snapshot),
        )
        .takes::<GroupTarget>()
        .answers::<Snapshots>(),
        Route::new(
            Method::POST,
            "/admin/wal/verify",
            o,
            "Check every record's checksum in this node's WAL now (as the background scrub does)",
            post(wal_verify),
        )
        .answers::<WalScrubStatus>(),
        Route::new(
            Method::GET,
            "/admin/snapshot/info",
            v,
            "The latest snapshot of each of this node's Raft groups",
            get(snapshot_info),
        )
        .answers::<Snapshots>(),
        Route::new(
            Method::POST,
            "/admin/compact",
            o,
            "Drop log entries covered by each group's latest snapshot (all, or the one the optional body names)",
            post(compact),
        )
        .takes::<GroupTarget>()
        .answers::<Snapshots>(),
        Route::new(
            Method::POST,
            "/admin/profile/stop",
            o,
            "Stop the CPU profile started by CHRONIK_CPU_PROFILE=true",
            post(profile_stop),
        )
        .answers::<ProfileStopped>(),
        Route::new(Method::GET, "/admin/profile/flamegraph", o, "Flamegraph (SVG) of the CPU profile", get(flamegraph))
            .answers_other("image/svg+xml"),
        Route::new(Method::GET, "/admin/topics", v, "Every topic with its partitions", get(list_topics))
            .answers::<Vec<TopicView>>(),
        Route::new(Method::POST, "/admin/topics", o, "Create a topic", post(create_topic))
            .takes::<CreateTopic>()
            .answers::<TopicView>(),
        Route::new(Method::GET, "/admin/topics/{name}", v, "One topic with its partitions", get(describe_topic))
            .answers::<TopicView>(),
        Route::new(Method::DELETE, "/admin/topics/{name}", a, "Delete a topic and its data", delete(delete_topic))
            .answers::<TopicDeleted>(),
    ]
}

/// Every route of [`table`], each behind `auth` for its role.
pub fn router(api: AdminApi, auth: &Auth) -> Router {
    let mut r = Router::new();
    for route in table() {
        let handler = match route.role {
            Some(role) => auth.require_method(role, route.handler),
            None => route.handler,
        };
        r = r.route(route.path, handler);
    }
    r.with_state(api)
}

type Answered<T> = Result<Json<T>, ChronikError>;

fn missing(what: &str) -> ChronikError {
    ChronikError::new(
        ErrorCode::NotAvailableHere,
        format!("this process ({what}); send the request to a node that has it"),
    )
}

fn view(api: &AdminApi) -> Result<&dyn ClusterView, ChronikError> {
    api.view.as_deref().ok_or_else(|| missing("has no view of the cluster"))
}

fn control(api: &AdminApi) -> Result<&dyn ClusterControl, ChronikError> {
    api.control.as_deref().ok_or_else(|| missing("cannot reach the control plane"))
}

fn local(api: &AdminApi) -> Result<&dyn LocalGroups, ChronikError> {
    api.local.as_deref().ok_or_else(|| missing("hosts no Raft group: it is a gateway; use a control or data node"))
}

/// The JSON body, whatever Content-Type the client sent (`curl -d` sends a form type).
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ChronikError> {
    serde_json::from_slice(body).map_err(|e| {
        ChronikError::new(ErrorCode::InvalidRequest, format!("the request body is not the expected JSON: {e}"))
    })
}

/// As [`parse`], an empty body meaning the defaults.
fn parse_or_default<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ChronikError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(T::default()) } else { parse(body) }
}

async fn health(State(api): State<AdminApi>) -> impl IntoResponse {
    let s = &api.status;
    let checks: Vec<HealthCheck> = s
        .checks
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(name, c)| match c() {
            Ok(detail) => HealthCheck { name: name.clone(), ok: true, detail },
            Err(detail) => HealthCheck { name: name.clone(), ok: false, detail },
        })
        .collect();
    let reasons: Vec<String> = checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let healthy = reasons.is_empty();
    let body = Health {
        status: if healthy { "healthy" } else { "unhealthy" }.to_string(),
        node_id: s.node_id,
        roles: s.roles.iter().map(|r| r.to_string()).collect(),
        version: s.version.to_string(),
        checks,
        reasons,
    };
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}

async fn openapi() -> impl IntoResponse {
    Json(super::openapi_document())
}

async fn node_info(State(api): State<AdminApi>) -> Json<NodeInfo> {
    let s = &api.status;
    let now = now_ms();
    Json(NodeInfo {
        node_id: s.node_id,
        roles: s.roles.iter().map(|r| r.to_string()).collect(),
        version: s.version.to_string(),
        started_ms: s.started_ms,
        now_ms: now,
        uptime_ms: now.saturating_sub(s.started_ms),
        raft_groups: api.local.as_ref().map(|l| l.states()).unwrap_or_default(),
        disk: s.data_dir.as_deref().and_then(disk_info),
        config_warnings: s.config_warnings.clone(),
        wal: s.wal.as_ref().map(|w| w.status()),
    })
}

fn disk_info(dir: &std::path::Path) -> Option<DiskInfo> {
    let st = rustix::fs::statvfs(dir).ok()?;
    // As `df` counts: the space this node can use is what is used plus what is available to
    // it (blocks reserved for root, or held back by the file system, count as neither).
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    Some(DiskInfo {
        path: dir.display().to_string(),
        total_bytes: used.saturating_add(st.f_bavail).saturating_mul(st.f_frsize),
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

async fn members(State(api): State<AdminApi>) -> Answered<Members> {
    Ok(Json(view(&api)?.members().await?))
}

async fn leader(State(api): State<AdminApi>) -> Answered<LeaderInfo> {
    Ok(Json(view(&api)?.leader().await?))
}

async fn partitions(State(api): State<AdminApi>) -> Answered<Vec<PartitionRow>> {
    Ok(Json(view(&api)?.partitions().await?))
}

/// Asks every node with the caller's own token (all nodes share the key).
async fn diagnose(State(api): State<AdminApi>, headers: axum::http::HeaderMap) -> Answered<crate::doctor::Diagnosis> {
    let me = api.status.http_addr.clone().ok_or_else(|| missing("does not know its own HTTP address"))?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').map(|(_, t)| t.trim().to_string()))
        .unwrap_or_default();
    Ok(Json(crate::doctor::diagnose(&me, &token, std::time::Duration::from_secs(3)).await))
}

async fn transfer_leader(State(api): State<AdminApi>, body: Bytes) -> Answered<Transferred> {
    let req: TransferLeader = parse(&body)?;
    Ok(Json(control(&api)?.transfer_leader(req).await?))
}

async fn add_learner(State(api): State<AdminApi>, body: Bytes) -> Answered<Members> {
    let req: AddLearner = parse(&body)?;
    Ok(Json(control(&api)?.add_learner(req).await?))
}

async fn promote(State(api): State<AdminApi>, body: Bytes) -> Answered<Members> {
    let req: NodeRef = parse(&body)?;
    Ok(Json(control(&api)?.promote(req.node_id).await?))
}

async fn remove_member(State(api): State<AdminApi>, body: Bytes) -> Answered<Members> {
    let req: NodeRef = parse(&body)?;
    Ok(Json(control(&api)?.remove_member(req.node_id).await?))
}

async fn snapshot(State(api): State<AdminApi>, body: Bytes) -> Answered<Snapshots> {
    let target: GroupTarget = parse_or_default(&body)?;
    let groups = local(&api)?.snapshot(target).await?;
    Ok(Json(Snapshots { node_id: api.status.node_id, groups }))
}

async fn wal_verify(State(api): State<AdminApi>) -> Answered<WalScrubStatus> {
    let scrub = api.status.wal.clone().ok_or_else(|| missing("keeps no WAL: it is a gateway"))?;
    Ok(Json(scrub.run_now().await))
}

async fn snapshot_info(State(api): State<AdminApi>) -> Answered<Snapshots> {
    let groups = local(&api)?.snapshot_info(&GroupTarget::default())?;
    Ok(Json(Snapshots { node_id: api.status.node_id, groups }))
}

async fn compact(State(api): State<AdminApi>, body: Bytes) -> Answered<Snapshots> {
    let target: GroupTarget = parse_or_default(&body)?;
    let groups = local(&api)?.compact(target).await?;
    Ok(Json(Snapshots { node_id: api.status.node_id, groups }))
}

fn profile_error(e: crate::profile::ProfileError) -> ChronikError {
    ChronikError::new(ErrorCode::NotAvailableHere, e.to_string())
}

async fn profile_stop() -> Answered<ProfileStopped> {
    let s = crate::profile::stop().map_err(profile_error)?;
    Ok(Json(ProfileStopped {
        running: s.running,
        samples: s.samples,
        duration_ms: s.duration_ms,
        frequency_hz: s.frequency_hz,
    }))
}

async fn flamegraph() -> Result<Response, ChronikError> {
    let svg = tokio::task::spawn_blocking(crate::profile::flamegraph_svg)
        .await
        .map_err(|e| ChronikError::new(ErrorCode::Internal, format!("rendering the flamegraph failed: {e}")))?
        .map_err(profile_error)?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn list_topics(State(api): State<AdminApi>) -> Answered<Vec<TopicView>> {
    Ok(Json(view(&api)?.topics().await?))
}

async fn describe_topic(State(api): State<AdminApi>, Path(name): Path<String>) -> Answered<TopicView> {
    let topics = view(&api)?.topics().await?;
    topics
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| ChronikError::new(ErrorCode::UnknownTopicOrPartition, format!("topic {name:?} does not exist")))
}

async fn create_topic(State(api): State<AdminApi>, body: Bytes) -> Answered<TopicView> {
    let req: CreateTopic = parse(&body)?;
    Ok(Json(control(&api)?.create_topic(req).await?))
}

async fn delete_topic(State(api): State<AdminApi>, Path(name): Path<String>) -> Answered<TopicDeleted> {
    Ok(Json(control(&api)?.delete_topic(name).await?))
}
