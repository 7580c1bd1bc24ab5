//! Settings as an operator meets them (SPEC §2, issue 10 defect 2): the binary carries every
//! default, so it serves from any working directory; `--config DIR` only overrides; a config
//! file that does not parse stops the start with a message naming it. These run the binary:
//! its working directory and its exit are the point.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{random_suffix, TestApp, TestOptions};

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("docroom-config-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn the_binary_serves_from_an_empty_working_directory() {
    let empty = TempDir::new();

    let app = TestApp::spawn(TestOptions::new().process().working_dir(&empty.0)).await;

    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn a_file_in_the_config_directory_overrides_a_built_in_default() {
    // Built in, the admin token is empty and the admin API answers 503.
    let config = TempDir::new();
    let token = "token-from-the-config-file";
    std::fs::write(
        config.0.join("base.toml"),
        format!("[server]\nadmin_token = \"{token}\"\n"),
    )
    .unwrap();
    let options = TestOptions::new()
        .process()
        .no_admin_token()
        .arg("--config")
        .arg(config.0.display().to_string());

    let app = TestApp::spawn(options).await;

    let admin = app.admin_as(Some(&format!("Bearer {token}")));
    assert_eq!(admin.get("flusher").await.status, 200);
}

#[test]
fn a_config_file_that_does_not_parse_stops_the_start_with_a_message_naming_it() {
    let config = TempDir::new();
    let file = config.0.join("base.toml");
    std::fs::write(&file, "[server\nlisten = ").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_docroom"))
        .arg("--config")
        .arg(&config.0)
        .arg("serve")
        .current_dir(&config.0)
        .env_remove("DOCROOM_CONFIG_DIR")
        .env("DOCROOM_LISTEN", "127.0.0.1:0")
        .env("DOCROOM_DATA_DIR", config.0.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the docroom binary");

    // Bounded: a binary that ignored the file would serve until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for docroom").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("docroom started with a config file that does not parse");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("read docroom's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("does not parse"),
        "stderr names {}: {stderr}",
        file.display()
    );
}
