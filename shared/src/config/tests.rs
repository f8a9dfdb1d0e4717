//! Tests of loading (every layer, every error path) and validation, plus the deploy examples.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn load_file(text: &str) -> Result<ChronikConfig, ConfigError> {
    let f = toml_file(text);
    ChronikConfig::load(ConfigSources { file: Some(f.path()), ..Default::default() })
}

fn load_env(pairs: &[(&str, &str)]) -> Result<ChronikConfig, ConfigError> {
    ChronikConfig::load(ConfigSources { env: env(pairs), ..Default::default() })
}

fn load_overrides(pairs: &[(&str, &str)]) -> Result<ChronikConfig, ConfigError> {
    ChronikConfig::load(ConfigSources { overrides: env(pairs), ..Default::default() })
}

#[test]
fn defaults_are_valid_and_match_the_design() {
    let config = ChronikConfig::default();
    assert_eq!(config.validate().unwrap(), Vec::<String>::new());
    assert_eq!(config.node.id, 1);
    assert_eq!(config.node.data_dir, PathBuf::from("./chronik-data"));
    assert_eq!(config.listeners.kafka.to_string(), "0.0.0.0:9092");
    assert_eq!(config.listeners.http.to_string(), "0.0.0.0:8080");
    assert_eq!(config.listeners.grpc.to_string(), "0.0.0.0:9093");
    assert_eq!(config.cluster.raft.election_timeout_ms, 1000);
    assert_eq!(config.cluster.raft.max_snapshot_chunk_size, 1_048_576);
    assert_eq!(config.cluster.network.max_message_size, 4_194_304);
    assert_eq!(config.wal.profile, WalProfile::Medium);
    assert!(config.wal.profile == "medium");
    assert_eq!(config.kafka.max_request_size, 104_857_600);
    assert_eq!(config.auth.audience, "chronik-admin");
    assert_eq!(config.log.format, "text");

    // No sources at all gives exactly the defaults.
    let loaded = ChronikConfig::load(ConfigSources::default()).unwrap();
    assert_eq!(loaded, config);
}

