//! Settings read in layers, checked, and refused with errors that name what is wrong.

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A fresh config directory holding `files` (name, contents); removed on drop.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn with(test: &str, files: &[(&str, &str)]) -> ConfigDir {
        let dir =
            std::env::temp_dir().join(format!("docroom-settings-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        ConfigDir(dir)
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_built_in_defaults_load_without_a_config_directory() {
    let s = Settings::load_from(None, vars(&[])).expect("built-in defaults load");

    assert_eq!(s.cache.url, "redis://127.0.0.1:6379");
    assert_eq!(s.server.listen, "127.0.0.1:8080");
    assert_eq!(s.flusher.base_period_ms, 10000);
}

#[test]
fn a_missing_config_directory_leaves_the_built_in_defaults() {
    let dir = std::env::temp_dir().join("docroom-settings-no-such-dir");

    let s = Settings::load_from(Some(&dir), vars(&[])).expect("defaults load");

    assert_eq!(s.cache.url, "redis://127.0.0.1:6379");
}

#[test]
fn base_toml_in_the_config_directory_overrides_only_the_keys_it_names() {
    let dir = ConfigDir::with(
        "base",
        &[("base.toml", "[flusher]\nbase_period_ms = 1234\n")],
    );

    let s = Settings::load_from(Some(&dir.0), vars(&[])).expect("settings load");

    assert_eq!(s.flusher.base_period_ms, 1234);
    assert_eq!(
        s.flusher.error_period_ms, 30000,
        "untouched keys keep the default"
    );
}

#[test]
fn the_file_named_by_docroom_env_wins_over_base_toml() {
    let dir = ConfigDir::with(
        "env-file",
        &[
            ("base.toml", "[flusher]\nbase_period_ms = 1234\n"),
            ("staging.toml", "[flusher]\nbase_period_ms = 4321\n"),
        ],
    );

    let s = Settings::load_from(Some(&dir.0), vars(&[("DOCROOM_ENV", "staging")]))
        .expect("settings load");

    assert_eq!(s.flusher.base_period_ms, 4321);
}

#[test]
fn variables_win_over_files_and_fixed_ones_stay_strings() {
    let dir = ConfigDir::with(
        "vars",
        &[("base.toml", "[flusher]\nbase_period_ms = 1234\n")],
    );
    let given = vars(&[
        ("DOCROOM__FLUSHER__BASE_PERIOD_MS", "200"),
        ("DOCROOM__LIMITS__MESSAGES_PER_SEC", "2.5"),
        ("DOCROOM_ADMIN_TOKEN", "0123"),
        ("DOCROOM_REDIS_URL", "redis://10.0.0.1:6380"),
        ("HOME", "/ignored"),
    ]);

    let s = Settings::load_from(Some(&dir.0), given).expect("settings load");

    assert_eq!(s.flusher.base_period_ms, 200);
    assert_eq!(s.limits.messages_per_sec, 2.5);
    assert_eq!(s.server.admin_token, "0123");
    assert_eq!(s.cache.url, "redis://10.0.0.1:6380");
}

#[test]
fn a_config_file_that_does_not_parse_is_an_error_naming_it() {
    let dir = ConfigDir::with(
        "unparsable",
        &[("base.toml", "[flusher\nbase_period_ms = ")],
    );

    let err = Settings::load_from(Some(&dir.0), vars(&[])).expect_err("must not load");

    let message = err.to_string();
    let path = dir.0.join("base.toml").display().to_string();
    assert!(message.contains(&path), "{message:?} names {path:?}");
    assert!(message.contains("does not parse"), "{message:?}");
}

#[test]
fn a_jwt_secret_variable_set_but_empty_is_an_error_naming_it() {
    for name in JWT_SECRET_VARS {
        let err = Settings::load_from(None, vars(&[(name, "")])).expect_err("must not load");

        assert!(err.to_string().contains(name), "{err}");
    }
    let unset = Settings::load_from(None, vars(&[])).expect("unset loads");
    assert_eq!(unset.auth.jwt_secret, "", "unset: no tokens");
    let set = Settings::load_from(None, vars(&[("DOCROOM_JWT_SECRET", "s")])).expect("loads");
    assert_eq!(set.auth.jwt_secret, "s");
}

#[test]
fn a_setting_of_the_wrong_type_is_an_error() {
    let given = vars(&[("DOCROOM__FLUSHER__BASE_PERIOD_MS", "soon")]);

    let err = Settings::load_from(None, given).expect_err("must not load");

    assert!(err.to_string().contains("base_period_ms"), "{err}");
}

#[test]
fn a_replica_id_the_journal_cannot_frame_is_refused_at_start() {
    let long = "r".repeat(256);
    let err = Settings::load_from(None, vars(&[("DOCROOM_REPLICA_ID", &long)]))
        .expect_err("must not load");
    assert!(err.to_string().contains("DOCROOM_REPLICA_ID"), "{err}");
    let longest = "r".repeat(255);
    Settings::load_from(None, vars(&[("DOCROOM_REPLICA_ID", &longest)])).expect("255 bytes load");
}
