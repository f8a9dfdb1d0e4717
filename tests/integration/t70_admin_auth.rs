//! Admin API authentication end to end: standalone's own key and `admin.token`, and the
//! `chronik-server admin token` command, checked with HTTP requests over a real socket.

mod harness;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use chronik_server::Standalone;
use chronik_server::admin_auth::{SECRET_FILE, TOKEN_FILE};
use chronik_shared::auth::{Role, Verifier};
use chronik_shared::config::AuthConfig;
use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ED_PRIVATE: &str = include_str!("../../shared/src/auth/testdata/ed25519.pem");
const ED_PUBLIC: &str = include_str!("../../shared/src/auth/testdata/ed25519.pub.pem");

/// `GET path` over a fresh HTTP/1.1 connection: (status, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await.expect("read");
    let status = resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad response {resp:?}"));
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// `chronik-server admin token ...`: (success, stdout, stderr).
fn cli_token(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chronik-server"))
        .args(["admin", "token"])
        .args(args)
        .env_remove("CHRONIK_AUTH__JWT_HS256_SECRET_FILE")
        .env_remove("CHRONIK_AUTH__JWT_PUBLIC_KEY_FILE")
        .output()
        .expect("run chronik-server");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).trim().to_string();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_makes_its_key_and_an_admin_token_that_opens_node_info() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let node = Standalone::start(standalone_config(&data)).await.expect("start");
    let token_file = data.join(TOKEN_FILE);
    let secret_file = data.join(SECRET_FILE);
    assert_eq!(node.admin_token_file.as_deref(), Some(token_file.as_path()));
    assert_eq!(mode(&token_file), 0o600, "admin.token must be private");
    assert_eq!(mode(&secret_file), 0o600, "the secret must be private");
    assert_eq!(mode(secret_file.parent().expect("auth dir")), 0o700);
    let usual = dir.path().join("usual");
    std::fs::create_dir(&usual).expect("mkdir");
    assert_eq!(mode(&data), mode(&usual), "data_dir itself keeps the usual mode");
    let token = std::fs::read_to_string(&token_file).expect("admin.token").trim().to_string();
    let secret = std::fs::read(&secret_file).expect("secret");

    let (status, body) = get(node.http_addr, "/admin/node/info", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["node_id"], 1);
    let (status, body) = get(node.http_addr, "/admin/node/info", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing Authorization"), "{body}");
    assert_eq!(get(node.http_addr, "/admin/node/info", Some("garbage")).await.0, 401);
    assert_ne!(get(node.http_addr, "/health", None).await.0, 401, "/health stays open");
    assert_eq!(get(node.http_addr, "/metrics", None).await.0, 200, "/metrics stays open");

    // The README's recipe: the CLI signs with standalone's secret; the server accepts it.
    let set = format!("auth.jwt_hs256_secret_file={}", secret_file.display());
    let (ok, viewer, err) = cli_token(&["--role", "viewer", "--ttl", "30m", "--set", &set]);
    assert!(ok, "{err}");
    assert_eq!(get(node.http_addr, "/admin/node/info", Some(&viewer)).await.0, 200);
    node.shutdown().await;

    // A restart keeps the secret and the token; a missing token is written again, and the old
    // one still works (same secret).
    let node = Standalone::start(standalone_config(&data)).await.expect("restart");
    assert_eq!(std::fs::read(&secret_file).expect("secret"), secret, "the secret is reused");
    assert_eq!(std::fs::read_to_string(&token_file).expect("token").trim(), token, "the token is kept");
    node.shutdown().await;
    std::fs::remove_file(&token_file).expect("remove token");
    let node = Standalone::start(standalone_config(&data)).await.expect("restart");
    assert_eq!(mode(&token_file), 0o600);
    let new_token = std::fs::read_to_string(&token_file).expect("rewritten").trim().to_string();
    assert_eq!(get(node.http_addr, "/admin/node/info", Some(&new_token)).await.0, 200);
    assert_eq!(get(node.http_addr, "/admin/node/info", Some(&token)).await.0, 200);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_with_a_configured_key_uses_it_and_writes_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "a-configured-secret-of-more-than-32-bytes\n").expect("secret");
    let data = dir.path().join("data");
    let mut cfg = standalone_config(&data);
    cfg.auth.jwt_hs256_secret_file = Some(secret.clone());
    let node = Standalone::start(cfg).await.expect("start");
    assert!(node.admin_token_file.is_none());
    assert!(!data.join(TOKEN_FILE).exists() && !data.join(SECRET_FILE).exists());
    let set = format!("auth.jwt_hs256_secret_file={}", secret.display());
    let (ok, token, err) = cli_token(&["--role", "admin", "--set", &set]);
    assert!(ok, "{err}");
    assert_eq!(get(node.http_addr, "/admin/node/info", Some(&token)).await.0, 200);
    node.shutdown().await;

    // A key file that cannot be read stops the start, naming the key and the file.
    let mut cfg = standalone_config(&data);
    cfg.auth.jwt_hs256_secret_file = Some(dir.path().join("missing.secret"));
    let err = Standalone::start(cfg).await.err().expect("refused");
    assert!(err.contains("auth.jwt_hs256_secret_file") && err.contains("missing.secret"), "{err}");
}