#[test]
fn standalone_defaults_listen_on_loopback() {
    let config = ChronikConfig::standalone_defaults();
    assert_eq!(config.validate().unwrap(), Vec::<String>::new());
    assert_eq!(config.listeners.kafka.to_string(), "127.0.0.1:9092");
    assert_eq!(config.listeners.http.to_string(), "127.0.0.1:8080");
    assert_eq!(config.listeners.grpc.to_string(), "127.0.0.1:9093");
    assert_eq!(config.node.data_dir, PathBuf::from("./chronik-data"));
    assert!(config.cluster.seed_nodes.is_empty());
    assert_eq!(config.listeners.advertised_kafka_addr(), "127.0.0.1:9092");
    assert_eq!(config.kafka.queued_max_request_bytes, 64 * 1024 * 1024);

    // Layering on top of the standalone base keeps what the layers do not mention.
    let (layered, _) = ChronikConfig::load_layered(
        ChronikConfig::standalone_defaults(),
        ConfigSources { env: env(&[("CHRONIK_DATA_DIR", "/tmp/x")]), ..Default::default() },
    )
    .unwrap();
    assert_eq!(layered.listeners.kafka.to_string(), "127.0.0.1:9092");
    assert_eq!(layered.node.data_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn each_layer_overrides_the_previous_one() {
    let file = toml_file(
        r#"
[node]
id = 2
data_dir = "/from/file"

[cluster.raft]
election_timeout_ms = 2000
heartbeat_interval_ms = 150
"#,
    );
    let sources = |env_pairs: &[(&str, &str)], overrides: &[(&str, &str)]| ConfigSources {
        file: Some(file.path()),
        env: env(env_pairs),
        overrides: env(overrides),
    };

    let from_file = ChronikConfig::load(sources(&[], &[])).unwrap();
    assert_eq!(from_file.node.id, 2);
    assert_eq!(from_file.node.data_dir, PathBuf::from("/from/file"));
    assert_eq!(from_file.cluster.raft.election_timeout_ms, 2000);
    assert_eq!(from_file.cluster.raft.max_in_flight, 1000, "untouched keys keep defaults");

    let env_pairs =
        [("CHRONIK_CLUSTER__RAFT__ELECTION_TIMEOUT_MS", "3000"), ("CHRONIK_NODE__ID", "3"), ("PATH", "/usr/bin")];
    let from_env = ChronikConfig::load(sources(&env_pairs, &[])).unwrap();
    assert_eq!(from_env.cluster.raft.election_timeout_ms, 3000);
    assert_eq!(from_env.node.id, 3);
    assert_eq!(from_env.node.data_dir, PathBuf::from("/from/file"));
    assert_eq!(from_env.cluster.raft.heartbeat_interval_ms, 150);

    let overrides = [("cluster.raft.election_timeout_ms", "4000"), ("node.data_dir", "/from/flag")];
    let from_flags = ChronikConfig::load(sources(&env_pairs, &overrides)).unwrap();
    assert_eq!(from_flags.cluster.raft.election_timeout_ms, 4000);
    assert_eq!(from_flags.node.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(from_flags.node.id, 3);
}

#[test]
fn env_aliases_and_value_types() {
    let config = load_env(&[
        ("CHRONIK_WAL_PROFILE", "HIGH"),
        ("CHRONIK_NODE_ID", "5"),
        ("CHRONIK_DATA_DIR", "/var/lib/chronik/data"),
        ("CHRONIK_SEED_NODES", "1@node1:9093, 2@node2:9093,3@node3:9093"),
        ("CHRONIK_CLUSTER__RAFT__ENABLE_PIPELINE", "False"),
        ("CHRONIK_LISTENERS__KAFKA", "10.0.0.7:19092"),
        ("CHRONIK_LISTENERS__ADVERTISED_KAFKA", "node7:19092"),
        ("CHRONIK_NODE__RACK", "12"), // a string key keeps digits as text
        ("CHRONIK_KAFKA__RETENTION_BYTES", "-1"),
        ("CHRONIK_CPU_PROFILE", "true"), // not a config key: ignored
        ("CHRONIK_LOG", "debug"),
    ])
    .unwrap();
    assert_eq!(config.wal.profile, WalProfile::High);
    assert_eq!(config.node.id, 5);
    assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/chronik/data"));
    let seeds: Vec<String> = config.cluster.seed_nodes.iter().map(ToString::to_string).collect();
    assert_eq!(seeds, ["1@node1:9093", "2@node2:9093", "3@node3:9093"]);
    assert!(!config.cluster.raft.enable_pipeline);
    assert_eq!(config.listeners.kafka.to_string(), "10.0.0.7:19092");
    assert_eq!(config.listeners.advertised_kafka_addr(), "node7:19092");
    assert_eq!(config.node.rack.as_deref(), Some("12"));

    // The explicit nested form beats the alias; an empty seed list bootstraps.
    let config = load_env(&[("CHRONIK_NODE__ID", "9"), ("CHRONIK_NODE_ID", "8"), ("CHRONIK_SEED_NODES", "")]).unwrap();
    assert_eq!(config.node.id, 9);
    assert!(config.cluster.seed_nodes.is_empty());
}

#[test]
fn missing_file_names_the_path() {
    let path = Path::new("/nonexistent/chronik/chronik.toml");
    let err = ChronikConfig::load(ConfigSources { file: Some(path), ..Default::default() }).unwrap_err();
    assert!(matches!(err, ConfigError::FileNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/chronik/chronik.toml"), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let f = toml_file("[node]\nid = 1\n\n[cluster.raft\nelection_timeout_ms = 1000\n");
    let err = ChronikConfig::load(ConfigSources { file: Some(f.path()), ..Default::default() }).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Syntax { line: 4, .. }), "{err:?}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn unknown_key_in_file_names_the_dotted_key() {
    let f = toml_file("[node]\nid = 1\n\n[cluster.raft]\nelecion_timeout_ms = 200\n");
    let err = ChronikConfig::load(ConfigSources { file: Some(f.path()), ..Default::default() }).unwrap_err();
    let msg = err.to_string();
    let expected = format!("unknown key `cluster.raft.elecion_timeout_ms` in {} line 5", f.path().display());
    assert!(msg.starts_with(&expected), "{msg}");
    assert!(msg.contains("did you mean `cluster.raft.election_timeout_ms`"), "{msg}");

    // A known key in the wrong section points to the right one.
    let msg = load_file("[cluster.raft]\nmax_message_size = 8388608\n").unwrap_err().to_string();
    assert!(msg.contains("`cluster.raft.max_message_size`"), "{msg}");
    assert!(msg.contains("did you mean `cluster.network.max_message_size`"), "{msg}");

    // Unknown sections and dotted keys too.
    let msg = load_file("[clusterr]\nseed_nodes = []\n").unwrap_err().to_string();
    assert!(msg.contains("unknown key `clusterr`"), "{msg}");
    let msg = load_file("node.idd = 3\n").unwrap_err().to_string();
    assert!(msg.contains("unknown key `node.idd`"), "{msg}");
}

#[test]
fn wrong_type_in_file_names_key_and_line() {
    let err = load_file("[node]\nid = 1\n\n[cluster.raft]\nelection_timeout_ms = \"fast\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cluster.raft.election_timeout_ms: invalid type"), "{msg}");
    assert!(msg.contains("line 5"), "{msg}");
    assert!(msg.contains("election_timeout_ms = 1000"), "{msg}");

    let msg = load_file("[wal]\nprofile = \"turbo\"\n").unwrap_err().to_string();
    assert!(msg.starts_with("wal.profile: "), "{msg}");
    assert!(msg.contains("\"low\", \"medium\", \"high\""), "{msg}");
}

#[test]
fn unknown_config_env_var_is_an_error_naming_it() {
    let err = load_env(&[("CHRONIK_CLUSTER__RAFT__ELECION_TIMEOUT_MS", "200")]).unwrap_err();
    assert!(matches!(err, ConfigError::UnknownEnvVar { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("CHRONIK_CLUSTER__RAFT__ELECION_TIMEOUT_MS"), "{msg}");
    assert!(msg.contains("cluster.raft.elecion_timeout_ms"), "{msg}");
    assert!(msg.contains("did you mean CHRONIK_CLUSTER__RAFT__ELECTION_TIMEOUT_MS"), "{msg}");

    let msg = load_env(&[("CHRONIK_CLUSTER__RAFT", "x")]).unwrap_err().to_string();
    assert!(msg.contains("CHRONIK_CLUSTER__RAFT") && msg.contains("section"), "{msg}");

    // Not shaped like a config key: ignored.
    load_env(&[("CHRONIK_CPU_PROFILE", "true"), ("CHRONIK_FOO", "1")]).unwrap();
}

#[test]
fn bad_env_value_names_the_variable() {
    let msg = load_env(&[("CHRONIK_NODE__ID", "two")]).unwrap_err().to_string();
    assert!(msg.starts_with("node.id: invalid type"), "{msg}");
    assert!(msg.contains("(from environment variable CHRONIK_NODE__ID)"), "{msg}");
    let msg = load_env(&[("CHRONIK_WAL_PROFILE", "fast")]).unwrap_err().to_string();
    assert!(msg.contains("CHRONIK_WAL_PROFILE") && msg.contains("\"high\""), "{msg}");
}

#[test]
fn overrides_check_keys_and_values() {
    let config = load_overrides(&[
        ("cluster.raft.election-timeout-ms", "500"),
        ("cluster.raft.heartbeat_interval_ms", "50"),
        ("kafka.auto_create_topics", "false"),
        ("cluster.seed_nodes", "1@a:9093,2@b:9093"),
    ])
    .unwrap();
    assert_eq!(config.cluster.raft.election_timeout_ms, 500);
    assert!(!config.kafka.auto_create_topics);
    assert_eq!(config.cluster.seed_nodes.len(), 2);

    let msg = load_overrides(&[("kafka.max_requst_size", "1")]).unwrap_err().to_string();
    assert!(msg.contains("unknown key `kafka.max_requst_size` from command-line override"), "{msg}");
    assert!(msg.contains("did you mean `kafka.max_request_size`"), "{msg}");
    let msg = load_overrides(&[("node.id", "-1")]).unwrap_err().to_string();
    assert!(msg.starts_with("node.id: ") && msg.contains("node.id=-1"), "{msg}");
}

#[test]
fn malformed_seed_quotes_the_entry_and_the_expected_form() {
    for bad in ["node1:9093", "x@node1:9093", "1@node1", "1@:9093", "1@node1:0", "1@node1:70000"] {
        let err = bad.parse::<SeedNode>().unwrap_err().to_string();
        let expected = format!("{bad:?} is not of the form id@host:port (e.g. \"1@node1:9093\")");
        assert!(err.starts_with(&expected), "{err}");
    }

    let msg = load_file("[cluster]\nseed_nodes = [\"1@node1:9093\", \"node1:9093\"]\n").unwrap_err().to_string();
    assert!(
        msg.starts_with("cluster.seed_nodes: \"node1:9093\" is not of the form id@host:port (e.g. \"1@node1:9093\")"),
        "{msg}"
    );
    assert!(msg.contains("line 2"), "{msg}");

    let msg = load_env(&[("CHRONIK_SEED_NODES", "node1:9093")]).unwrap_err().to_string();
    assert!(msg.contains("cluster.seed_nodes") && msg.contains("CHRONIK_SEED_NODES"), "{msg}");
    assert!(msg.contains("\"node1:9093\" is not of the form id@host:port"), "{msg}");
}

#[test]
fn seed_nodes_round_trip() {
    for s in ["1@node1:9093", "12@10.0.0.1:19093", "3@[::1]:9093"] {
        let seed: SeedNode = s.parse().unwrap();
        assert_eq!(seed.to_string(), s);
    }
    let seed: SeedNode = "3@[::1]:9093".parse().unwrap();
    assert_eq!((seed.id, seed.host.as_str(), seed.port), (3, "::1", 9093));
    assert_eq!(seed.addr(), "[::1]:9093");

    let msg = load_env(&[("CHRONIK_SEED_NODES", "1@a:9093,1@b:9093")]).unwrap_err().to_string();
    assert!(msg.contains("\"1@a:9093\" and \"1@b:9093\""), "{msg}");
    let msg = load_env(&[("CHRONIK_SEED_NODES", "0@a:9093")]).unwrap_err().to_string();
    assert!(msg.contains("node id 0"), "{msg}");
}

#[test]
fn max_message_size_must_exceed_snapshot_chunk_size() {
    let err = load_file("[cluster.raft]\nmax_snapshot_chunk_size = 8388608\n").unwrap_err();
    assert_eq!(err.key(), "cluster.network.max_message_size");
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "cluster.network.max_message_size (4194304) must be greater than \
             cluster.raft.max_snapshot_chunk_size (8388608)"
        ),
        "{msg}"
    );
    // The guide's fix (2 MiB chunks, 8 MiB messages) is accepted.
    load_file("[cluster.raft]\nmax_snapshot_chunk_size = 2097152\n[cluster.network]\nmax_message_size = 8388608\n")
        .unwrap();
    // Equal is not greater.
    let mut c = ChronikConfig::default();
    c.cluster.network.max_message_size = c.cluster.raft.max_snapshot_chunk_size;
    assert!(c.validate().is_err());
}

#[test]
fn heartbeat_must_be_below_election_timeout() {
    let mut c = ChronikConfig::default();
    c.cluster.raft.heartbeat_interval_ms = 1000;
    let msg = c.validate().unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "cluster.raft.heartbeat_interval_ms (1000) must be less than \
             cluster.raft.election_timeout_ms (1000)"
        ),
        "{msg}"
    );

    c.cluster.raft.heartbeat_interval_ms = 300;
    let warnings = c.validate().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cluster.raft.heartbeat_interval_ms (300)"), "{warnings:?}");

    // The guide's fast-failover values: exactly a tenth, no warning.
    let (_, warnings) = ChronikConfig::load_with_warnings(ConfigSources {
        env: env(&[
            ("CHRONIK_CLUSTER__RAFT__ELECTION_TIMEOUT_MS", "200"),
            ("CHRONIK_CLUSTER__RAFT__HEARTBEAT_INTERVAL_MS", "20"),
        ]),
        ..Default::default()
    })
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");

    c.cluster.raft.election_timeout_ms = 0;
    assert!(c.validate().is_err());
}

#[test]
fn other_validation_rules() {
    let check = |f: &dyn Fn(&mut ChronikConfig), key: &str| {
        let mut c = ChronikConfig::default();
        f(&mut c);
        let err = c.validate().unwrap_err();
        assert_eq!(err.key(), key, "{err}");
        assert!(err.to_string().starts_with(key), "{err}");
    };
    check(&|c| c.node.id = 0, "node.id");
    check(&|c| c.log.format = "yaml".into(), "log.format");
    check(&|c| c.kafka.max_request_size = 1000, "kafka.max_request_size");
    check(&|c| c.kafka.queued_max_request_bytes = 1000, "kafka.queued_max_request_bytes");
    check(&|c| c.cluster.network.request_timeout_ms = 0, "cluster.network.request_timeout_ms");
    check(&|c| c.cluster.network.install_snapshot_timeout_secs = 0, "cluster.network.install_snapshot_timeout_secs");
    check(&|c| c.cluster.heartbeat.node_timeout_ms = 1000, "cluster.heartbeat.node_timeout_ms");
    check(&|c| c.kafka.default_partitions = 0, "kafka.default_partitions");
    check(&|c| c.kafka.retention_ms = 0, "kafka.retention_ms");
    check(&|c| c.wal.segment_bytes = 10, "wal.segment_bytes");
    check(&|c| c.listeners.grpc = c.listeners.kafka, "listeners.grpc");
    check(&|c| c.listeners.advertised_kafka = Some("node7".into()), "listeners.advertised_kafka");
    check(
        &|c| {
            c.auth.jwt_hs256_secret_file = Some("/a".into());
            c.auth.jwt_public_key_file = Some("/b".into());
        },
        "auth.jwt_public_key_file",
    );

    let msg = load_env(&[("CHRONIK_NODE_ID", "0")]).unwrap_err().to_string();
    assert!(msg.starts_with("node.id must be greater than 0"), "{msg}");
    // Port 0 ("any free port") never clashes.
    let mut c = ChronikConfig::standalone_defaults();
    c.listeners.kafka.set_port(0);
    c.listeners.grpc.set_port(0);
    c.validate().unwrap();
}

#[test]
fn advertised_addresses_fall_back_to_the_bind_address() {
    let mut l = ListenersConfig::default();
    let grpc = l.advertised_grpc_addr();
    assert!(grpc.ends_with(":9093") && !grpc.starts_with("0.0.0.0"), "{grpc}");
    l.grpc = "10.1.2.3:9093".parse().unwrap();
    assert_eq!(l.advertised_grpc_addr(), "10.1.2.3:9093");
    l.advertised_grpc = Some("node1:9093".into());
    assert_eq!(l.advertised_grpc_addr(), "node1:9093");
}

#[test]
fn effective_config_renders_and_reloads() {
    let config = load_env(&[
        ("CHRONIK_SEED_NODES", "1@node1:9093"),
        ("CHRONIK_WAL_PROFILE", "low"),
        ("CHRONIK_AUTH__JWT_HS256_SECRET_FILE", "/etc/chronik/jwt.secret"),
    ])
    .unwrap();
    let text = config.to_toml_string();
    assert!(text.contains("seed_nodes = [\"1@node1:9093\"]"), "{text}");
    assert_eq!(load_file(&text).unwrap(), config);
}

#[test]
fn deploy_examples_parse_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let (config, warnings) =
            ChronikConfig::load_with_warnings(ConfigSources { file: Some(&path), ..Default::default() })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            "control" => {
                assert_eq!(config.node.id, 1);
                assert_eq!(config.cluster.seed_nodes.len(), 3);
                assert_eq!(config.listeners.advertised_grpc_addr(), "node1:9093");
            }
            "data" => assert_eq!(config.node.id, 4),
            "gateway" => {
                assert_eq!(config.node.id, 7);
                assert_eq!(config.listeners.advertised_kafka_addr(), "node7:9092");
            }
            "standalone" => {
                assert_eq!(config.listeners, ChronikConfig::standalone_defaults().listeners);
                assert!(config.cluster.seed_nodes.is_empty());
            }
            _ => {}
        }
        if name != "standalone" {
            assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/chronik/data"));
            assert_eq!(config.auth.jwt_hs256_secret_file, Some(PathBuf::from("/etc/chronik/jwt.secret")));
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["control", "data", "gateway", "standalone"]);
}
