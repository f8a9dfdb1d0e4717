//! `chronik-server`: parses arguments and starts the role asked for.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chronik_shared::auth::{self, Role, Signer, Verifier};
use chronik_shared::config::{ChronikConfig, ConfigSources};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "chronik-server", version, about = "Chronik: a Kafka-compatible streaming platform")]
struct Cli {
    /// Log format: text or json (default: the config's `log.format`, else text).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct RoleArgs {
    /// TOML config file (conventionally /etc/chronik/chronik.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config key, e.g. `--set cluster.raft.election_timeout_ms=200`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// All three roles in one process: Kafka on 127.0.0.1:9092, HTTP on 127.0.0.1:8080.
    Standalone {
        #[command(flatten)]
        args: RoleArgs,
        /// Where data lives (default ./chronik-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// A control-plane node (the __meta Raft group).
    Control(RoleArgs),
    /// A data-plane node (partition replicas).
    Data(RoleArgs),
    /// A gateway (Kafka protocol and admin REST).
    Gateway(RoleArgs),
    /// Offline WAL inspection.
    Debug {
        #[command(subcommand)]
        cmd: DebugCmd,
    },
    /// Offline administration of a stopped node.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Run the operations guide's Quick Diagnostic Checklist across every node the given one
    /// knows: exits non-zero on any critical finding.
    Doctor {
        /// Any node's HTTP API, e.g. http://node1:8080
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An admin API token (viewer is enough).
        #[arg(long, env = "CHRONIK_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// How long to wait for each node's answers: 3s, 500ms, 1m.
        #[arg(long, default_value = "3s", value_parser = chronik_server::health_probe::parse_timeout)]
        timeout: Duration,
    },
    /// Probe a node's HTTP endpoint (for healthchecks where there is no curl): exits 0 on
    /// HTTP 200, printing the body, else non-zero with the reason.
    Health {
        /// e.g. http://node1:8080/health
        #[arg(long, default_value = "http://127.0.0.1:8080/health")]
        url: String,
        /// How long to wait for the whole answer: 2s, 500ms, 1m.
        #[arg(long, default_value = "2s", value_parser = chronik_server::health_probe::parse_timeout)]
        timeout: Duration,
    },
    /// Version, git commit and build profile.
    Version,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// UNSAFE: rewrite the control plane's membership on a stopped node (the guide's Force
    /// Quorum), e.g. --members '{"voters":[1],"learners":[]}'.
    ForceMembership {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        members: String,
        #[command(flatten)]
        args: RoleArgs,
        /// The node's data directory, when not given by --config.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Move every partition replica off data node --node-id before it is shut down; the
    /// control plane is reached through cluster.seed_nodes of --config. With --wait, returns
    /// once no replica is left on it. With --cancel, the node takes replicas again.
    Decommission {
        #[arg(long)]
        node_id: u64,
        #[arg(long)]
        wait: bool,
        #[arg(long, conflicts_with = "wait")]
        cancel: bool,
        #[command(flatten)]
        args: RoleArgs,
    },
    /// Mint an admin REST API token (JWT) with the key of [auth] and print it, e.g.
    /// `--role operator --ttl 7d --config /etc/chronik/chronik.toml`.
    Token {
        /// viewer, operator or admin.
        #[arg(long, value_parser = |s: &str| s.parse::<Role>())]
        role: Role,
        /// How long the token is valid: e.g. 30m, 1h, 7d (at most 3650d).
        #[arg(long, default_value = "1h", value_parser = auth::parse_ttl)]
        ttl: Duration,
        /// The EdDSA/RS256 private key (PEM) matching auth.jwt_public_key_file.
        #[arg(long)]
        private_key_file: Option<PathBuf>,
        #[command(flatten)]
        args: RoleArgs,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersArg {
    voters: Vec<u64>,
    #[serde(default)]
    learners: Vec<u64>,
}

// The variants' names are the subcommands operators type (`debug wal-dump`, ...).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand)]
enum DebugCmd {
    /// Print every record of a segment file or a directory of segments.
    WalDump {
        #[arg(long)]
        path: PathBuf,
    },
    /// Check every record's checksum; non-zero exit on corruption.
    WalVerify {
        #[arg(long)]
        path: PathBuf,
    },
    /// Segment, record and byte counts.
    WalStats {
        #[arg(long)]
        path: PathBuf,
    },
}

/// `--log-format`, when given: it wins over the config's `log.format`.
static LOG_FORMAT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Starts logging once: JSON if `--log-format json`, else as the config (if any) says.
fn init_logs(cfg: Option<&ChronikConfig>) {
    let json = match LOG_FORMAT.get().cloned().flatten() {
        Some(f) => f == "json",
        None => cfg.is_some_and(|c| c.log.is_json()),
    };
    chronik_shared::telemetry::init(json);
}

fn load(args: &RoleArgs, base: Option<ChronikConfig>) -> Result<ChronikConfig, String> {
    let mut overrides = Vec::new();
    for s in &args.set {
        let (k, v) = s.split_once('=').ok_or_else(|| {
            format!("--set {s:?}: expected KEY=VALUE, e.g. --set cluster.raft.election_timeout_ms=200")
        })?;
        overrides.push((k.to_string(), v.to_string()));
    }
    let sources = ConfigSources { file: args.config.as_deref(), env: std::env::vars().collect(), overrides };
    let (cfg, warnings) = ChronikConfig::load_layered(base.unwrap_or_default(), sources).map_err(|e| e.to_string())?;
    init_logs(Some(&cfg));
    for w in warnings {
        tracing::warn!(target: "chronik_server", "config: {w}");
    }
    if let Some(files) = chronik_shared::limits::raise_open_files() {
        tracing::info!(target: "chronik_server", "open files limit: {files} (each partition replica keeps 2 open)");
    }
    Ok(cfg)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Version => {
            println!(
                "chronik-server {} (commit {}, {} build)",
                env!("CARGO_PKG_VERSION"),
                option_env!("CHRONIK_GIT_COMMIT").unwrap_or("unknown"),
                if cfg!(debug_assertions) { "debug" } else { "release" }
            );
            Ok(())
        }
        Command::Debug { cmd } => debug(cmd),
        Command::Doctor { url, token, json, timeout } => {
            let target = chronik_server::health_probe::HttpUrl::parse(&url)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            let addr = format!("{}:{}", target.host, target.port);
            let report = rt.block_on(chronik_shared::doctor::diagnose(&addr, token.trim(), timeout));
            if json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                print!("{}", report.render_text());
            }
            let critical =
                report.findings.iter().filter(|f| f.severity == chronik_shared::doctor::Severity::Critical).count();
            if critical > 0 { Err(format!("{critical} critical finding(s)")) } else { Ok(()) }
        }
        Command::Health { url, timeout } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            let body = rt.block_on(chronik_server::health_probe::probe(&url, timeout))?;
            println!("{}", body.trim_end());
            Ok(())
        }
        Command::Admin { cmd: AdminCmd::ForceMembership { node_id, members, args, data_dir } } => {
            let m: MembersArg = serde_json::from_str(&members).map_err(|e| {
                format!("--members {members:?} is not valid: {e}; expected e.g. '{{\"voters\":[1],\"learners\":[]}}'")
            })?;
            let mut cfg = load(&args, None)?;
            if let Some(d) = data_dir {
                cfg.node.data_dir = d;
            }
            eprintln!("WARNING: force-membership rewrites the control plane's Raft membership.");
            eprintln!("WARNING: run it only on the ONE surviving node of a cluster that lost quorum, with every");
            eprintln!("WARNING: other control node stopped for good. Two clusters claiming the same data, or the");
            eprintln!(
                "WARNING: loss of writes the lost nodes committed, can follow. Back up {} first.",
                cfg.node.data_dir.display()
            );
            let wal = chronik_shared::wal::WalOptions::from_config(&cfg.wal);
            let report = runtime()?.block_on(chronik_control_plane::recovery::force_membership_offline(
                &cfg.node.data_dir,
                wal,
                node_id,
                m.voters.into_iter().collect(),
                m.learners.into_iter().collect(),
            ));
            let report = report.map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        Command::Admin { cmd: AdminCmd::Decommission { node_id, wait, cancel, args } } => {
            let cfg = load(&args, None)?;
            let seeds: Vec<String> = cfg.cluster.seed_nodes.iter().map(|s| s.addr()).collect();
            if seeds.is_empty() {
                return Err("cluster.seed_nodes is empty: give --config (or --set cluster.seed_nodes=...) naming the control plane".into());
            }
            let ctl = chronik_proto::client::ControlClient::new(seeds, Duration::from_secs(5));
            runtime()?.block_on(async move {
                loop {
                    let req = chronik_proto::control::DecommissionNodeRequest { node_id, cancel };
                    let r = ctl
                        .call(|mut c| async move { c.decommission_node(req).await })
                        .await
                        .map_err(|s| format!("decommissioning node {node_id}: {}", s.message()))?;
                    if cancel {
                        println!("node {node_id}: no longer being decommissioned; it takes replicas again");
                        return Ok(());
                    }
                    println!(
                        "node {node_id}: {} replica(s) left, {} move(s) in flight",
                        r.remaining_replicas, r.moves_in_flight
                    );
                    if !wait || (r.remaining_replicas == 0 && r.moves_in_flight == 0) {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        }
        Command::Admin { cmd: AdminCmd::Token { role, ttl, private_key_file, args } } => {
            let cfg = load(&args, None)?;
            println!("{}", admin_token(&cfg, role, ttl, private_key_file)?);
            Ok(())
        }
        Command::Standalone { args, data_dir } => {
            let mut base = ChronikConfig::standalone_defaults();
            if let Some(d) = data_dir {
                base.node.data_dir = d;
            }
            let cfg = load(&args, Some(base))?;
            chronik_shared::profile::start_from_env();
            runtime()?.block_on(async move {
                let node = chronik_server::Standalone::start(cfg).await?;
                chronik_server::wait_for_signal().await;
                node.shutdown().await;
                Ok(())
            })
        }
        Command::Control(args) => {
            let cfg = load(&args, None)?;
            chronik_shared::profile::start_from_env();
            runtime()?.block_on(chronik_server::run_role("control", cfg))
        }
        Command::Data(args) => {
            let cfg = load(&args, None)?;
            chronik_shared::profile::start_from_env();
            runtime()?.block_on(chronik_server::run_role("data", cfg))
        }
        Command::Gateway(args) => {
            let cfg = load(&args, None)?;
            chronik_shared::profile::start_from_env();
            runtime()?.block_on(chronik_server::run_role("gateway", cfg))
        }
    }
}

/// A token signed with `[auth]`'s HS256 secret or `private_key`, checked against the key the
/// servers verify with before it is handed out.
fn admin_token(cfg: &ChronikConfig, role: Role, ttl: Duration, private_key: Option<PathBuf>) -> Result<String, String> {
    let signer = match &private_key {
        Some(path) => Signer::from_private_key_file(path, &cfg.auth),
        None => Signer::from_config(&cfg.auth),
    }
    .map_err(|e| e.to_string())?;
    let token = auth::mint(&signer, role, ttl).map_err(|e| e.to_string())?;
    match Verifier::from_config(&cfg.auth).map_err(|e| e.to_string())? {
        Some(verifier) => {
            verifier.verify(&token).map_err(|e| auth::AuthError::SelfCheck(e.0).to_string())?;
        }
        None => eprintln!(
            "note: [auth] names no key, so this token could not be checked; servers need \
             auth.jwt_public_key_file with the public key matching the private key"
        ),
    }
    Ok(token)
}

fn debug(cmd: DebugCmd) -> Result<(), String> {
    use chronik_shared::wal;
    match cmd {
        DebugCmd::WalDump { path } => {
            let stdout = std::io::stdout();
            wal::dump_path(&path, &mut stdout.lock()).map_err(|e| e.to_string())
        }
        DebugCmd::WalVerify { path } => {
            let report = wal::verify_path(&path).map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        DebugCmd::WalStats { path } => {
            let stats = wal::stats_path(&path).map_err(|e| e.to_string())?;
            println!("{stats}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = LOG_FORMAT.set(cli.log_format.clone());
    chronik_shared::metrics::init();
    // Commands that read a config start logging once it is loaded (it may say json).
    let reads_config = matches!(
        cli.command,
        Command::Standalone { .. }
            | Command::Control(_)
            | Command::Data(_)
            | Command::Gateway(_)
            | Command::Admin { .. }
    );
    if !reads_config {
        init_logs(None);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            init_logs(None);
            tracing::error!(target: "chronik_server", "{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
