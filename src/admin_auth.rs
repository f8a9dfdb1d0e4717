//! Which key guards a process's admin routes (design §6).
//!
//! A role (`control`, `data`, `gateway`) uses the key `[auth]` names, or none: then its admin
//! routes answer 401 saying how to configure one. Standalone with no key in `[auth]` makes its
//! own on first start and hands the operator a token:
//!
//! - `data_dir/auth/hs256.secret` (0600, directory 0700): 32 random bytes, hex-encoded; kept
//!   across restarts, so tokens stay valid.
//! - `data_dir/admin.token` (0600): an `admin` token valid for [`STANDALONE_TOKEN_TTL`], written
//!   when missing (delete it and restart to get a new one).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chronik_shared::auth::{self, Auth, AuthError, Role, Signer};
use chronik_shared::config::ChronikConfig;

/// Standalone's own HS256 secret, under `data_dir`.
pub const SECRET_FILE: &str = "auth/hs256.secret";
/// Standalone's admin token, under `data_dir`.
pub const TOKEN_FILE: &str = "admin.token";
/// How long standalone's admin token is valid.
pub const STANDALONE_TOKEN_TTL: Duration = Duration::from_secs(365 * 86_400);

/// Why standalone could not set up its own key or token.
#[derive(Debug, thiserror::Error)]
pub enum LocalAuthError {
    #[error("cannot write {}: {source}; check that node.data_dir is writable by this user", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read random bytes for the admin API secret from /dev/urandom: {0}")]
    Random(#[source] std::io::Error),

    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// The auth of one role: `[auth]`'s key, or "not configured" (logged once, with the fix).
pub fn role_auth(cfg: &ChronikConfig) -> Result<Auth, AuthError> {
    let auth = Auth::from_config(&cfg.auth)?;
    if !auth.is_configured() {
        tracing::warn!(target: "chronik_server", "admin API: every /admin route answers 401 until a key is set; {}", auth::NOT_CONFIGURED);
    }
    Ok(auth)
}

/// Standalone's auth, and where its admin token is when it made its own key.
pub fn standalone_auth(cfg: &ChronikConfig) -> Result<(Auth, Option<PathBuf>), LocalAuthError> {
    if cfg.auth.jwt_hs256_secret_file.is_some() || cfg.auth.jwt_public_key_file.is_some() {
        return Ok((Auth::from_config(&cfg.auth)?, None));
    }
    let data_dir = &cfg.node.data_dir;
    let secret_path = data_dir.join(SECRET_FILE);
    if !secret_path.exists() {
        create_secret(&secret_path)?;
    }
    let local = chronik_shared::config::AuthConfig { jwt_hs256_secret_file: Some(secret_path), ..cfg.auth.clone() };
    let auth = Auth::from_config(&local)?;
    let token_path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&token_path) {
        Ok(token) => {
            if let Some(Err(e)) = auth.verifier().map(|v| v.verify(token.trim())) {
                tracing::warn!(target: "chronik_server", "{} is no longer accepted ({e}); delete it and restart to get a new one", token_path.display());
            }
        }
        Err(_) => {
            let token = auth::mint(&Signer::from_config(&local)?, Role::Admin, STANDALONE_TOKEN_TTL)?;
            write_private(&token_path, format!("{token}\n").as_bytes())?;
        }
    }
    Ok((auth, Some(token_path)))
}

fn create_secret(path: &Path) -> Result<(), LocalAuthError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(LocalAuthError::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(|source| LocalAuthError::Write { path: dir.to_path_buf(), source })?;
    }
    write_private(path, hex.as_bytes())
}

/// Creates `dir` with mode 0700 (its parents, such as `data_dir`, with the usual mode).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Writes `body` to `path` with mode 0600: into a temporary file, synced, then renamed.
fn write_private(path: &Path, body: &[u8]) -> Result<(), LocalAuthError> {
    let err = |source| LocalAuthError::Write { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(err)?;
    // A leftover temporary file keeps its old mode; make sure it is 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    file.write_all(body).and_then(|()| file.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
