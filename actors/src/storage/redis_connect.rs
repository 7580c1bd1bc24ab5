//! How a Redis client is made: straight from `DOCROOM_REDIS_URL`, or, with Sentinel configured,
//! for whichever primary the sentinels name at that moment (the URL's user, password, TLS and
//! database still apply to it).
//!
//! A client is made for every connection attempt, so after a failover (the old primary dead, or
//! demoted and answering `READONLY`) the breaker's next probe asks the sentinels again and lands
//! on the promoted replica. Discovery itself is the `redis` crate's (`redis::sentinel`), which
//! also checks with `ROLE` that the node named really is a primary.

use std::path::PathBuf;

use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates, TlsMode};

use super::tls;

/// The sentinels to ask for the primary (SPEC §2 `cache.sentinels`).
#[derive(Clone, Debug)]
pub struct SentinelSettings {
    /// `host:port` of each sentinel.
    pub nodes: Vec<(String, u16)>,
    /// The monitored primary's name (`cache.sentinel_master`).
    pub master: String,
    /// The sentinels' own password, if they have one (`cache.sentinel_password`).
    pub password: Option<String>,
}

impl SentinelSettings {
    /// Parses `cache.sentinels` (comma-separated `host:port`); `None` when it is empty.
    pub fn parse(
        nodes: &str,
        master: &str,
        password: &str,
    ) -> Result<Option<SentinelSettings>, String> {
        let mut parsed = Vec::new();
        for node in nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (host, port) = node
                .rsplit_once(':')
                .ok_or_else(|| format!("cache.sentinels: {node:?} is not host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("cache.sentinels: {node:?} has no valid port"))?;
            parsed.push((host.trim_matches(['[', ']']).to_owned(), port));
        }
        if parsed.is_empty() {
            return Ok(None);
        }
        if master.is_empty() {
            return Err("cache.sentinel_master must be set with cache.sentinels".into());
        }
        Ok(Some(SentinelSettings {
            nodes: parsed,
            master: master.to_owned(),
            password: (!password.is_empty()).then(|| password.to_owned()),
        }))
    }
}

/// Where and how to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisTarget {
    pub url: String,
    /// PEM file of the CA to trust for `rediss://` instead of the system roots.
    pub ca_file: Option<PathBuf>,
    pub sentinel: Option<SentinelSettings>,
}

impl RedisTarget {
    pub fn plain(url: impl Into<String>) -> RedisTarget {
        RedisTarget {
            url: url.into(),
            ca_file: None,
            sentinel: None,
        }
    }

    /// A client for the current primary. With sentinels this asks them (one round trip each
    /// until one answers, plus a `ROLE` check on the node named).
    pub async fn client(&self) -> redis::RedisResult<redis::Client> {
        tls::install_provider();
        let certs = self.certificates()?;
        let Some(sentinel) = &self.sentinel else {
            return match certs {
                Some(certs) => redis::Client::build_with_tls(self.url.as_str(), certs),
                None => redis::Client::open(self.url.as_str()),
            };
        };
        let info = self.url.as_str().into_connection_info()?;
        let node = info.redis_settings();
        let nodes = sentinel
            .nodes
            .iter()
            .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
        let mut builder =
            SentinelClientBuilder::new(nodes, &sentinel.master, SentinelServerType::Master)?
                .set_client_to_redis_db(node.db());
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
        if let Some(user) = node.username() {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = node.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(certs) = certs {
            builder = builder.set_client_to_redis_certificates(certs);
        }
        if let Some(password) = &sentinel.password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build()?.async_get_client().await
    }

    fn certificates(&self) -> redis::RedisResult<Option<TlsCertificates>> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read cache.ca_file",
                format!("{}: {e}", path.display()),
            ))
        })?;
        Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }
}

/// What docroom learnt about Redis at start.
#[derive(Debug, PartialEq, Eq)]
pub enum MemoryPolicy {
    /// `noeviction`: a full Redis refuses writes, which the breaker turns into fallback saves.
    NoEviction,
    /// Any other policy evicts keys PostgreSQL may still lack (every docroom key has a TTL).
    Evicting(String),
    /// `CONFIG` is disabled or renamed (common on managed Redis): nothing to check.
    Unknown,
}

impl RedisTarget {
    /// One connection of its own (not the cache's shared one, whose driver must live beside
    /// the supervisor), asked for `maxmemory-policy`.
    pub async fn memory_policy(
        &self,
        timeout: std::time::Duration,
    ) -> redis::RedisResult<MemoryPolicy> {
        let ask = async {
            let mut conn = self
                .client()
                .await?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut conn)
                .await
        };
        let reply = match tokio::time::timeout(timeout, ask).await {
            Ok(reply) => reply,
            Err(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "redis did not answer within the start check's time",
                )))
            }
        };
        Ok(match reply {
            Ok(pair) => match pair.get(1).map(String::as_str) {
                Some("noeviction") => MemoryPolicy::NoEviction,
                Some(policy) => MemoryPolicy::Evicting(policy.to_owned()),
                None => MemoryPolicy::Unknown,
            },
            // `CONFIG` renamed away or denied by an ACL: an error reply, not a failed link.
            Err(e) if e.code().is_some() => MemoryPolicy::Unknown,
            Err(e) => return Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_parse_from_a_comma_separated_list() {
        let s = SentinelSettings::parse(" 10.0.0.1:26379, sentinel-b:26380 ,", "docroom", "")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.nodes,
            vec![("10.0.0.1".into(), 26379), ("sentinel-b".into(), 26380)]
        );
        assert_eq!(s.master, "docroom");
        assert_eq!(s.password, None);
    }

    #[test]
    fn no_sentinels_means_the_url_names_the_primary() {
        assert!(SentinelSettings::parse("", "", "").unwrap().is_none());
    }

    #[test]
    fn sentinels_without_a_master_name_or_port_are_refused() {
        assert!(SentinelSettings::parse("a:1", "", "").is_err());
        assert!(SentinelSettings::parse("a", "m", "").is_err());
        assert!(SentinelSettings::parse("a:x", "m", "").is_err());
    }
}
