//! The keys of `[auth]`: a [`Verifier`] for every process that serves admin routes, a [`Signer`]
//! where tokens are minted (`chronik-server admin token`, standalone's `admin.token`, tests).
//!
//! The algorithm comes from the key, never from the token: an HS256 secret accepts only HS256,
//! an Ed25519 public key only EdDSA, an RSA public key only RS256. A token whose header names
//! anything else (`none`, or HS256 "signed" with the public key) is refused before its
//! signature is looked at.

use std::fmt;
use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;

use super::{AuthError, Claims, Role};
use crate::config::AuthConfig;

const SECRET_KEY: &str = "auth.jwt_hs256_secret_file";
const PUBLIC_KEY: &str = "auth.jwt_public_key_file";
const PRIVATE_KEY: &str = "--private-key-file";

/// Shortest HS256 secret accepted, bytes (RFC 7518 §3.2: at least the hash's size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Clock skew allowed on `exp` and `nbf`, seconds.
const LEEWAY_SECS: u64 = 30;
/// Smallest RSA modulus accepted, bits.
const MIN_RSA_BITS: usize = 2048;

/// Checks tokens against the configured key, issuer and audience.
pub struct Verifier {
    key: DecodingKey,
    alg: Algorithm,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("alg", &self.alg).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// Why a token was refused; the text is what the 401 body says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

/// The payload as read before the role is checked: every field optional, so a missing or odd
/// `role` is reported as such rather than as a malformed token.
#[derive(serde::Deserialize)]
struct RawClaims {
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
}

impl Verifier {
    /// The verifier `[auth]` describes; `None` when it names no key at all. A key file that
    /// cannot be read or parsed is an error naming the config key and the file.
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Verifier>, AuthError> {
        if let Some(path) = &cfg.jwt_hs256_secret_file {
            let secret = read_secret(path)?;
            return Ok(Some(Verifier::hs256(&secret, cfg)));
        }
        if let Some(path) = &cfg.jwt_public_key_file {
            let pem = read_file(PUBLIC_KEY, path)?;
            let (key, alg) = parse_public_key(&pem).map_err(|reason| AuthError::KeyParse {
                key: PUBLIC_KEY,
                path: path.clone(),
                reason,
            })?;
            return Ok(Some(Verifier::new(key, alg, cfg)));
        }
        Ok(None)
    }

    /// A verifier for an HS256 `secret` (as read from the secret file).
    pub fn hs256(secret: &[u8], cfg: &AuthConfig) -> Verifier {
        Verifier::new(DecodingKey::from_secret(secret), Algorithm::HS256, cfg)
    }

    fn new(key: DecodingKey, alg: Algorithm, cfg: &AuthConfig) -> Verifier {
        let mut validation = Validation::new(alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Verifier { key, alg, validation, issuer: cfg.issuer.clone(), audience: cfg.audience.clone() }
    }

    /// The one algorithm this verifier accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The token's claims if it is signed with this key, unexpired, for this issuer and
    /// audience, and carries a known role.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|e| TokenError(self.reason(e.kind())))?;
        let role = match data.claims.role {
            Some(serde_json::Value::String(r)) => r.parse::<Role>().ok(),
            _ => None,
        }
        .ok_or_else(|| TokenError("the token has no valid role claim (viewer, operator or admin)".into()))?;
        let sub = data.claims.sub.and_then(|s| s.as_str().map(str::to_string));
        let exp = data.claims.exp.and_then(|e| e.as_u64()).unwrap_or(0);
        Ok(Claims { role, sub, exp })
    }

