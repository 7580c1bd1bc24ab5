//! TLS for both stores, over rustls with the ring provider (no OpenSSL at build or run time),
//! and the two things every store connection needs around it: telling a certificate that is not
//! trusted apart from a store that is down, and URLs fit for a log line.
//!
//! PostgreSQL's `sslmode` (as tokio-postgres parses it from the URL):
//! - `disable`: plain TCP;
//! - `prefer` (the default): TLS when the server offers it, the certificate not verified — what
//!   libpq's `prefer` does; it keeps passive listeners out, nothing more;
//! - `require`: TLS, the certificate and host name verified against the system roots or
//!   `database.ca_file` — stricter than libpq's `require`, which verifies nothing.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{store}: cannot read the ca file {path}: {why}")]
    CaFile {
        store: &'static str,
        path: String,
        why: String,
    },
    #[error("{store}: no trusted roots: the ca file holds no certificate and the system has none")]
    NoRoots { store: &'static str },
    #[error("tls setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Makes ring the process's rustls provider, for the clients (the `redis` crate's) that build
/// their configuration with the process default. Idempotent.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots to trust: the PEM `ca_file` when given, else the system's.
fn roots(store: &'static str, ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let fail = |why: String| TlsError::CaFile {
                store,
                path: path.display().to_string(),
                why,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(fail("no certificate in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots { store });
    }
    Ok(roots)
}

/// The TLS connector for PostgreSQL under `mode` (see the module doc).
pub fn postgres_connector(
    mode: SslMode,
    ca_file: Option<&Path>,
) -> Result<MakeRustlsConnect, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match mode {
        SslMode::Require => builder
            .with_root_certificates(roots("postgres", ca_file)?)
            .with_no_client_auth(),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer`'s verifier: any certificate, but the handshake signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `err` (or anything it wraps) is a TLS certificate rejection: a configuration fault
/// to stop at start for, unlike a store that is merely down.
pub fn is_certificate_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look at that one too.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_certificate_error(inner) {
                return true;
            }
        }
        next = e.source();
    }
    // The redis crate keeps only the text of some I/O errors.
    err.to_string().contains("invalid peer certificate")
}

/// `url` with its password replaced by `***`, for logs and error messages: the userinfo of a
/// URL, and any `password=` parameter (URL query or libpq key/value form).
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, "***");
            }
        }
    }
    let mut searched = 0;
    while let Some(i) = out[searched..].find("password=") {
        let from = searched + i + "password=".len();
        let to = out[from..].find(['&', ' ']).map_or(out.len(), |j| from + j);
        out.replace_range(from..to, "***");
        searched = from + 3;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_loses_its_password_and_keeps_everything_else() {
        assert_eq!(
            redact("rediss://app:s3cr3t@redis.example:6380/2"),
            "rediss://app:***@redis.example:6380/2"
        );
        assert_eq!(
            redact("postgres://docroom:p%40ss@db:5432/docroom?sslmode=require"),
            "postgres://docroom:***@db:5432/docroom?sslmode=require"
        );
        assert_eq!(redact("redis://:only@h:1"), "redis://:***@h:1");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn password_parameters_are_redacted_too() {
        assert_eq!(
            redact("postgres://u@h/db?password=x1&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=h user=u password=x1 dbname=d"),
            "host=h user=u password=*** dbname=d"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error_naming_the_store() {
        let path = std::env::temp_dir().join(format!("docroom-empty-ca-{}", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = postgres_connector(SslMode::Require, Some(&path))
            .err()
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().starts_with("postgres: "), "{err}");
    }

    #[test]
    fn a_rejected_certificate_is_told_apart_from_an_outage() {
        let rejected = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_certificate_error(&rejected));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&refused));
    }
}
