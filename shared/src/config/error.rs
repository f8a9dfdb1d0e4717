//! [`ConfigError`]: every message names the key (or the file) and says how to fix it.

use std::fmt;
use std::path::PathBuf;

/// Where a config value came from, so an error can point the operator at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// Built-in defaults.
    Default,
    /// The TOML file, with the 1-based line when known.
    File { path: PathBuf, line: Option<usize> },
    /// An environment variable.
    Env { var: String },
    /// A command-line override (`dotted.key=value`).
    Override { key: String },
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::Default => write!(f, "in the built-in defaults"),
            ConfigOrigin::File { path, line: None } => write!(f, "in {}", path.display()),
            ConfigOrigin::File { path, line: Some(line) } => write!(f, "in {} line {line}", path.display()),
            ConfigOrigin::Env { var } => write!(f, "from environment variable {var}"),
            ConfigOrigin::Override { key } => write!(f, "from command-line override `{key}`"),
        }
    }
}

/// A configuration that cannot be used. The `Display` text is meant for the operator: it names
/// the key, variable or file at fault and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "config file {} does not exist; create it (examples in deploy/config/*.toml) or start without --config to use the defaults",
        path.display()
    )]
    FileNotFound { path: PathBuf },

    #[error("cannot read config file {}: {source}; check the path and its permissions", path.display())]
    FileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "TOML syntax error in {} at line {line}, column {column}: {message}; fix the file (see deploy/config/*.toml for the expected shape)",
        path.display()
    )]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },

    #[error("unknown key `{key}` {origin}; {hint}")]
    UnknownKey { key: String, origin: ConfigOrigin, hint: String },

    #[error("unknown config environment variable {var}: {hint}")]
    UnknownEnvVar { var: String, hint: String },

    /// A value that does not fit its key's type or format; `hint` shows the expected form.
    #[error("{key}: {message} ({origin}); {hint}")]
    InvalidValue { key: String, origin: ConfigOrigin, message: String, hint: String },

    /// A rule of [`ChronikConfig::validate`](super::ChronikConfig::validate) is broken; `message`
    /// starts with the key(s) involved and ends with the fix.
    #[error("{message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// The dotted config key (or env var / file) the error is about.
    pub fn key(&self) -> String {
        match self {
            ConfigError::FileNotFound { path }
            | ConfigError::FileRead { path, .. }
            | ConfigError::Syntax { path, .. } => path.display().to_string(),
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Invalid { key, .. } => key.clone(),
            ConfigError::UnknownEnvVar { var, .. } => var.clone(),
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { key: key.into(), message: message.into() }
    }
}
