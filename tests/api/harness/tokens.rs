//! Client tokens as a trusted backend signs them (SPEC §3 "Client tokens"): HS256 over the
//! claims a test names.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

/// Unix seconds an hour from now: an `exp` no test outlives.
pub fn in_an_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

/// `claims` signed with `secret`.
pub fn sign(secret: &str, claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&Header::default(), claims, &key).expect("sign the token")
}

/// A token for `docs` with `scope` ("rw" / "ro"), valid for an hour, with `sub` when given.
pub fn token(secret: &str, docs: &[&str], scope: &str, sub: Option<&str>) -> String {
    let mut claims = json!({"docs": docs, "scope": scope, "exp": in_an_hour()});
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    sign(secret, &claims)
}