#[test]
fn admin_token_cli_signs_with_the_configured_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef").expect("secret");
    let config = dir.path().join("chronik.toml");
    let toml = format!("[auth]\njwt_hs256_secret_file = {:?}\nissuer = \"ops\"\n", secret.display().to_string());
    std::fs::write(&config, toml).expect("config");
    let config = config.to_str().expect("utf8");

    let (ok, token, err) = cli_token(&["--role", "operator", "--ttl", "7d", "--config", config]);
    assert!(ok, "{err}");
    let auth_cfg =
        AuthConfig { jwt_hs256_secret_file: Some(secret.clone()), issuer: "ops".into(), ..Default::default() };
    let claims = Verifier::from_config(&auth_cfg).expect("key").expect("configured").verify(&token).expect("verifies");
    assert_eq!(claims.role, Role::Operator);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(claims.exp.abs_diff(now + 7 * 86_400) < 60, "exp {} is about 7 days away", claims.exp);
    // The default issuer does not accept it.
    let default_issuer = AuthConfig { jwt_hs256_secret_file: Some(secret), ..Default::default() };
    assert!(Verifier::from_config(&default_issuer).expect("key").expect("configured").verify(&token).is_err());

    let (ok, _, err) = cli_token(&["--role", "root", "--config", config]);
    assert!(!ok && err.contains("unknown role \"root\"") && err.contains("viewer, operator or admin"), "{err}");
    let (ok, _, err) = cli_token(&["--role", "viewer", "--ttl", "5x", "--config", config]);
    assert!(!ok && err.contains("invalid ttl \"5x\"") && err.contains("e.g. 30m, 1h, 7d"), "{err}");
    let (ok, _, err) = cli_token(&["--role", "viewer"]);
    assert!(!ok && err.contains("no key to sign") && err.contains("auth.jwt_hs256_secret_file"), "{err}");
    let missing = format!("auth.jwt_hs256_secret_file={}", dir.path().join("nope").display());
    let (ok, _, err) = cli_token(&["--role", "viewer", "--set", &missing]);
    assert!(!ok && err.contains("auth.jwt_hs256_secret_file") && err.contains("nope"), "{err}");

    // An EdDSA public key verifies; signing needs the private key.
    let public = dir.path().join("jwt.pub.pem");
    let private = dir.path().join("jwt.pem");
    std::fs::write(&public, ED_PUBLIC).expect("public key");
    std::fs::write(&private, ED_PRIVATE).expect("private key");
    let set_public = format!("auth.jwt_public_key_file={}", public.display());
    let (ok, _, err) = cli_token(&["--role", "viewer", "--set", &set_public]);
    assert!(!ok && err.contains("--private-key-file"), "{err}");
    let private_arg = private.to_str().expect("utf8");
    let (ok, token, err) = cli_token(&["--role", "admin", "--set", &set_public, "--private-key-file", private_arg]);
    assert!(ok, "{err}");
    let ed_cfg = AuthConfig { jwt_public_key_file: Some(public), ..Default::default() };
    let verifier = Verifier::from_config(&ed_cfg).expect("key").expect("configured");
    assert_eq!(verifier.verify(&token).expect("verifies").role, Role::Admin);
    // A private key that does not match the configured public key is caught before printing.
    let (ok, out, err) = cli_token(&["--role", "admin", "--config", config, "--private-key-file", private_arg]);
    assert!(!ok && out.is_empty() && err.contains("does not verify"), "{err}");
}
