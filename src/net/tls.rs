//! TLS as a client originates it (load streams to `https://` URLs, proxies with an `https://`
//! upstream): rustls with the system's root certificates, plus what `tls:` / `upstream_tls:`
//! add. Built once when the file is checked, so a missing CA file is an error at its line, not
//! a failure of every request.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `tls:` of a load stream, `upstream_tls:` of a proxy.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM file of CA certificates trusted besides the system's roots (relative paths are from
    /// where faultline runs), e.g. a staging CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The name sent as SNI and checked against the certificate, when it is not the URL's host
    /// (e.g. connecting to an IP address of a host whose certificate names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate. For a throwaway test stack only: the connection is encrypted but
    /// nothing proves who answers.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A built client TLS configuration.
#[derive(Clone)]
pub struct Tls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// Replaces the URL's host as SNI and as the name checked.
    pub(crate) server_name: Option<ServerName<'static>>,
    /// What is trusted, for messages: "the system's roots", "... and ca.pem", "nothing".
    trusts: Arc<str>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .field("trusts", &self.trusts)
            .finish()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's root certificates, read once per process. Certificates it cannot parse are
/// skipped, as curl skips them.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
}

impl Tls {
    /// The system's roots and nothing else: what an `https://` target without `tls:` gets.
    pub fn system() -> Result<Tls, String> {
        Tls::new(&TlsSpec::default())
    }

    pub fn new(spec: &TlsSpec) -> Result<Tls, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let mut roots = system_roots().clone();
        let mut trusts = "the system's root certificates".to_string();
        if let Some(path) = &spec.ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "ca_file `{}` holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
            }
            trusts.push_str(&format!(" and ca_file {}", path.display()));
        }
        // No ALPN here: the connector sets http/1.1 itself (and refuses a config that has some).
        let config = if spec.insecure_skip_verify {
            trusts = "any certificate (insecure_skip_verify)".into();
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let server_name = spec
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_string())
                    .map_err(|e| format!("server_name `{n}` is not a DNS name or IP address: {e}"))
            })
            .transpose()?;
        Ok(Tls {
            config: Arc::new(config),
            server_name,
            trusts: Arc::from(trusts),
        })
    }

    /// A certificate problem among the causes of `e`, explained: which host, which name was
    /// checked, why it failed and what to set. `None` when `e` is not a TLS failure.
    pub fn explain(
        &self,
        host: &str,
        port: u16,
        e: &(dyn std::error::Error + 'static),
    ) -> Option<String> {
        let tls = find_rustls_error(e)?;
        let name = match &self.server_name {
            Some(n) => n.to_str().into_owned(),
            None => host.to_string(),
        };
        let why = match tls {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::UnknownIssuer => format!(
                    "its certificate is not signed by a CA this client trusts ({}); set \
                     `ca_file` to the CA that signed it",
                    self.trusts
                ),
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => format!(
                    "its certificate is not valid for the name `{name}`; set `server_name` to a \
                     name the certificate is issued for"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "its certificate has expired".to_string()
                }
                other => format!("invalid certificate: {other:?}"),
            },
            other => other.to_string(),
        };
        Some(format!(
            "TLS handshake with {host}:{port} (server name `{name}`) failed: {why} ({tls})"
        ))
    }
}

fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // tokio-rustls hands the handshake's error over inside an io::Error (which `net::h1`
        // and other callers may wrap again): an io::Error's `source` skips its payload, so
        // look inside.
        cause = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's signatures are
/// still checked, so the connection is at least with whoever holds the presented key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_an_error_naming_it() {
        let e = Tls::new(&TlsSpec {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsSpec::default()
        })
        .unwrap_err();
        assert!(e.contains("ca_file `/nonexistent/ca.pem`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = Tls::new(&TlsSpec {
            ca_file: Some(empty),
            ..TlsSpec::default()
        })
        .unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let e = Tls::new(&TlsSpec {
            server_name: Some("not a name".into()),
            ..TlsSpec::default()
        })
        .unwrap_err();
        assert!(e.contains("server_name `not a name`"), "{e}");
    }

    #[test]
    fn certificate_errors_are_explained() {
        let tls = Tls::system().unwrap();
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        // Nested once more, as a caller may wrap it.
        let io = std::io::Error::other(io);
        let m = tls.explain("localhost", 8443, &io).unwrap();
        assert!(m.contains("localhost:8443"), "{m}");
        assert!(m.contains("server name `localhost`"), "{m}");
        assert!(m.contains("not signed by a CA this client trusts"), "{m}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls.explain("localhost", 8443, &refused), None);
    }
}
