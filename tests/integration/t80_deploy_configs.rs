//! t80: every shipped config goes through the real loader (`ChronikConfig::load_with_warnings`,
//! the layering `chronik-server --config F` uses): the examples in `deploy/config/*.toml`, and the
//! compose cluster's `deploy/compose/config/*.toml` as each service of
//! `deploy/compose/docker-compose.yml` runs it (its file plus its `CHRONIK_*` environment, with
//! `${VAR:-default}` taken from `deploy/compose/.env`). For the compose cluster it also checks
//! what would otherwise only show when the cluster is up: node ids unique across all roles,
//! advertised addresses equal to the service hostnames, seeds naming the control services, the
//! admin key mounted where `[auth]` reads it, and gateways advertising their published ports.
//! The systemd unit starts a role with `/etc/chronik/chronik.toml`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use chronik_shared::config::{ChronikConfig, ConfigSources};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn load(file: &Path, env: Vec<(String, String)>) -> ChronikConfig {
    let (config, warnings) =
        ChronikConfig::load_with_warnings(ConfigSources { file: Some(file), env, overrides: Vec::new() })
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(warnings.is_empty(), "{}: {warnings:?}", file.display());
    config
}

#[test]
fn deploy_config_examples_load() {
    let files = toml_files(&repo().join("deploy/config"));
    let names: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["control", "data", "gateway", "standalone"]);
    let mut ids = BTreeSet::new();
    for file in &files {
        let config = load(file, Vec::new());
        let name = file.file_stem().unwrap().to_string_lossy();
        if name != "standalone" {
            assert!(ids.insert(config.node.id), "{}: node id {} used twice", file.display(), config.node.id);
            assert_eq!(config.cluster.seed_nodes.len(), 3, "{}", file.display());
            assert!(config.auth.jwt_hs256_secret_file.is_some(), "{}: [auth] names no key", file.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The compose file, read as it is laid out (two-space indentation, one service per block,
// `environment:` as a map, `command:` as a JSON-style list, volumes as a flow list whose `*x`
// items are scalar anchors defined on `x-...: &x value` lines). Not a general YAML reader.

#[derive(Debug, Default)]
struct Service {
    name: String,
    hostname: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    volumes: Vec<String>,
    ports: Vec<String>,
    profiles: Vec<String>,
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s).to_string()
}

fn flow_list(s: &str) -> Vec<String> {
    let s = s.trim();
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or_else(|| panic!("not a list: {s}"));
    inner.split(',').map(unquote).filter(|s| !s.is_empty()).collect()
}

/// `${VAR:-default}` and `${VAR}`, from `.env`.
fn interpolate(s: &str, dotenv: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s}")) + i;
        let expr = &rest[i + 2..end];
        let (var, default) = expr.split_once(":-").unwrap_or((expr, ""));
        out.push_str(dotenv.get(var).map(String::as_str).unwrap_or(default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn read_dotenv(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!(".env line {l:?} is not KEY=VALUE"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn read_compose(path: &Path, dotenv: &HashMap<String, String>) -> Vec<Service> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut anchors = HashMap::new();
    let mut services: Vec<Service> = Vec::new();
    let mut in_services = false;
    let mut block = "";
    for line in text.lines() {
        let content = line.trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        let content = content.trim_start();
        match indent {
            0 => {
                in_services = content == "services:";
                if let Some((_, value)) = content.split_once(": &")
                    && let Some((anchor, scalar)) = value.split_once(' ')
                {
                    anchors.insert(anchor.to_string(), scalar.trim().to_string());
                }
            }
            2 if in_services => {
                services.push(Service { name: content.trim_end_matches(':').to_string(), ..Default::default() })
            }
            4 if in_services => {
                let s = services.last_mut().expect("a service");
                let (key, value) = content.split_once(':').unwrap_or((content, ""));
                block = "";
                match key {
                    "hostname" => s.hostname = unquote(value),
                    "command" => s.command = serde_json::from_str(value.trim()).expect("command as a JSON list"),
                    "profiles" => s.profiles = flow_list(value),
                    "volumes" => {
                        s.volumes = flow_list(value)
                            .into_iter()
                            .map(|v| match v.strip_prefix('*') {
                                Some(a) => anchors.get(a).cloned().unwrap_or_else(|| panic!("no anchor &{a}")),
                                None => v,
                            })
                            .collect()
                    }
                    "environment" => block = "environment",
                    "ports" => block = "ports",
                    _ => {}
                }
            }
            6 if in_services => {
                let s = services.last_mut().expect("a service");
                match block {
                    "environment" => {
                        let (k, v) = content.split_once(':').expect("KEY: value");
                        s.environment.insert(k.trim().to_string(), interpolate(&unquote(v), dotenv));
                    }
                    "ports" => s.ports.push(interpolate(&unquote(content.trim_start_matches("- ")), dotenv)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    services
}

#[test]
fn compose_cluster_configs_load_and_agree() {
    let dir = repo().join("deploy/compose");
    let dotenv = read_dotenv(&dir.join(".env"));
    let services = read_compose(&dir.join("docker-compose.yml"), &dotenv);
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3", "node4", "node5", "node6", "node7", "gateway1", "gateway2"]);

    // Every role config loads on its own (what `--config` alone gives).
    let role_files = toml_files(&dir.join("config"));
    let role_names: Vec<String> =
        role_files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(role_names, ["control", "data", "gateway"]);
    for file in &role_files {
        load(file, Vec::new());
    }

    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    let mut controls: BTreeMap<u64, String> = BTreeMap::new();
    let mut configs = Vec::new();
    for s in &services {
        let role = s.command.first().unwrap_or_else(|| panic!("{}: no command", s.name)).clone();
        assert!(["control", "data", "gateway"].contains(&role.as_str()), "{}: role {role}", s.name);
        assert_eq!(s.command[1..], ["--config", "/etc/chronik/chronik.toml"], "{}", s.name);
        assert_eq!(s.hostname, s.name, "{}: the hostname is the service name (node1, ... as in the guide)", s.name);
        let mount = |target: &str| -> String {
            s.volumes
                .iter()
                .find_map(|v| {
                    let mut parts = v.split(':');
                    let (src, dst) = (parts.next()?, parts.next()?);
                    (dst == target).then(|| src.to_string())
                })
                .unwrap_or_else(|| panic!("{}: nothing mounted at {target}", s.name))
        };
        assert_eq!(mount("/etc/chronik/chronik.toml"), format!("./config/{role}.toml"), "{}", s.name);
        assert_eq!(mount("/etc/chronik/jwt.secret"), "./secrets/jwt.secret", "{}", s.name);
        assert_eq!(mount("/var/lib/chronik"), s.name, "{}: one volume per node", s.name);

        let env: Vec<(String, String)> = s.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let config = load(&dir.join("config").join(format!("{role}.toml")), env);
        if let Some(other) = ids.insert(config.node.id, s.name.clone()) {
            panic!("node id {} is used by both {other} and {}", config.node.id, s.name);
        }
        assert!(config.node.data_dir.starts_with("/var/lib/chronik"), "{}: data_dir outside the volume", s.name);
        assert_eq!(config.auth.jwt_hs256_secret_file, Some(PathBuf::from("/etc/chronik/jwt.secret")), "{}", s.name);
        match role.as_str() {
            "control" | "data" => {
                assert_eq!(config.listeners.advertised_grpc_addr(), format!("{}:9093", s.name), "{}", s.name);
                assert_eq!(config.listeners.grpc.port(), 9093, "{}", s.name);
            }
            _ => {
                let published = s
                    .ports
                    .iter()
                    .find_map(|p| p.strip_suffix(":9092").map(|hp| hp.rsplit(':').next().unwrap().to_string()))
                    .unwrap_or_else(|| panic!("{}: the Kafka port is not published", s.name));
                assert_eq!(
                    config.listeners.advertised_kafka_addr(),
                    format!("{}:{published}", dotenv.get("ADVERTISED_HOST").map(String::as_str).unwrap_or("127.0.0.1")),
                    "{}: clients are told the published port",
                    s.name
                );
            }
        }
        if role == "control" {
            controls.insert(config.node.id, s.name.clone());
        }
        configs.push((s, role, config));
    }
    // Exactly one control node bootstraps; every seed entry names a control service by its id.
    let bootstrap: Vec<&str> = configs
        .iter()
        .filter(|(_, r, c)| r == "control" && c.cluster.seed_nodes.is_empty())
        .map(|(s, _, _)| s.name.as_str())
        .collect();
    assert_eq!(bootstrap, ["node1"], "exactly one control node has seed_nodes = []");
    for (s, _, c) in &configs {
        for seed in &c.cluster.seed_nodes {
            assert_eq!(controls.get(&seed.id), Some(&seed.host), "{}: seed {seed} is not a control service", s.name);
            assert_eq!(seed.port, 9093, "{}: seed {seed}", s.name);
        }
        if s.name != "node1" {
            assert_eq!(c.cluster.seed_nodes.len(), controls.len(), "{}: seeds should list every control node", s.name);
        }
    }
    // Replication factor 3 fits the three data nodes that always run.
    let always_data = configs.iter().filter(|(s, r, _)| r == "data" && s.profiles.is_empty()).count();
    for (s, r, c) in &configs {
        if r == "gateway" {
            assert!(usize::from(c.kafka.default_replication_factor) <= always_data, "{}", s.name);
        }
    }
}

#[test]
fn systemd_unit_runs_a_role_with_the_guides_config_path() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/chronik.service")).expect("chronik.service");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart=");
    assert!(
        exec.contains("/usr/local/bin/chronik-server ${CHRONIK_ROLE} --config /etc/chronik/chronik.toml"),
        "{exec}"
    );
    for needed in
        ["[Unit]", "[Service]", "[Install]", "EnvironmentFile=-/etc/default/chronik", "WantedBy=multi-user.target"]
    {
        assert!(unit.contains(needed), "chronik.service lacks {needed}");
    }
}
