//! Auth tests: key loading, tokens, and the middleware answering over a real socket.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::AuthConfig;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
/// `{"alg":"none","typ":"JWT"}` . `{"role":"admin","iss":"chronik","aud":"chronik-admin","exp":4102444800}` . (no signature)
const ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.\
     eyJyb2xlIjoiYWRtaW4iLCJpc3MiOiJjaHJvbmlrIiwiYXVkIjoiY2hyb25pay1hZG1pbiIsImV4cCI6NDEwMjQ0NDgwMH0.";

const ED_PRIVATE: &str = include_str!("testdata/ed25519.pem");
const ED_PUBLIC: &str = include_str!("testdata/ed25519.pub.pem");
const RSA_PRIVATE: &str = include_str!("testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa.pub.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec.pub.pem");

fn cfg() -> AuthConfig {
    AuthConfig::default()
}

fn hs256() -> (Auth, Signer) {
    (Auth::new(Verifier::hs256(SECRET, &cfg())), Signer::hs256(SECRET, &cfg()))
}

fn token(signer: &Signer, role: Role) -> String {
    mint(signer, role, Duration::from_secs(3600)).expect("mint")
}

fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write key file");
    p
}

/// `/admin/view` needs viewer, `/admin/op` (POST, echoes the body's length) needs operator.
fn app(auth: &Auth) -> Router {
    let viewer = auth.require(Role::Viewer, Router::new().route("/admin/view", get(|| async { "seen" })));
    let operator = auth.require(
        Role::Operator,
        Router::new().route("/admin/op", post(|body: Bytes| async move { body.len().to_string() })),
    );
    Router::new().route("/health", get(|| async { "open" })).merge(viewer).merge(operator)
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// One HTTP/1.1 request over a fresh connection: (status, body). `body` is sent as is after
/// `headers`, while the response is read, so a server that answers early is seen.
async fn request(addr: SocketAddr, head: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{head} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).await.expect("write head");
    let (mut rd, mut wr) = sock.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&body).await;
        wr
    });
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            Err(e) if resp.is_empty() => panic!("no response: {e}"),
            Err(_) => break,
        }
    }
    drop(writer.await);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn get_with(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("Authorization", *a)).collect();
    request(addr, &format!("GET {path}"), &headers, Vec::new()).await
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no error field: {body}")).to_string()
}