    fn reason(&self, kind: &ErrorKind) -> String {
        let alg = self.alg;
        match kind {
            ErrorKind::InvalidSignature => "bad signature: the token was not signed with this server's key".into(),
            ErrorKind::ExpiredSignature => "the token has expired (exp is in the past); mint a new one".into(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf is in the future)".into(),
            ErrorKind::InvalidIssuer => format!("wrong issuer (iss); this server expects {:?}", self.issuer),
            ErrorKind::InvalidAudience => format!("wrong audience (aud); this server expects {:?}", self.audience),
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
            ErrorKind::InvalidClaimFormat(c) => format!("the token's {c} claim has the wrong type"),
            ErrorKind::InvalidAlgorithm => {
                format!("the token's algorithm is not accepted; this server accepts only {alg:?}")
            }
            _ => format!("malformed token: not a JWT with an accepted algorithm ({alg:?})"),
        }
    }
}

/// Signs tokens: with the HS256 secret of `[auth]`, or with an EdDSA/RS256 private key.
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
    issuer: String,
    audience: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Signer {
    /// The HS256 signer `[auth]` describes. A public key cannot sign ([`AuthError::NeedPrivateKey`]);
    /// no key at all is [`AuthError::NoKey`].
    pub fn from_config(cfg: &AuthConfig) -> Result<Signer, AuthError> {
        if let Some(path) = &cfg.jwt_hs256_secret_file {
            return Ok(Signer::hs256(&read_secret(path)?, cfg));
        }
        if let Some(path) = &cfg.jwt_public_key_file {
            return Err(AuthError::NeedPrivateKey { path: path.clone() });
        }
        Err(AuthError::NoKey)
    }

    pub fn hs256(secret: &[u8], cfg: &AuthConfig) -> Signer {
        Signer {
            key: EncodingKey::from_secret(secret),
            alg: Algorithm::HS256,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        }
    }

    /// A signer for an Ed25519 (EdDSA) or RSA (RS256) private key in PEM form (PKCS#8, or PKCS#1
    /// for RSA). The key is tried once, so a damaged key fails here rather than at first use.
    pub fn from_private_key_file(path: &Path, cfg: &AuthConfig) -> Result<Signer, AuthError> {
        let pem = read_file(PRIVATE_KEY, path)?;
        let parse = |reason: String| AuthError::KeyParse { key: PRIVATE_KEY, path: path.to_path_buf(), reason };
        let (key, alg) = if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
            (k, Algorithm::EdDSA)
        } else if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
            (k, Algorithm::RS256)
        } else {
            return Err(parse(
                "not an Ed25519 or RSA private key in PEM form (expected -----BEGIN PRIVATE KEY----- \
                 or -----BEGIN RSA PRIVATE KEY-----)"
                    .into(),
            ));
        };
        let signer = Signer { key, alg, issuer: cfg.issuer.clone(), audience: cfg.audience.clone() };
        jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({}), &signer.key)
            .map_err(|e| parse(format!("cannot sign with it ({e}); is it a private key?")))?;
        Ok(signer)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key).map_err(|e| AuthError::Sign(e.to_string()))
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::KeyRead { key, path: path.to_path_buf(), source })
}

/// The HS256 secret: the file's bytes without one trailing newline, at least
/// [`MIN_SECRET_BYTES`] long.
pub(crate) fn read_secret(path: &Path) -> Result<Vec<u8>, AuthError> {
    let mut secret = read_file(SECRET_KEY, path)?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthError::KeyParse {
            key: SECRET_KEY,
            path: path.to_path_buf(),
            reason: format!(
                "the secret is {} bytes; at least {MIN_SECRET_BYTES} are needed (create one with \
                 `openssl rand -hex 32 > {}`)",
                secret.len(),
                path.display()
            ),
        });
    }
    Ok(secret)
}

/// An Ed25519 or RSA public key in PEM form, and the one algorithm it verifies.
fn parse_public_key(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;

    if String::from_utf8_lossy(pem).contains("PRIVATE KEY-----") {
        return Err("it holds a private key; give the public key instead \
                    (`openssl pkey -in private.pem -pubout -out public.pem`)"
            .into());
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        if len != 32 {
            return Err(format!("the Ed25519 public key is {len} bytes instead of 32"));
        }
        return Ok((key, Algorithm::EdDSA));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        let der = key.try_get_as_bytes().map_err(|e| format!("damaged RSA public key: {e}"))?;
        let rsa = rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|e| format!("damaged RSA public key: {e}"))?;
        let bits = rsa.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
        }
        return Ok((key, Algorithm::RS256));
    }
    if DecodingKey::from_ec_pem(pem).is_ok() {
        return Err("it is an ECDSA key; only Ed25519 (EdDSA) and RSA (RS256) keys are supported".into());
    }
    Err("not an Ed25519 or RSA public key in PEM form (expected -----BEGIN PUBLIC KEY-----)".into())
}
