//! The layered loading pipeline: defaults → TOML file → `CHRONIK_*` environment → CLI overrides.
//!
//! Every layer is merged into one `toml::Table` (the file's table first, then each environment
//! variable and override set at its dotted path, its text parsed with the type of the target
//! field) and the result is deserialised once. Before a value is merged it is checked on its own,
//! so a bad value is reported against the file line, variable or flag it came from. Known keys are
//! taken from the serialised form of a fully populated [`ChronikConfig`] (see [`schema`]), which
//! gives errors the full dotted path (`cluster.raft.elecion_timeout_ms`) that serde alone lacks.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

use super::{ChronikConfig, ConfigError, ConfigOrigin, SeedNode};

/// Where the config file lives by convention.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/chronik/chronik.toml";

/// The inputs of [`ChronikConfig::load`], lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources<'a> {
    /// The TOML file; `None` means defaults only. A path that does not exist is an error.
    pub file: Option<&'a Path>,
    /// Environment variables (usually [`ConfigSources::process_env`]); only `CHRONIK_*` are read.
    pub env: Vec<(String, String)>,
    /// `("dotted.key", "value")` pairs from command-line flags; they win over everything.
    pub overrides: Vec<(String, String)>,
}

impl ConfigSources<'_> {
    /// The `CHRONIK_*` variables of this process (variables that are not valid UTF-8 are skipped).
    pub fn process_env() -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect()
    }
}

const ENV_PREFIX: &str = "CHRONIK_";

/// Short variables the operations guide and deployment scripts use, mapped to their keys.
const ENV_ALIASES: [(&str, &[&str]); 4] = [
    ("CHRONIK_WAL_PROFILE", &["wal", "profile"]),
    ("CHRONIK_NODE_ID", &["node", "id"]),
    ("CHRONIK_DATA_DIR", &["node", "data_dir"]),
    ("CHRONIK_SEED_NODES", &["cluster", "seed_nodes"]),
];

impl ChronikConfig {
    /// The whole pipeline: defaults, file, environment, overrides, then [`validate`]. Warnings
    /// from validation are logged (target `chronik_server`); use [`load_with_warnings`] to get
    /// them instead, e.g. when logging is not set up yet.
    ///
    /// [`validate`]: ChronikConfig::validate
    /// [`load_with_warnings`]: ChronikConfig::load_with_warnings
    pub fn load(src: ConfigSources<'_>) -> Result<ChronikConfig, ConfigError> {
        let (config, warnings) = Self::load_with_warnings(src)?;
        for warning in &warnings {
            tracing::warn!(target: "chronik_server", "config: {warning}");
        }
        Ok(config)
    }

    /// [`load`](ChronikConfig::load), returning the validation warnings instead of logging them.
    pub fn load_with_warnings(src: ConfigSources<'_>) -> Result<(ChronikConfig, Vec<String>), ConfigError> {
        Self::load_layered(ChronikConfig::default(), src)
    }

    /// Like [`load_with_warnings`](ChronikConfig::load_with_warnings) but starting from `base`
    /// instead of the defaults (e.g. [`ChronikConfig::standalone_defaults`]).
    pub fn load_layered(
        base: ChronikConfig,
        src: ConfigSources<'_>,
    ) -> Result<(ChronikConfig, Vec<String>), ConfigError> {
        let mut table =
            Table::try_from(&base).map_err(|e| invalid_value(&[], ConfigOrigin::Default, &e.to_string()))?;
        if let Some(path) = src.file {
            merge(&mut table, read_file_layer(path)?);
        }
        for entry in env_entries(&src.env)? {
            entry.apply(&mut table)?;
        }
        for (key, raw) in &src.overrides {
            override_entry(key, raw)?.apply(&mut table)?;
        }
        let config: ChronikConfig = table.try_into().map_err(|e| {
            let key = error_key_path(&e).unwrap_or_default();
            let path: Vec<String> = key.split('.').map(String::from).collect();
            invalid_value(&path, ConfigOrigin::Default, e.message())
        })?;
        let warnings = config.validate()?;
        Ok((config, warnings))
    }

    /// Convenience: `file` (if any) plus this process's `CHRONIK_*` environment, no overrides.
    pub fn from_env_and_file(file: Option<&Path>) -> Result<ChronikConfig, ConfigError> {
        Self::load(ConfigSources { file, env: ConfigSources::process_env(), overrides: Vec::new() })
    }
}

