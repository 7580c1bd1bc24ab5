//! Redis and PostgreSQL over TLS with passwords: docroom works against a TLS-only Redis with a
//! user and password in its `rediss://` URL and a PostgreSQL that accepts only `hostssl` with
//! scram-sha-256; a certificate from another CA stops it at start with an error naming the store;
//! no password ever reaches the log.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::app::SHARED_REDIS_URL;
use crate::harness::redis_nodes::TempDir;
use crate::harness::tls_stores::{tls_redis_connect, Certs, PrivatePostgres, TlsRedis};
use crate::harness::{assert_fields, ensure, eventually, random_suffix, TestApp, TestOptions};

const REDIS_USER: &str = "docroom";

fn no_tls_redis() {
    eprintln!(
        "skipping the TLS Redis part: this redis-server was built without TLS \
         (redis-server --tls-port is refused); the PostgreSQL part still runs"
    );
}

#[tokio::test]
async fn docroom_works_against_tls_only_password_protected_stores_and_logs_no_password() {
    let dir = TempDir::new("tls");
    let certs = Certs::make(&dir.0);
    let (redis_pw, pg_pw) = (
        format!("rpw{}", random_suffix()),
        format!("ppw{}", random_suffix()),
    );
    let redis = TlsRedis::start(&dir, &certs, REDIS_USER, &redis_pw).await;
    let pg = PrivatePostgres::start(&certs, &pg_pw).await;
    let redis_url = match &redis {
        Some(redis) => redis.url(REDIS_USER, &redis_pw),
        None => {
            no_tls_redis();
            SHARED_REDIS_URL.to_owned()
        }
    };
    let options = TestOptions::new()
        .flusher_paused()
        .redis_url(&redis_url)
        // The harness's own cleanup cannot speak TLS to the private Redis (nothing of this
        // test's lands in the shared one).
        .redis_check_url(SHARED_REDIS_URL)
        .env("DOCROOM__CACHE__CA_FILE", certs.ca.display())
        .env("DOCROOM_DATABASE_URL", pg.url(&pg_pw, "docroom_tls"))
        .env("DOCROOM__DATABASE__CA_FILE", certs.ca.display())
        .env("DOCROOM_LOG", "debug");
    let app = TestApp::spawn(options).await;

    let content = json!({"text": "over tls"});
    let put = app.put_doc("tls-doc", &content).await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_fields(&put.body, json!({"stored": "cache"}));
    if redis.is_some() {
        let ca = std::fs::read(&certs.ca).unwrap();
        let mut con = tls_redis_connect(&redis_url, &ca).await.unwrap();
        let key = format!("{}doc:tls-doc:temp", app.prefix);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(exists, "{key} is not in the tls redis");
    }
    let db = pg.connect(&pg_pw, "docroom_tls", &certs.ca).await;
    eventually(
        Duration::from_secs(30),
        "the document in the tls postgres",
        async || {
            let report = app.admin().flush_now().await;
            ensure!(report["failed"] == 0, "flush report {report}");
            let row = db
                .query_opt(
                    "SELECT content FROM documents WHERE doc_id = 'tls-doc'",
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            let held: Option<serde_json::Value> = row.map(|r| r.get(0));
            ensure!(held.as_ref() == Some(&content), "postgres holds {held:?}");
            Ok(())
        },
    )
    .await;

    let logs = app.logs();
    let configured = logs
        .iter()
        .find(|l| l.contains("stores configured"))
        .expect("the stores line at start");
    assert!(configured.contains("***"), "{configured}");
    for secret in [&redis_pw, &pg_pw] {
        let leaks: Vec<_> = logs
            .iter()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(leaks.is_empty(), "a password in the log: {leaks:#?}");
    }
}

/// Runs the docroom binary with `env` until it exits by itself (at most 60 s): its status and
/// everything it printed.
fn run_to_exit(env: &[(&str, String)]) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_docroom"));
    cmd.arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DOCROOM") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("DOCROOM_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut child = cmd.spawn().expect("spawn docroom");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for docroom").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "docroom kept running with a wrong ca: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

#[tokio::test]
async fn a_certificate_from_another_ca_stops_docroom_at_start_naming_the_store() {
    let dir = TempDir::new("wrong-ca");
    let certs = Certs::make(&dir.0);
    let (redis_pw, pg_pw) = (
        format!("rpw{}", random_suffix()),
        format!("ppw{}", random_suffix()),
    );
    let redis = TlsRedis::start(&dir, &certs, REDIS_USER, &redis_pw).await;
    let pg = PrivatePostgres::start(&certs, &pg_pw).await;
    let ca = |path: &Path| path.display().to_string();
    let data_dir = dir.path("data").display().to_string();
    let base = |redis_url: String, redis_ca: &Path, pg_ca: &Path| {
        vec![
            ("DOCROOM_REDIS_URL", redis_url),
            ("DOCROOM__CACHE__CA_FILE", ca(redis_ca)),
            ("DOCROOM_DATABASE_URL", pg.url(&pg_pw, "docroom_wrong_ca")),
            ("DOCROOM__DATABASE__CA_FILE", ca(pg_ca)),
            ("DOCROOM_DATA_DIR", data_dir.clone()),
        ]
    };

    let (status, out) = run_to_exit(&base(
        SHARED_REDIS_URL.to_owned(),
        &certs.ca,
        &certs.wrong_ca,
    ));
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("postgres: the server's tls certificate is not trusted"),
        "{out}"
    );
    assert!(
        !out.contains(&pg_pw),
        "the postgres password in the output: {out}"
    );

    match &redis {
        Some(redis) => {
            let (status, out) = run_to_exit(&base(
                redis.url(REDIS_USER, &redis_pw),
                &certs.wrong_ca,
                &certs.ca,
            ));
            assert!(!status.success(), "{out}");
            assert!(
                out.contains("redis: the server's tls certificate is not trusted"),
                "{out}"
            );
            assert!(
                !out.contains(&redis_pw),
                "the redis password in the output: {out}"
            );
            assert!(
                !out.contains(&pg_pw),
                "the postgres password in the output: {out}"
            );
        }
        None => no_tls_redis(),
    }
}