#[tokio::test]
async fn tokens_are_checked_over_http() {
    let (auth, signer) = hs256();
    let addr = serve(app(&auth)).await;
    let bearer = |t: &str| format!("Bearer {t}");

    assert_eq!(get_with(addr, "/health", None).await.0, 200, "/health stays open");

    let (status, body) = get_with(addr, "/admin/view", None).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("missing Authorization"), "{body}");

    for garbled in ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "token-without-scheme"] {
        let (status, body) = get_with(addr, "/admin/view", Some(garbled)).await;
        assert_eq!(status, 401, "{garbled}");
        assert!(error_of(&body).contains("not a bearer token"), "{garbled}: {body}");
    }
    let (status, body) = get_with(addr, "/admin/view", Some("Bearer not.a.jwt")).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("malformed"), "{body}");

    let expired = signer
        .sign(&MintedClaims {
            sub: "t",
            role: Role::Admin,
            iss: "chronik",
            aud: "chronik-admin",
            iat: unix_now() - 7200,
            exp: unix_now() - 3600,
        })
        .expect("sign");
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&expired))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("expired"), "{body}");

    let other_key = Signer::hs256(b"another-secret-of-at-least-32-bytes!!", &cfg());
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&token(&other_key, Role::Admin)))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("bad signature"), "{body}");

    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(ALG_NONE))).await;
    assert_eq!(status, 401, "alg none: {body}");
    assert!(error_of(&body).contains("malformed token"), "{body}");
    // The same payload with the HS256 header and no signature is still refused.
    let unsigned = ALG_NONE.replacen("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", 1);
    assert_eq!(get_with(addr, "/admin/view", Some(&bearer(&unsigned))).await.0, 401);

    let wrong_iss = Signer::hs256(SECRET, &AuthConfig { issuer: "someone-else".into(), ..cfg() });
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&token(&wrong_iss, Role::Admin)))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("issuer"), "{body}");

    let wrong_aud = Signer::hs256(SECRET, &AuthConfig { audience: "another-api".into(), ..cfg() });
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&token(&wrong_aud, Role::Admin)))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("audience"), "{body}");

    #[derive(serde::Serialize)]
    struct NoExp<'a> {
        role: &'a str,
        iss: &'a str,
        aud: &'a str,
    }
    let no_exp = signer.sign(&NoExp { role: "admin", iss: "chronik", aud: "chronik-admin" }).expect("sign");
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&no_exp))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("exp"), "{body}");

    #[derive(serde::Serialize)]
    struct OddRole<'a> {
        role: &'a str,
        iss: &'a str,
        aud: &'a str,
        exp: u64,
    }
    let root = signer.sign(&OddRole { role: "root", iss: "chronik", aud: "chronik-admin", exp: unix_now() + 60 });
    let (status, body) = get_with(addr, "/admin/view", Some(&bearer(&root.expect("sign")))).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("role"), "{body}");

    // Roles: viewer may view but not operate; operator and admin may both.
    let viewer = bearer(&token(&signer, Role::Viewer));
    assert_eq!(get_with(addr, "/admin/view", Some(&viewer)).await, (200, "seen".to_string()));
    let post = |auth: String, body: Vec<u8>| async move {
        let len = body.len().to_string();
        request(addr, "POST /admin/op", &[("Authorization", &auth), ("Content-Length", &len)], body).await
    };
    let (status, body) = post(viewer.clone(), b"x".to_vec()).await;
    assert_eq!(status, 403);
    assert!(error_of(&body).contains("needs the operator role"), "{body}");
    assert_eq!(post(bearer(&token(&signer, Role::Operator)), b"abc".to_vec()).await, (200, "3".to_string()));
    let admin = bearer(&token(&signer, Role::Admin));
    assert_eq!(post(admin.clone(), vec![7; ADMIN_BODY_LIMIT]).await, (200, ADMIN_BODY_LIMIT.to_string()));
    assert_eq!(get_with(addr, "/admin/view", Some(&admin)).await.0, 200);
    // The scheme is case-insensitive.
    assert_eq!(get_with(addr, "/admin/view", Some(&admin.replacen("Bearer", "bearer", 1))).await.0, 200);

    // Bodies over 1 MiB: refused from Content-Length, and while reading a chunked body.
    let (status, body) = post(admin.clone(), vec![7; ADMIN_BODY_LIMIT + 1]).await;
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("at most 1048576"), "{body}");
    let mut chunked = Vec::new();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b'c'; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let headers = [("Authorization", admin.as_str()), ("Transfer-Encoding", "chunked")];
    assert_eq!(request(addr, "POST /admin/op", &headers, chunked).await.0, 413);
    // An unauthenticated huge body is refused as unauthenticated, before anything is read.
    let len = (ADMIN_BODY_LIMIT * 2).to_string();
    assert_eq!(request(addr, "POST /admin/op", &[("Content-Length", &len)], Vec::new()).await.0, 401);
}

#[tokio::test]
async fn without_a_key_admin_routes_say_how_to_configure_auth() {
    let auth = Auth::not_configured();
    let status = crate::http::NodeStatus::new(1, vec!["control"]);
    let addr = serve(crate::admin::router(crate::admin::AdminApi::new(status), &auth)).await;
    assert_eq!(get_with(addr, "/health", None).await.0, 200);
    assert_eq!(get_with(addr, "/metrics", None).await.0, 200);
    let some_token = token(&Signer::hs256(SECRET, &cfg()), Role::Admin);
    for authorization in [None, Some(format!("Bearer {some_token}"))] {
        let (status, body) = get_with(addr, "/admin/node/info", authorization.as_deref()).await;
        assert_eq!(status, 401);
        let error = error_of(&body);
        assert!(error.contains("not configured") && error.contains("auth.jwt_hs256_secret_file"), "{error}");
    }
}

#[tokio::test]
async fn node_info_needs_a_viewer_token() {
    let (auth, signer) = hs256();
    let status = crate::http::NodeStatus::new(7, vec!["data"]);
    let addr = serve(crate::admin::router(crate::admin::AdminApi::new(status), &auth)).await;
    assert_eq!(get_with(addr, "/admin/node/info", None).await.0, 401);
    let (code, body) =
        get_with(addr, "/admin/node/info", Some(&format!("Bearer {}", token(&signer, Role::Viewer)))).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["node_id"], 7);
}

