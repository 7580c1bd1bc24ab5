//! The storage the actors drive: Redis as the shared cache ([`RedisCache`]) and PostgreSQL as the
//! durable store ([`PgStore`]). The local journal lives in [`crate::fallback`].

mod postgres;
mod redis_cache;

pub use postgres::{PgStore, StoreError};
pub use redis_cache::{CacheError, CacheSettings, RedisCache};
