//! Private stores that speak only TLS and want a password: certificates made with the `openssl`
//! command, a `redis-server` with `tls-port` and `port 0`, and a PostgreSQL cluster (`initdb` in a
//! temp dir, run as the `postgres` OS user) with `ssl=on` and `hostssl` scram-sha-256 only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use docroom_actors::storage::tls;
use tokio_postgres::config::SslMode;

use super::redis_nodes::TempDir;
use super::redis_server::free_port;
use super::{eventually, random_suffix};

/// A CA, a server certificate it signed (for `127.0.0.1` and `localhost`), and another CA that
/// signed nothing here (the "wrong CA").
pub struct Certs {
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, cn) in [("ca", "docroom test ca"), ("wrong-ca", "somebody else")] {
            let (key, pem, subj) = (
                format!("{name}.key"),
                format!("{name}.pem"),
                format!("/CN={cn}"),
            );
            let mut args = vec!["req", "-x509"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(dir, &args);
        }
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(dir, &args);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        Certs {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// A TLS-only Redis with one user (`default` is off), or `None` when this `redis-server` was
/// built without TLS.
pub struct TlsRedis {
    pub port: u16,
    child: std::process::Child,
}

impl TlsRedis {
    pub async fn start(
        dir: &TempDir,
        certs: &Certs,
        user: &str,
        password: &str,
    ) -> Option<TlsRedis> {
        let port = free_port();
        let conf = dir.path("tls-redis.conf");
        std::fs::write(
            &conf,
            format!(
                "port 0\ntls-port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {d}\n\
                 tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                 tls-auth-clients no\nuser default off\nuser {user} on >{password} ~* &* +@all\n",
                d = dir.0.display(),
                cert = certs.cert.display(),
                key = certs.key.display(),
                ca = certs.ca.display(),
            ),
        )
        .unwrap();
        let log = dir.path("tls-redis.log");
        let child = Command::new("redis-server")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let mut redis = TlsRedis { port, child };
        let url = redis.url(user, password);
        let ca = std::fs::read(&certs.ca).unwrap();
        for _ in 0..200 {
            if let Ok(Some(_)) = redis.child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.to_lowercase().contains("tls") {
                    return None;
                }
                panic!("the tls redis exited: {text}");
            }
            if tls_ping(&url, &ca).await.is_ok() {
                return Some(redis);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = redis.child.kill();
        panic!("the tls redis did not answer on {port}");
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!("rediss://{user}:{password}@127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection over TLS trusting `ca` (PEM).
pub async fn tls_redis_connect(
    url: &str,
    ca: &[u8],
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    tls::install_provider();
    let certs = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    };
    redis::Client::build_with_tls(url, certs)?
        .get_multiplexed_async_connection()
        .await
}

async fn tls_ping(url: &str, ca: &[u8]) -> redis::RedisResult<String> {
    let mut con = tls_redis_connect(url, ca).await?;
    redis::cmd("PING").query_async(&mut con).await
}

/// A private PostgreSQL cluster: TLS required (`hostssl` only), password authentication for
/// `postgres`. Stopped (immediate) and removed on drop.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run a command as the postgres user")
}

impl PrivatePostgres {
    pub async fn start(certs: &Certs, password: &str) -> PrivatePostgres {
        let dir = std::env::temp_dir().join(format!("docroom-pg-{}", random_suffix()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        // The server reads its key and the password file as the postgres user; the key must
        // not be readable by others.
        let key = dir.join("server.key");
        let cert = dir.join("server.pem");
        std::fs::copy(&certs.key, &key).unwrap();
        std::fs::copy(&certs.cert, &cert).unwrap();
        std::fs::write(dir.join("pw"), password).unwrap();
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success(), "chown the private postgres dir");
        let chmod = Command::new("chmod").arg("600").arg(&key).status().unwrap();
        assert!(chmod.success());
        let pwfile = format!("--pwfile={}", dir.join("pw").display());
        let init = as_postgres(&[
            "initdb",
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            &pwfile,
        ]);
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n\
             ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\nfsync = off\n",
            d = dir.display(),
            cert = cert.display(),
            key = key.display(),
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let pg = PrivatePostgres { port, dir };
        let log = pg.dir.join("log");
        let start = as_postgres(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        assert!(
            start.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&start.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        pg
    }

    pub fn url(&self, password: &str, db: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{db}?sslmode=require",
            self.port
        )
    }

    /// A client over verified TLS.
    pub async fn connect(&self, password: &str, db: &str, ca: &Path) -> tokio_postgres::Client {
        let url = self.url(password, db);
        eventually(
            Duration::from_secs(10),
            "the private postgres",
            async || {
                let tls = tls::postgres_connector(SslMode::Require, Some(ca))
                    .map_err(|e| e.to_string())?;
                let (client, conn) = tokio_postgres::connect(&url, tls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                Ok(client)
            },
        )
        .await
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(&[
            "pg_ctl",
            "-D",
            data.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
