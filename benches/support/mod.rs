//! What the benches that need the real stores share: finding Redis and PostgreSQL (or saying
//! clearly why the bench is skipped), and removing the bench's own Redis keys afterwards.
//!
//! The stores are the developer's local ones (`scripts/ensure-services`): benches write only
//! under the [`KEY_PREFIX`] in Redis and only into the `docroom_bench` database.

#![allow(dead_code)] // each bench binary uses a different part

pub mod members;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Every Redis key the benches write starts with this; it is deleted when they finish.
pub const KEY_PREFIX: &str = "bench-criterion:";

pub struct Services {
    pub redis_url: String,
    pub database_url: String,
}

impl Services {
    /// The local Redis and PostgreSQL if both accept connections, else why not.
    /// `DOCROOM_REDIS_URL` / `DOCROOM_BENCH_DATABASE_URL` override the defaults.
    pub fn find() -> Result<Services, String> {
        let redis_url = std::env::var("DOCROOM_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
        let database_url = std::env::var("DOCROOM_BENCH_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/docroom_bench".to_string());
        for (what, url, port) in [
            ("Redis", &redis_url, 6379),
            ("PostgreSQL", &database_url, 5432),
        ] {
            let hp = host_port(url, port);
            let reachable = hp
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
            if !reachable {
                return Err(format!(
                    "{what} does not answer at {hp} (run scripts/ensure-services)"
                ));
            }
        }
        Ok(Services {
            redis_url,
            database_url,
        })
    }

    /// Deletes the benches' keys (never anything else: the Redis may be shared).
    pub fn remove_bench_keys(&self) {
        let Ok(client) = redis::Client::open(self.redis_url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(format!("{KEY_PREFIX}*"))
            .query(&mut conn)
        {
            Ok(k) => k,
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

/// Prints why a bench is skipped, in a form that stands out in `cargo bench` output.
pub fn skip(bench: &str, why: &str) {
    eprintln!("\n{bench}: SKIPPED — {why}\n");
}

fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_string()
    } else {
        format!("{rest}:{default_port}")
    }
}
