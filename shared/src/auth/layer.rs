//! [`Auth`]: the one middleware in front of every admin route group.
//!
//! ```ignore
//! let admin = auth.require(Role::Operator, Router::new().route("/admin/snapshot", post(snapshot)));
//! ```
//! A request first needs `Authorization: Bearer <token>` with a token the [`Verifier`] accepts
//! (else 401), then a role at least the group's (else 403), then a body of at most
//! [`ADMIN_BODY_LIMIT`] (else 413). Every refusal has a JSON body `{"error": "<reason>"}`.
//! Without a configured key every admin route answers 401 with [`NOT_CONFIGURED`]: admin routes
//! are never open by default. The accepted [`Claims`] are in the request's extensions.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::{Json, Router};
use serde_json::json;

use super::{AuthError, Claims, Role, Verifier};
use crate::config::AuthConfig;

/// Largest request body an admin route accepts, bytes (1 MiB).
pub const ADMIN_BODY_LIMIT: usize = 1024 * 1024;

/// The 401 reason while no key is configured.
pub const NOT_CONFIGURED: &str = "admin API authentication is not configured: set auth.jwt_hs256_secret_file \
     (a file with an HS256 secret of at least 32 bytes) or auth.jwt_public_key_file (an EdDSA/RS256 public key, \
     PEM) in [auth], restart, and mint a token with `chronik-server admin token --role viewer --config FILE`";

/// The verifier of a process's admin routes, or the fact that none is configured.
#[derive(Debug, Clone)]
pub struct Auth {
    verifier: Option<Arc<Verifier>>,
}

impl Auth {
    pub fn new(verifier: Verifier) -> Auth {
        Auth { verifier: Some(Arc::new(verifier)) }
    }

    /// Every admin route answers 401 [`NOT_CONFIGURED`].
    pub fn not_configured() -> Auth {
        Auth { verifier: None }
    }

    /// From `[auth]`: no key gives [`Auth::not_configured`]; an unreadable key is an error.
    pub fn from_config(cfg: &AuthConfig) -> Result<Auth, AuthError> {
        Ok(Auth { verifier: Verifier::from_config(cfg)?.map(Arc::new) })
    }

    pub fn is_configured(&self) -> bool {
        self.verifier.is_some()
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_deref()
    }

    /// `router`'s routes, each answered only for a token of at least `role`, with bodies of at
    /// most [`ADMIN_BODY_LIMIT`]. Layers apply to the routes already in `router`, so add routes
    /// first; unknown paths stay 404.
    pub fn require<S>(&self, role: Role, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router
            .route_layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
            .route_layer(middleware::from_fn_with_state(Gate { auth: self.clone(), role }, gate))
    }

    /// As [`Auth::require`], for one path's method router: one path can then serve methods of
    /// different roles (`GET /admin/topics` for viewers, `POST` for operators).
    pub fn require_method<S>(&self, role: Role, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        route
            .route_layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
            .route_layer(middleware::from_fn_with_state(Gate { auth: self.clone(), role }, gate))
    }

    /// The claims of the request whose headers are `headers`, if they allow `role`.
    pub fn check(&self, headers: &HeaderMap, role: Role) -> Result<Claims, Rejection> {
        let verifier = self.verifier.as_deref().ok_or_else(|| Rejection::Unauthorized(NOT_CONFIGURED.into()))?;
        let token = bearer_token(headers)?;
        let claims = verifier.verify(token).map_err(|e| Rejection::Unauthorized(e.0))?;
        if claims.role < role {
            return Err(Rejection::Forbidden { have: claims.role, need: role });
        }
        Ok(claims)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 401: no usable token (the reason says which part failed).
    Unauthorized(String),
    /// 403: a valid token whose role is below the route group's.
    Forbidden { have: Role, need: Role },
    /// 413: the declared body is over [`ADMIN_BODY_LIMIT`].
    TooLarge(u64),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Rejection::Unauthorized(reason) => (StatusCode::UNAUTHORIZED, reason),
            Rejection::Forbidden { have, need } => {
                (StatusCode::FORBIDDEN, format!("this route needs the {need} role; the token's role is {have}"))
            }
            Rejection::TooLarge(len) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is {len} bytes; admin routes accept at most {ADMIN_BODY_LIMIT}"),
            ),
        };
        let mut resp = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[derive(Clone)]
struct Gate {
    auth: Auth,
    role: Role,
}

async fn gate(State(g): State<Gate>, mut req: Request, next: Next) -> Response {
    let claims = match g.auth.check(req.headers(), g.role) {
        Ok(c) => c,
        Err(r) => {
            tracing::debug!(target: "chronik_server", "admin request {} {} refused: {r:?}", req.method(), req.uri().path());
            return r.into_response();
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > ADMIN_BODY_LIMIT as u64) {
        return Rejection::TooLarge(len).into_response();
    }
    req.extensions_mut().insert(claims);
    next.run(req).await
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(headers: &HeaderMap) -> Result<&str, Rejection> {
    let usage = "send `Authorization: Bearer <token>` (mint one with `chronik-server admin token --role viewer`)";
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| Rejection::Unauthorized(format!("missing Authorization header; {usage}")))?;
    let garbled = || Rejection::Unauthorized(format!("the Authorization header is not a bearer token; {usage}"));
    let value = value.to_str().map_err(|_| garbled())?.trim();
    let (scheme, token) = value.split_once(' ').ok_or_else(garbled)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(char::is_whitespace) {
        return Err(garbled());
    }
    Ok(token)
}
