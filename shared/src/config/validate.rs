//! [`ChronikConfig::validate`]: the rules a deserialised config must also satisfy.
//!
//! Errors stop the process at start; warnings are returned for the caller to log. Every message
//! starts with the dotted key(s) involved and ends with what to change.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{ChronikConfig, ConfigError, LogConfig};

/// The smallest `kafka.max_request_size` accepted (1 MiB).
pub const MIN_MAX_REQUEST_SIZE: u64 = 1024 * 1024;
/// The smallest `wal.segment_bytes` accepted.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

type Check = Result<(), ConfigError>;

fn fail(key: &str, message: String) -> Check {
    Err(ConfigError::invalid(key, message))
}

fn positive(key: &str, value: u64, example: &str) -> Check {
    if value == 0 {
        return fail(key, format!("{key} must be greater than 0; set it to e.g. {example}"));
    }
    Ok(())
}

impl ChronikConfig {
    /// Checks the cross-field rules (design §7 and the operations guide). Returns the warnings
    /// (settings that work but are probably not what the operator wants), or the first error.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        self.validate_node()?;
        self.validate_listeners()?;
        self.validate_cluster(&mut warnings)?;
        self.validate_wal(&mut warnings)?;
        self.validate_kafka()?;
        self.validate_auth()?;
        if !LogConfig::FORMATS.contains(&self.log.format.as_str()) {
            return Err(ConfigError::invalid(
                "log.format",
                format!("log.format {:?} is not a log format; use \"text\" or \"json\"", self.log.format),
            ));
        }
        Ok(warnings)
    }

    fn validate_node(&self) -> Check {
        if self.node.id == 0 {
            return fail(
                "node.id",
                "node.id must be greater than 0; give every node of the cluster (all roles) its own \
                 id, e.g. `id = 1` under [node] or CHRONIK_NODE_ID=1"
                    .into(),
            );
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return fail(
                "node.data_dir",
                "node.data_dir is empty; set it to a directory, e.g. \"/var/lib/chronik/data\"".into(),
            );
        }
        if self.node.rack.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return fail("node.rack", "node.rack is empty; remove the key or name the rack, e.g. \"rack-a\"".into());
        }
        Ok(())
    }

    fn validate_listeners(&self) -> Check {
        let l = &self.listeners;
        for (key, value, example) in [
            ("listeners.advertised_kafka", &l.advertised_kafka, "node7:9092"),
            ("listeners.advertised_grpc", &l.advertised_grpc, "node1:9093"),
            ("listeners.advertised_http", &l.advertised_http, "node1:8080"),
        ] {
            if let Some(addr) = value
                && !is_host_port(addr)
            {
                return fail(key, format!("{key}: {addr:?} is not of the form host:port (e.g. {example:?})"));
            }
        }
        let binds = [("listeners.kafka", l.kafka), ("listeners.http", l.http), ("listeners.grpc", l.grpc)];
        for (i, (key_a, a)) in binds.iter().enumerate() {
            for (key_b, b) in &binds[i + 1..] {
                if clash(*a, *b) {
                    return fail(
                        key_b,
                        format!(
                            "{key_b} ({b}) uses the same port as {key_a} ({a}); give each listener \
                             its own port"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn validate_cluster(&self, warnings: &mut Vec<String>) -> Check {
        let c = &self.cluster;
        let mut by_id = HashMap::new();
        let mut by_addr = HashMap::new();
        for seed in &c.seed_nodes {
            if seed.id == 0 {
                return fail(
                    "cluster.seed_nodes",
                    format!(
                        "cluster.seed_nodes: \"{seed}\" has node id 0; node ids start at 1 \
                         (e.g. \"1@{}\")",
                        seed.addr()
                    ),
                );
            }
            if let Some(prev) = by_id.insert(seed.id, seed) {
                if prev == seed {
                    warnings.push(format!("cluster.seed_nodes lists \"{seed}\" twice"));
                    continue;
                }
                return fail(
                    "cluster.seed_nodes",
                    format!(
                        "cluster.seed_nodes: \"{prev}\" and \"{seed}\" give node {} two addresses; \
                         keep one entry per node id",
                        seed.id
                    ),
                );
            }
            if let Some(prev) = by_addr.insert(seed.addr(), seed) {
                return fail(
                    "cluster.seed_nodes",
                    format!(
                        "cluster.seed_nodes: \"{prev}\" and \"{seed}\" give one address two node ids; \
                         node ids are unique, fix one of the entries"
                    ),
                );
            }
        }

        let r = &c.raft;
        positive("cluster.raft.election_timeout_ms", r.election_timeout_ms, "1000")?;
        positive("cluster.raft.heartbeat_interval_ms", r.heartbeat_interval_ms, "100")?;
        if r.heartbeat_interval_ms >= r.election_timeout_ms {
            return fail(
                "cluster.raft.heartbeat_interval_ms",
                format!(
                    "cluster.raft.heartbeat_interval_ms ({}) must be less than \
                     cluster.raft.election_timeout_ms ({}); set it to at most a tenth of the \
                     election timeout (e.g. {})",
                    r.heartbeat_interval_ms,
                    r.election_timeout_ms,
                    (r.election_timeout_ms / 10).max(1)
                ),
            );
        }
        if r.heartbeat_interval_ms.saturating_mul(10) > r.election_timeout_ms {
            warnings.push(format!(
                "cluster.raft.heartbeat_interval_ms ({}) is above a tenth of \
                 cluster.raft.election_timeout_ms ({}): a few delayed heartbeats can start \
                 needless elections; lower it to {} or less",
                r.heartbeat_interval_ms,
                r.election_timeout_ms,
                r.election_timeout_ms / 10
            ));
        }
        positive("cluster.raft.max_payload_entries", r.max_payload_entries, "1000")?;
        positive("cluster.raft.max_in_flight", r.max_in_flight, "1000")?;
        positive("cluster.raft.snapshot_log_size_threshold", r.snapshot_log_size_threshold, "100000")?;
        positive("cluster.raft.max_snapshot_chunk_size", r.max_snapshot_chunk_size, "1048576")?;
        positive("cluster.raft.replica_lag_time_max_ms", r.replica_lag_time_max_ms, "10000")?;

        let n = &c.network;
        positive("cluster.network.request_timeout_ms", n.request_timeout_ms, "10000")?;
        positive("cluster.network.install_snapshot_timeout_secs", n.install_snapshot_timeout_secs, "600")?;
        if n.max_message_size <= r.max_snapshot_chunk_size {
            return fail(
                "cluster.network.max_message_size",
                format!(
                    "cluster.network.max_message_size ({}) must be greater than \
                     cluster.raft.max_snapshot_chunk_size ({}); raise max_message_size (e.g. to {}) \
                     or lower max_snapshot_chunk_size",
                    n.max_message_size,
                    r.max_snapshot_chunk_size,
                    r.max_snapshot_chunk_size.saturating_mul(2).max(4_194_304)
                ),
            );
        }
        if n.max_message_size > u64::from(u32::MAX) {
            return fail(
                "cluster.network.max_message_size",
                format!(
                    "cluster.network.max_message_size ({}) is above the 4 GiB a gRPC message can \
                     carry; lower it (e.g. to 8388608)",
                    n.max_message_size
                ),
            );
        }
        if n.request_timeout_ms <= r.heartbeat_interval_ms {
            warnings.push(format!(
                "cluster.network.request_timeout_ms ({}) is not above \
                 cluster.raft.heartbeat_interval_ms ({}): requests will time out before the next \
                 heartbeat; raise it (default 10000)",
                n.request_timeout_ms, r.heartbeat_interval_ms
            ));
        }

        let h = &c.heartbeat;
        positive("cluster.heartbeat.interval_ms", h.interval_ms, "1000")?;
        if h.node_timeout_ms <= h.interval_ms {
            return fail(
                "cluster.heartbeat.node_timeout_ms",
                format!(
                    "cluster.heartbeat.node_timeout_ms ({}) must be greater than \
                     cluster.heartbeat.interval_ms ({}), or every node looks down between two \
                     reports; set it to several intervals (e.g. {})",
                    h.node_timeout_ms,
                    h.interval_ms,
                    h.interval_ms.saturating_mul(10)
                ),
            );
        }
        Ok(())
    }

    fn validate_wal(&self, warnings: &mut Vec<String>) -> Check {
        let w = &self.wal;
        if w.segment_bytes < MIN_SEGMENT_BYTES {
            return fail(
                "wal.segment_bytes",
                format!(
                    "wal.segment_bytes ({}) is below the minimum of {MIN_SEGMENT_BYTES}; \
                     set it to e.g. 16777216 (16 MiB)",
                    w.segment_bytes
                ),
            );
        }
        if w.linger_us > 100_000 {
            warnings.push(format!(
                "wal.linger_us ({}) adds more than 100 ms to every write under the high profile; \
                 a millisecond or two (default 1000) is usually enough",
                w.linger_us
            ));
        }
        Ok(())
    }

    fn validate_kafka(&self) -> Check {
        let k = &self.kafka;
        if k.default_partitions == 0 {
            return fail(
                "kafka.default_partitions",
                "kafka.default_partitions must be at least 1; set it to e.g. 1".into(),
            );
        }
        if k.default_replication_factor == 0 {
            return fail(
                "kafka.default_replication_factor",
                "kafka.default_replication_factor must be at least 1; set it to e.g. 3".into(),
            );
        }
        for (key, value, example) in [
            ("kafka.max_request_size", k.max_request_size, "104857600 (100 MiB)"),
            ("kafka.queued_max_request_bytes", k.queued_max_request_bytes, "16777216 (16 MiB)"),
        ] {
            if value < MIN_MAX_REQUEST_SIZE {
                return fail(
                    key,
                    format!(
                        "{key} ({value}) must be at least {MIN_MAX_REQUEST_SIZE} (1 MiB); set it to e.g. {example}"
                    ),
                );
            }
        }
        for (key, value, example) in [
            ("kafka.retention_ms", k.retention_ms, "604800000 (7 days)"),
            ("kafka.retention_bytes", k.retention_bytes, "1073741824 (1 GiB)"),
        ] {
            if value == 0 || value < -1 {
                return fail(
                    key,
                    format!("{key} ({value}) must be -1 (no limit) or positive; set it to e.g. {example}"),
                );
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Check {
        let a = &self.auth;
        if a.jwt_hs256_secret_file.is_some() && a.jwt_public_key_file.is_some() {
            return fail(
                "auth.jwt_public_key_file",
                "auth.jwt_public_key_file and auth.jwt_hs256_secret_file are both set; keep only one \
                 (the EdDSA/RS256 public key, or the HS256 secret)"
                    .into(),
            );
        }
        for (key, value) in [
            ("auth.jwt_hs256_secret_file", &a.jwt_hs256_secret_file),
            ("auth.jwt_public_key_file", &a.jwt_public_key_file),
        ] {
            if value.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return fail(
                    key,
                    format!("{key} is empty; remove it or give the file, e.g. \"/etc/chronik/jwt.secret\""),
                );
            }
        }
        for (key, value, example) in
            [("auth.issuer", &a.issuer, "chronik"), ("auth.audience", &a.audience, "chronik-admin")]
        {
            if value.trim().is_empty() {
                return fail(key, format!("{key} is empty; set it, e.g. {example:?}"));
            }
        }
        Ok(())
    }
}

/// `host:port` with a non-empty host and a port in 1..=65535 (IPv6 hosts in brackets).
fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.trim().rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|h| !h.is_empty())
    } else {
        !host.is_empty() && !host.contains([':', '@', '/', ' '])
    };
    port_ok && host_ok
}

/// Whether two bind addresses would fight over one port (port 0 means "any free port").
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}
