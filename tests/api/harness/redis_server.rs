//! A private `redis-server` a test may kill, pause or restart, so faults never touch the
//! machine's shared Redis.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{random_suffix, storage};

pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// While killed: the port, bound but not listening, so connections are refused and no other
    /// process (another test's `free_port`, an outgoing connection) can take it before `restart`.
    held: Option<tokio::net::TcpSocket>,
}

impl PrivateRedis {
    /// Starts an empty, non-persistent Redis on a free port and waits until it answers.
    pub async fn start() -> PrivateRedis {
        let dir = std::env::temp_dir().join(format!("docroom-redis-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("create the redis dir");
        let mut redis = PrivateRedis {
            port: 0,
            dir,
            child: None,
            paused: false,
            held: None,
        };
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            redis.port = free_port();
            redis.launch();
            if redis.answers_within(Duration::from_secs(10)).await {
                return redis;
            }
            redis.kill();
        }
        panic!("could not start a private redis-server");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: the data is gone with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.held = hold_port(self.port);
        }
        self.paused = false;
    }

    /// Kills it (if running) and starts it again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch();
        assert!(
            self.answers_within(Duration::from_secs(10)).await,
            "the private redis did not come back on port {}",
            self.port
        );
    }

    /// SIGSTOP: connections stay open but nothing answers.
    pub fn pause(&mut self) {
        self.signal("STOP");
        self.paused = true;
    }

    /// SIGCONT after `pause`.
    pub fn resume(&mut self) {
        self.signal("CONT");
        self.paused = false;
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("redis is not running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    fn launch(&mut self) {
        self.held = None;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
    }

    /// Whether it answers PING within `within` (false at once if the process died).
    async fn answers_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                return false;
            }
            if let Ok(mut con) = storage::redis_connect(&self.url()).await {
                let pong = redis::cmd("PING").query_async::<String>(&mut con).await;
                if pong.is_ok() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Binds `port` without listening on it.
fn hold_port(port: u16) -> Option<tokio::net::TcpSocket> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(([127, 0, 0, 1], port).into()).ok()?;
    Some(socket)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}
