//! JWT authentication of the admin REST API (design §6).
//!
//! - `mod.rs`: [`Role`] (`viewer` < `operator` < `admin`), the [`Claims`] a request carries once
//!   its token is accepted, [`mint`] and [`parse_ttl`], and [`AuthError`] (startup and minting).
//! - `keys.rs`: [`Verifier`] and [`Signer`], built from `[auth]` (an HS256 secret file, or an
//!   EdDSA/RS256 public key with its private key only where tokens are minted). The algorithm is
//!   pinned from the key, so `alg: none` and algorithm confusion are refused.
//! - `layer.rs`: [`Auth`] and [`Auth::require`], the one middleware every admin route group goes
//!   through: `Authorization: Bearer <token>`, 401/403 with a JSON `{"error": ...}` body, and the
//!   1 MiB body limit ([`ADMIN_BODY_LIMIT`]).
//!
//! A token's payload: `role`, `exp`, `iss` and `aud` are required, `iss`/`aud` must equal
//! `auth.issuer`/`auth.audience`; `nbf` is checked when present; 30 s of clock skew is allowed.

mod keys;
mod layer;

#[cfg(test)]
mod tests;

pub use keys::{Signer, Verifier};
pub use layer::{ADMIN_BODY_LIMIT, Auth, NOT_CONFIGURED};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a token allows, each role including the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: node info, cluster views, metrics-like endpoints.
    Viewer,
    /// Day-to-day operations: snapshots, leader transfers, profiling.
    Operator,
    /// Everything, including membership changes.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `"root"` is not a role: displays as `unknown role "root"; expected viewer, operator or admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; expected viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim()).ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// What an accepted token says; the middleware puts it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub role: Role,
    pub sub: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// The payload [`mint`] signs.
#[derive(Debug, Serialize)]
pub(crate) struct MintedClaims<'a> {
    pub sub: &'a str,
    pub role: Role,
    pub iss: &'a str,
    pub aud: &'a str,
    pub iat: u64,
    pub exp: u64,
}

/// Why auth cannot start, or a token cannot be minted. Each message names the config key or
/// file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {key} {}: {source}; check the path and that this user may read it", path.display())]
    KeyRead {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{key} {} is not usable: {reason}", path.display())]
    KeyParse { key: &'static str, path: PathBuf, reason: String },

    #[error(
        "no key to sign admin tokens with: set auth.jwt_hs256_secret_file in [auth] to a file of at \
         least 32 random bytes (e.g. made with `openssl rand -hex 32 > /etc/chronik/jwt.secret`) and \
         pass that config with --config"
    )]
    NoKey,

    #[error(
        "auth.jwt_public_key_file {} is a public key, which can only verify tokens; pass \
         --private-key-file with the matching EdDSA/RS256 private key (PEM) to sign one",
        path.display()
    )]
    NeedPrivateKey { path: PathBuf },

    #[error("cannot sign the token: {0}")]
    Sign(String),

    #[error("the token just minted does not verify with the configured key: {0}")]
    SelfCheck(String),
}

/// `sub` of tokens minted by [`mint`].
pub const MINTED_SUBJECT: &str = "chronik-admin-token";

/// A token for `role`, valid for `ttl` from now, signed by `signer` with its `iss`/`aud`.
pub fn mint(signer: &Signer, role: Role, ttl: Duration) -> Result<String, AuthError> {
    let iat = unix_now();
    let claims = MintedClaims {
        sub: MINTED_SUBJECT,
        role,
        iss: signer.issuer(),
        aud: signer.audience(),
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
    };
    signer.sign(&claims)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The longest `--ttl` accepted: ten years.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Why a `--ttl` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ttl {value:?}: {reason}; write a positive number with a unit s, m, h or d, e.g. 30m, 1h, 7d")]
pub struct TtlError {
    pub value: String,
    pub reason: &'static str,
}

/// Parses a token lifetime such as `90s`, `30m`, `1h` or `7d` (at most [`MAX_TTL`]).
pub fn parse_ttl(s: &str) -> Result<Duration, TtlError> {
    let err = |reason| TtlError { value: s.to_string(), reason };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| err("the unit is missing"))?;
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err("the number is missing or too large"))?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err("unknown unit")),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(|| err("too long"))?;
    if secs == 0 {
        return Err(err("it must be positive"));
    }
    if secs > MAX_TTL.as_secs() {
        return Err(err("it must be at most 3650d"));
    }
    Ok(Duration::from_secs(secs))
}