/// Every key the config accepts, as the table a fully populated config serialises to.
pub(crate) fn schema() -> &'static Table {
    static SCHEMA: OnceLock<Table> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut example = ChronikConfig::default();
        // Optional keys are skipped when `None`: give each one a value so it is known.
        example.node.rack = Some("rack-a".into());
        example.listeners.advertised_kafka = Some("node7:9092".into());
        example.listeners.advertised_grpc = Some("node1:9093".into());
        example.cluster.seed_nodes = vec![SeedNode { id: 1, host: "node1".into(), port: 9093 }];
        example.auth.jwt_hs256_secret_file = Some("/etc/chronik/jwt.secret".into());
        example.auth.jwt_public_key_file = Some("/etc/chronik/jwt.pub.pem".into());
        Table::try_from(&example).expect("the config types serialise to TOML")
    })
}

// ---------------------------------------------------------------------------------------------
// The file layer

fn read_file_layer(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::FileNotFound { path: path.to_path_buf() },
        _ => ConfigError::FileRead { path: path.to_path_buf(), source },
    })?;
    let syntax = |e: toml::de::Error| {
        let (line, column) = line_col(&text, e.span().map_or(0, |s| s.start));
        ConfigError::Syntax { path: path.to_path_buf(), line, column, message: e.message().trim().replace('\n', "; ") }
    };
    let doc = DeTable::parse(&text).map_err(syntax)?;

    // Unknown keys first, reporting the first one in the file (and how many others there are).
    let mut unknown = Vec::new();
    find_unknown_keys(doc.get_ref(), schema(), &mut Vec::new(), &mut unknown);
    unknown.sort_by_key(|(_, pos)| *pos);
    if let Some((key, pos)) = unknown.first() {
        let mut hint = unknown_key_hint(key);
        if unknown.len() > 1 {
            let others: Vec<String> = unknown[1..].iter().map(|(k, _)| k.join(".")).collect();
            hint.push_str(&format!(" (also unknown: {})", others.join(", ")));
        }
        return Err(ConfigError::UnknownKey { key: key.join("."), origin: file_origin(path, &text, *pos), hint });
    }

    // Then types, with the line of the offending value.
    if let Err(e) = toml::from_str::<ChronikConfig>(&text) {
        let pos = e.span().map_or(0, |s| s.start);
        let key = key_at(doc.get_ref(), pos, &mut Vec::new())
            .or_else(|| error_key_path(&e).map(|k| k.split('.').map(String::from).collect()))
            .unwrap_or_default();
        return Err(invalid_value(&key, file_origin(path, &text, pos), e.message()));
    }
    toml::from_str::<Table>(&text).map_err(syntax)
}

fn file_origin(path: &Path, text: &str, pos: usize) -> ConfigOrigin {
    ConfigOrigin::File { path: PathBuf::from(path), line: Some(line_col(text, pos).0) }
}

/// 1-based line and column of byte `pos` in `text`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn find_unknown_keys(doc: &DeTable<'_>, schema: &Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    for (key, value) in doc.iter() {
        let name: &str = key.get_ref();
        prefix.push(name.to_string());
        match (schema.get(name), value.get_ref()) {
            (None, _) => out.push((prefix.clone(), key.span().start)),
            (Some(Value::Table(sub)), DeValue::Table(table)) => find_unknown_keys(table, sub, prefix, out),
            _ => {}
        }
        prefix.pop();
    }
}

