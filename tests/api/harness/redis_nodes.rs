//! Private `redis-server` processes with a configuration of the test's choosing: a Sentinel set
//! (a primary, one replica, three sentinels), a TLS-only Redis, a Redis with a small `maxmemory`.
//! Each lives in a temp dir of its own, on free ports, and is killed and removed on drop. The
//! machine's shared Redis is never touched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis_server::free_port;
use super::{ensure, eventually, random_suffix, storage};

/// The name the sentinels monitor the primary under.
pub const SENTINEL_MASTER: &str = "docroom";

/// One `redis-server` process.
pub struct RedisNode {
    pub port: u16,
    child: Option<Child>,
}

impl RedisNode {
    /// Starts `redis-server` with the configuration file `conf` (sentinel mode if `sentinel`).
    fn spawn(conf: &Path, sentinel: bool, log: &Path) -> RedisNode {
        let port = read_port(conf);
        let mut cmd = Command::new("redis-server");
        cmd.arg(conf);
        if sentinel {
            cmd.arg("--sentinel");
        }
        let log = std::fs::File::create(log).expect("create the redis log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        RedisNode {
            port,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until a plain connection answers PING.
    async fn await_ping(&self) {
        let url = self.url();
        eventually(
            Duration::from_secs(10),
            &format!("redis-server on {url} to answer"),
            async || {
                let mut con = storage::redis_connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async::<String>(&mut con)
                    .await
                    .map_err(|e| e.to_string())
            },
        )
        .await;
    }
}

impl Drop for RedisNode {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_port(conf: &Path) -> u16 {
    let text = std::fs::read_to_string(conf).expect("read the redis conf");
    text.lines()
        .find_map(|l| l.strip_prefix("port "))
        .and_then(|p| p.trim().parse().ok())
        .expect("a port line in the redis conf")
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("docroom-{label}-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Common lines of every private data node: loopback only, nothing persisted.
fn data_conf(dir: &Path, port: u16) -> String {
    format!(
        "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n",
        dir.display()
    )
}

/// A private Redis started from `extra` configuration lines after the common ones (`port` may be
/// overridden by giving `port 0` and `tls-port N` there).
pub async fn private_redis(dir: &TempDir, name: &str, extra: &str) -> RedisNode {
    let port = free_port();
    let conf = dir.path(&format!("{name}.conf"));
    std::fs::write(&conf, format!("{}{extra}", data_conf(&dir.0, port))).unwrap();
    let node = RedisNode::spawn(&conf, false, &dir.path(&format!("{name}.log")));
    node.await_ping().await;
    node
}

/// A primary, one replica and three sentinels (quorum 2, `down-after-milliseconds 1000`).
/// Fields drop in declaration order: the processes go before their directory.
pub struct SentinelSet {
    pub primary: RedisNode,
    pub replica: RedisNode,
    pub sentinels: Vec<RedisNode>,
    pub dir: TempDir,
}

impl SentinelSet {
    pub async fn start() -> SentinelSet {
        let dir = TempDir::new("sentinel");
        let primary = private_redis(&dir, "primary", "").await;
        let replica = private_redis(
            &dir,
            "replica",
            &format!("replicaof 127.0.0.1 {}\n", primary.port),
        )
        .await;
        await_replica_link(&replica).await;
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let port = free_port();
            let conf = dir.path(&format!("sentinel{n}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {m} 127.0.0.1 {p} 2\n\
                     sentinel down-after-milliseconds {m} 1000\n\
                     sentinel failover-timeout {m} 10000\n\
                     sentinel parallel-syncs {m} 1\n",
                    dir = dir.0.display(),
                    m = SENTINEL_MASTER,
                    p = primary.port,
                ),
            )
            .unwrap();
            let node = RedisNode::spawn(&conf, true, &dir.path(&format!("sentinel{n}.log")));
            node.await_ping().await;
            sentinels.push(node);
        }
        let set = SentinelSet {
            primary,
            replica,
            sentinels,
            dir,
        };
        // Every sentinel must know the replica and the other sentinels before a failover can
        // be agreed on (they find each other through the primary's hello channel).
        eventually(
            Duration::from_secs(30),
            "the sentinels to see the replica and each other",
            async || {
                for s in &set.sentinels {
                    let master = sentinel_master_info(s).await?;
                    ensure!(
                        master.num_replicas >= 1 && master.num_sentinels >= 3,
                        "sentinel {}: {master:?}",
                        s.port
                    );
                }
                Ok(())
            },
        )
        .await;
        set
    }

    /// `cache.sentinels` for these sentinels.
    pub fn addresses(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `SENTINEL FAILOVER`: the replica is promoted while the old primary lives on, demoted to
    /// a replica of it.
    pub async fn switch_over(&self) {
        let mut con = storage::redis_connect(&self.sentinels[0].url())
            .await
            .expect("connect to a sentinel");
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SENTINEL_MASTER)
            .query_async::<()>(&mut con)
            .await
            .expect("SENTINEL FAILOVER");
    }

    /// Waits until the node on `port` reports `role` (`master` or `slave`) in `ROLE`.
    pub async fn await_role(&self, port: u16, role: &str) {
        let url = format!("redis://127.0.0.1:{port}");
        eventually(
            Duration::from_secs(45),
            &format!("the node on {port} to be a {role}"),
            async || {
                let mut con = storage::redis_connect(&url)
                    .await
                    .map_err(|e| e.to_string())?;
                let reply: redis::Value = redis::cmd("ROLE")
                    .query_async(&mut con)
                    .await
                    .map_err(|e| e.to_string())?;
                let first = match &reply {
                    redis::Value::Array(items) => items.first().cloned(),
                    _ => None,
                };
                let now: Option<String> = first.and_then(|v| redis::from_redis_value(v).ok());
                ensure!(now.as_deref() == Some(role), "role {now:?}");
                Ok(())
            },
        )
        .await;
    }

    /// Whether the node on `port` holds the cached content of every one of `docs`.
    pub async fn holds_on(&self, port: u16, prefix: &str, docs: &[String]) -> bool {
        let url = format!("redis://127.0.0.1:{port}");
        let Ok(mut con) = storage::redis_connect(&url).await else {
            return false;
        };
        for doc in docs {
            let key = format!("{prefix}doc:{doc}:temp");
            let exists: Result<bool, _> =
                redis::cmd("EXISTS").arg(&key).query_async(&mut con).await;
            if !matches!(exists, Ok(true)) {
                return false;
            }
        }
        true
    }

    /// The port the sentinels (the first that answers) name as the primary's.
    pub async fn named_primary(&self) -> Result<u16, String> {
        for s in &self.sentinels {
            let Ok(mut con) = storage::redis_connect(&s.url()).await else {
                continue;
            };
            let addr: Result<Vec<String>, _> = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(SENTINEL_MASTER)
                .query_async(&mut con)
                .await;
            if let Some(port) = addr.ok().and_then(|a| a.get(1)?.parse().ok()) {
                return Ok(port);
            }
        }
        Err("no sentinel answered".into())
    }
}

#[derive(Debug, Default)]
struct MasterInfo {
    num_replicas: u64,
    num_sentinels: u64,
}

async fn sentinel_master_info(sentinel: &RedisNode) -> Result<MasterInfo, String> {
    let mut con = storage::redis_connect(&sentinel.url())
        .await
        .map_err(|e| e.to_string())?;
    let fields: Vec<String> = redis::cmd("SENTINEL")
        .arg("master")
        .arg(SENTINEL_MASTER)
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let mut info = MasterInfo::default();
    for pair in fields.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        match pair[0].as_str() {
            "num-slaves" => info.num_replicas = value,
            // Counts the other sentinels; plus this one.
            "num-other-sentinels" => info.num_sentinels = value + 1,
            _ => {}
        }
    }
    Ok(info)
}

async fn await_replica_link(replica: &RedisNode) {
    eventually(
        Duration::from_secs(20),
        "the replica to sync with the primary",
        async || {
            let mut con = storage::redis_connect(&replica.url())
                .await
                .map_err(|e| e.to_string())?;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .map_err(|e| e.to_string())?;
            ensure!(info.contains("master_link_status:up"), "{info}");
            Ok(())
        },
    )
    .await;
}
