//! Code every role shares.
//!
//! - `config/`: the layered configuration (defaults → TOML → `CHRONIK_*` env → flags) and its validation.
//! - `wal/`: the segmented, CRC32C-framed write-ahead log with group commit (design §5).
//! - `raft_store/`: an openraft log store on top of the WAL, used by the control and data planes.
//! - `admin/`: the admin REST API: the route table, its OpenAPI document, and the traits the
//!   roles implement to answer it.
//! - `auth/`: JWT authentication of the admin REST API: roles, key loading, the route-group
//!   middleware, token minting.
//! - `doctor/`: `chronik-server doctor` / `/admin/diagnose`, the guide's checklist over every node.
//! - `error.rs`: the one table of error codes, with its conversions to gRPC status and HTTP.
//! - `telemetry.rs`: tracing setup; `metrics.rs`: the Prometheus registry and families.
//! - `profile.rs`: CPU profiling (`CHRONIK_CPU_PROFILE`) and its flamegraph.

pub mod admin;
pub mod auth;
pub mod config;
pub mod doctor;
pub mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod profile;
pub mod telemetry;
pub mod wal;