/// The dotted path of the deepest non-table value whose text contains byte `pos`.
fn key_at(doc: &DeTable<'_>, pos: usize, prefix: &mut Vec<String>) -> Option<Vec<String>> {
    for (key, value) in doc.iter() {
        prefix.push(key.get_ref().to_string());
        let found = match value.get_ref() {
            DeValue::Table(table) => key_at(table, pos, prefix),
            _ => {
                let (k, v) = (key.span(), value.span());
                (k.contains(&pos) || (v.start <= pos && pos <= v.end)).then(|| prefix.clone())
            }
        };
        prefix.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The `in `a.b`` path toml appends to errors raised while deserialising a `Table`.
fn error_key_path(e: &toml::de::Error) -> Option<String> {
    let text = e.to_string();
    let line = text.lines().rev().find(|l| l.starts_with("in `"))?;
    Some(line.trim_start_matches("in `").trim_end_matches('`').to_string())
}

// ---------------------------------------------------------------------------------------------
// Environment variables and overrides

/// One value to set at a dotted path, with where it came from.
struct Entry {
    path: Vec<String>,
    raw: String,
    origin: ConfigOrigin,
}

fn env_entries(env: &[(String, String)]) -> Result<Vec<Entry>, ConfigError> {
    let entry = |path: Vec<String>, var: &str, raw: &str| Entry {
        path,
        raw: raw.to_string(),
        origin: ConfigOrigin::Env { var: var.into() },
    };
    // Aliases first, so the explicit CHRONIK_<SECTION>__<KEY> form wins over them.
    let mut entries = Vec::new();
    for (alias, path) in ENV_ALIASES {
        if let Some((var, raw)) = env.iter().rev().find(|(var, _)| var == alias) {
            entries.push(entry(path.iter().map(|s| s.to_string()).collect(), var, raw));
        }
    }
    let mut nested = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue; // CHRONIK_LOG, CHRONIK_CPU_PROFILE, the aliases, ...: not nested keys.
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        check_env_path(var, &path)?;
        nested.push(entry(path, var, raw));
    }
    // Deterministic whatever the order of the environment.
    nested.sort_by(|a, b| a.path.cmp(&b.path));
    entries.extend(nested);
    Ok(entries)
}

fn env_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_ascii_uppercase())
}

fn check_env_path(var: &str, path: &[String]) -> Result<(), ConfigError> {
    let fix = "unset it, or name a key as CHRONIK_<SECTION>__<KEY> \
               (e.g. CHRONIK_CLUSTER__RAFT__ELECTION_TIMEOUT_MS=200)";
    let dotted = path.join(".");
    let hint = match lookup(path) {
        Lookup::Leaf(_) => return Ok(()),
        Lookup::Section => format!("`{dotted}` is a section, not a key; {fix}"),
        Lookup::Unknown => match suggestion(path) {
            Some(s) => format!(
                "it maps to `{dotted}`, which is not a config key; did you mean {}? Otherwise {fix}",
                env_name(&s)
            ),
            None => format!("it maps to `{dotted}`, which is not a config key; {fix}"),
        },
    };
    Err(ConfigError::UnknownEnvVar { var: var.to_string(), hint })
}

fn override_entry(key: &str, raw: &str) -> Result<Entry, ConfigError> {
    let path: Vec<String> = key.trim().split('.').map(|s| s.trim().replace('-', "_")).collect();
    let origin = ConfigOrigin::Override { key: format!("{key}={raw}") };
    match lookup(&path) {
        Lookup::Leaf(_) => Ok(Entry { path, raw: raw.to_string(), origin }),
        Lookup::Section => Err(ConfigError::UnknownKey {
            key: path.join("."),
            origin,
            hint: "that is a section, not a key; override one key inside it".into(),
        }),
        Lookup::Unknown => Err(ConfigError::UnknownKey { hint: unknown_key_hint(&path), key: path.join("."), origin }),
    }
}

impl Entry {
    /// Sets the value in `table`, after checking it deserialises on its own.
    fn apply(self, table: &mut Table) -> Result<(), ConfigError> {
        let Lookup::Leaf(example) = lookup(&self.path) else {
            unreachable!("entries are checked against the schema when built")
        };
        let value = typed_value(&self.raw, example);
        let mut probe = Table::new();
        set_path(&mut probe, &self.path, value.clone());
        if let Err(e) = probe.try_into::<ChronikConfig>() {
            return Err(invalid_value(&self.path, self.origin, e.message()));
        }
        set_path(table, &self.path, value);
        Ok(())
    }
}

/// Parses `raw` as the kind of value the target key holds (`example` is its schema value).
fn typed_value(raw: &str, example: &Value) -> Value {
    let trimmed = raw.trim();
    match example {
        Value::String(_) => match parse_value(trimmed) {
            Some(Value::String(s)) if trimmed.starts_with(['"', '\'']) => Value::String(s),
            _ => Value::String(raw.to_string()),
        },
        Value::Array(_) if !trimmed.starts_with('[') => Value::Array(
            trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_string())).collect(),
        ),
        Value::Boolean(_) => {
            parse_value(&trimmed.to_ascii_lowercase()).unwrap_or_else(|| Value::String(raw.to_string()))
        }
        _ => parse_value(trimmed).unwrap_or_else(|| Value::String(raw.to_string())),
    }
}