#[test]
fn asymmetric_keys_pin_their_algorithm() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (private, public, alg) in [
        (ED_PRIVATE, ED_PUBLIC, jsonwebtoken::Algorithm::EdDSA),
        (RSA_PRIVATE, RSA_PUBLIC, jsonwebtoken::Algorithm::RS256),
    ] {
        let public_file = write(dir.path(), "public.pem", public.as_bytes());
        let private_file = write(dir.path(), "private.pem", private.as_bytes());
        let config = AuthConfig { jwt_public_key_file: Some(public_file), ..cfg() };
        let verifier = Verifier::from_config(&config).expect("load").expect("configured");
        assert_eq!(verifier.algorithm(), alg);
        let signer = Signer::from_private_key_file(&private_file, &config).expect("private key");
        assert_eq!(signer.algorithm(), alg);
        let claims = verifier.verify(&token(&signer, Role::Operator)).expect("verifies");
        assert_eq!((claims.role, claims.sub.as_deref()), (Role::Operator, Some(MINTED_SUBJECT)));
        assert!(claims.exp.abs_diff(unix_now() + 3600) <= 5, "exp {} is about an hour away", claims.exp);

        // Algorithm confusion: HS256 "signed" with the public key's bytes, and alg none.
        let confused = token(&Signer::hs256(public.as_bytes(), &cfg()), Role::Admin);
        let err = verifier.verify(&confused).expect_err("HS256 with the public key");
        assert!(err.0.contains("not accepted"), "{err}");
        assert!(verifier.verify(ALG_NONE).is_err());
        // The configured key cannot sign: the CLI must be given the private key.
        assert!(matches!(Signer::from_config(&config), Err(AuthError::NeedPrivateKey { .. })));
    }
    // An Ed25519 token does not pass the RSA verifier.
    let rsa_cfg =
        AuthConfig { jwt_public_key_file: Some(write(dir.path(), "rsa.pub", RSA_PUBLIC.as_bytes())), ..cfg() };
    let rsa = Verifier::from_config(&rsa_cfg).expect("load").expect("configured");
    let ed = Signer::from_private_key_file(&write(dir.path(), "ed.pem", ED_PRIVATE.as_bytes()), &cfg()).expect("ed");
    assert!(rsa.verify(&token(&ed, Role::Admin)).is_err());
}

#[test]
fn unusable_keys_are_startup_errors_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.secret");
    let err = Auth::from_config(&AuthConfig { jwt_hs256_secret_file: Some(missing.clone()), ..cfg() })
        .expect_err("missing file");
    let msg = err.to_string();
    assert!(msg.contains("auth.jwt_hs256_secret_file") && msg.contains(&*missing.to_string_lossy()), "{msg}");

    let short = write(dir.path(), "short.secret", b"tooshort\n");
    let msg = Auth::from_config(&AuthConfig { jwt_hs256_secret_file: Some(short), ..cfg() })
        .expect_err("short secret")
        .to_string();
    assert!(msg.contains("auth.jwt_hs256_secret_file") && msg.contains("at least 32"), "{msg}");

    for (name, body, expect) in [
        ("garbage.pem", "hello".to_string(), "not an Ed25519 or RSA public key"),
        ("private.pem", ED_PRIVATE.to_string(), "private key"),
        ("rsa-private.pem", RSA_PRIVATE.to_string(), "private key"),
        ("ec.pem", EC_PUBLIC.to_string(), "ECDSA"),
        ("damaged.pem", RSA_PUBLIC.replacen("MIIB", "MIIC", 1), "public key"),
    ] {
        let path = write(dir.path(), name, body.as_bytes());
        let msg =
            Auth::from_config(&AuthConfig { jwt_public_key_file: Some(path), ..cfg() }).expect_err(name).to_string();
        assert!(msg.contains("auth.jwt_public_key_file") && msg.contains(name) && msg.contains(expect), "{msg}");
    }

    let public_as_private = write(dir.path(), "pub-as-private.pem", ED_PUBLIC.as_bytes());
    let msg = Signer::from_private_key_file(&public_as_private, &cfg()).expect_err("public key").to_string();
    assert!(msg.contains("--private-key-file") && msg.contains("pub-as-private.pem"), "{msg}");

    assert!(matches!(Signer::from_config(&cfg()), Err(AuthError::NoKey)));
    assert!(!Auth::from_config(&cfg()).expect("no key is not an error").is_configured());
}

#[test]
fn secret_file_trailing_newline_is_not_part_of_the_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let config =
        AuthConfig { jwt_hs256_secret_file: Some(write(dir.path(), "s", format!("{hex}\n").as_bytes())), ..cfg() };
    let signer = Signer::from_config(&config).expect("signer");
    let verifier = Verifier::hs256(hex.as_bytes(), &cfg());
    assert_eq!(verifier.verify(&token(&signer, Role::Viewer)).expect("same secret").role, Role::Viewer);
}

#[test]
fn roles_are_ordered_and_parsed() {
    assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>(), Ok(r));
    }
    let err = "root".parse::<Role>().expect_err("not a role").to_string();
    assert!(err.contains("\"root\"") && err.contains("viewer, operator or admin"), "{err}");
}

#[test]
fn ttls_parse_with_units() {
    assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in ["", "1", "h", "0h", "1w", "-1h", "1.5h", "99999999999999999999d", "3651d"] {
        let err = parse_ttl(bad).expect_err(bad).to_string();
        assert!(err.contains("e.g. 30m, 1h, 7d"), "{bad}: {err}");
    }
}
