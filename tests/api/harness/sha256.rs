//! SHA-256 from `ring`, not from the `sha2` crate the service uses, so the tests compute the
//! content hash independently of the code under test.

use ring::digest::{digest, SHA256};

/// Lowercase hex SHA-256 of `data`.
pub fn hex(data: &[u8]) -> String {
    digest(&SHA256, data)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn sha256_hex_matches_the_standard_test_vectors() {
    assert_eq!(
        hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
}

#[test]
fn content_hash_is_the_sha256_of_the_key_sorted_compact_json() {
    // Expected value from `printf '%s' '{"a":2,"b":[1.5,"x"]}' | sha256sum`.
    let content = serde_json::json!({"b": [1.5, "x"], "a": 2});
    assert_eq!(
        super::content_hash(&content),
        "cfc1bf93338a0a13dfedf2ad4e2cf357bb4d5a677abe7a286568a828dc329aae"
    );
}