/// `raw` as a TOML value (`200`, `true`, `["a"]`, `"quoted"`), if it is one.
fn parse_value(raw: &str) -> Option<Value> {
    if raw.contains(['\n', '\r']) {
        return None;
    }
    let mut table: Table = toml::from_str(&format!("v = {raw}")).ok()?;
    table.remove("v")
}

fn set_path(table: &mut Table, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("config paths are never empty");
    let mut current = table;
    for part in parents {
        let slot = current.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !slot.is_table() {
            *slot = Value::Table(Table::new());
        }
        current = slot.as_table_mut().expect("just made a table");
    }
    current.insert(last.clone(), value);
}

/// Deep merge: tables merge key by key, anything else in `upper` replaces what is in `lower`.
fn merge(lower: &mut Table, upper: Table) {
    for (key, value) in upper {
        match (lower.get_mut(&key), value) {
            (Some(Value::Table(l)), Value::Table(u)) => merge(l, u),
            (_, value) => {
                lower.insert(key, value);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Schema lookups and hints

enum Lookup<'s> {
    Leaf(&'s Value),
    Section,
    Unknown,
}

fn lookup(path: &[String]) -> Lookup<'static> {
    let mut table = schema();
    for (i, part) in path.iter().enumerate() {
        match table.get(part.as_str()) {
            Some(Value::Table(_)) if i + 1 == path.len() => return Lookup::Section,
            Some(Value::Table(sub)) => table = sub,
            Some(leaf) if i + 1 == path.len() => return Lookup::Leaf(leaf),
            _ => return Lookup::Unknown,
        }
    }
    Lookup::Unknown
}

fn invalid_value(path: &[String], origin: ConfigOrigin, message: &str) -> ConfigError {
    let hint = match lookup(path) {
        Lookup::Leaf(example) => {
            let mut one = Table::new();
            one.insert(path.last().cloned().unwrap_or_default(), example.clone());
            let line = toml::to_string(&one).unwrap_or_default();
            format!("write it like `{}`", line.trim())
        }
        _ => "see deploy/config/*.toml for the expected form".to_string(),
    };
    ConfigError::InvalidValue {
        key: if path.iter().all(|p| p.is_empty()) { "config".to_string() } else { path.join(".") },
        origin,
        message: message.trim().replace('\n', "; "),
        hint,
    }
}

fn unknown_key_hint(path: &[String]) -> String {
    let fix = "unknown keys are rejected, so fix its spelling or remove it";
    if let Some(s) = suggestion(path) {
        return format!("did you mean `{}`? {fix}", s.join("."));
    }
    let parent = &path[..path.len() - 1];
    let mut table = schema();
    for part in parent {
        match table.get(part.as_str()) {
            Some(Value::Table(sub)) => table = sub,
            _ => return fix.to_string(),
        }
    }
    let known: Vec<&str> = table.keys().map(String::as_str).collect();
    let section = if parent.is_empty() { "the top level".to_string() } else { format!("[{}]", parent.join(".")) };
    format!("{fix} ({section} accepts: {})", known.join(", "))
}

/// The known key `path` most likely meant: the same name in another section, or a close spelling.
fn suggestion(path: &[String]) -> Option<Vec<String>> {
    let mut known = Vec::new();
    all_paths(schema(), &mut Vec::new(), &mut known);
    let last = path.last()?;
    if let Some(moved) = known.iter().find(|k| k.last() == Some(last)) {
        return Some(moved.clone());
    }
    let wanted = path.join(".");
    known
        .into_iter()
        .map(|k| (edit_distance(&wanted, &k.join(".")), k))
        .filter(|(d, _)| *d <= 3.max(wanted.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn all_paths(table: &Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (key, value) in table {
        prefix.push(key.clone());
        out.push(prefix.clone());
        if let Value::Table(sub) = value {
            all_paths(sub, prefix, out);
        }
        prefix.pop();
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
