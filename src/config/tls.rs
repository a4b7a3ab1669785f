//! The `tls` block of a broker source (`docs/CONFIGURATION.md`, "TLS"), and the rustls
//! client configuration built from it when the configuration is loaded.
//!
//! Files are read here, once per load (a reload reads them again, so a renewed
//! certificate is picked up by SIGHUP); the reactor only drives handshakes with the
//! result. The crypto provider is *ring* (`docs/OPERATIONS.md`, "TLS"): it builds with a C
//! compiler alone, where the alternative needs cmake and more.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, InvalidMessage, RootCertStore,
    SignatureScheme,
};
use serde::Deserialize;

/// A source's `tls` block, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the certificate authorities to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name to verify the server's certificate against (and to send as SNI) instead
    /// of the URL's host: for a server reached by IP address or through a tunnel.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM certificate chain ferry presents (mutual TLS); needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate: encryption without authentication. Logged as a
    /// warning at every connect.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A ready rustls client configuration for one source.
#[derive(Clone)]
pub struct TlsClient {
    /// What rustls needs for every connection of the source.
    pub config: Arc<ClientConfig>,
    /// `server_name` from the block, verified and sent instead of the URL's host.
    server_name: Option<ServerName<'static>>,
    /// Certificates are not verified (`insecure_skip_verify`).
    pub insecure: bool,
    /// Digest of the settings and of the files' bytes: two loads are equal when nothing
    /// changed, so a reload restarts a source only when its TLS changed.
    fingerprint: u64,
}

impl TlsClient {
    /// The name the server's certificate must carry when ferry connects to `host`.
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, String> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => server_name(host),
        }
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &TlsClient) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Parses a host as a TLS server name: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("'{host}' is not a valid TLS server name"))
}

/// The process's crypto provider: *ring*, with its default cipher suites.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Builds the client configuration of `settings`; relative paths are taken from `base`
/// (the configuration file's folder). The error names the key and the cause.
pub fn build(settings: &TlsSettings, base: Option<&Path>) -> Result<TlsClient, (String, String)> {
    let mut digest = DefaultHasher::new();
    settings.hash_fields(&mut digest);
    let resolve = |file: &Path| match base {
        Some(base) if file.is_relative() => base.join(file),
        _ => file.to_path_buf(),
    };
    let mut read = |key: &str, file: &Path| -> Result<Vec<u8>, (String, String)> {
        let path = resolve(file);
        let bytes = std::fs::read(&path).map_err(|e| {
            (
                key.to_string(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        bytes.hash(&mut digest);
        Ok(bytes)
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls".to_string(), e.to_string()))?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    } else {
        let roots = match &settings.ca_file {
            Some(file) => {
                let pem = read("tls.ca_file", file)?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| ("tls.ca_file".into(), format!("{e:?}")))?;
                    roots.add(cert).map_err(|e| {
                        (
                            "tls.ca_file".to_string(),
                            format!("a certificate is unusable: {e}"),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err(("tls.ca_file".into(), "holds no PEM certificate".into()));
                }
                Arc::new(roots)
            }
            None => system_roots().map_err(|why| ("tls".to_string(), why))?,
        };
        builder.with_root_certificates(roots)
    };
    let mut config = match (&settings.client_cert_file, &settings.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain_pem = read("tls.client_cert_file", cert)?;
            let chain = CertificateDer::pem_slice_iter(&chain_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("tls.client_cert_file".to_string(), format!("{e:?}")))?;
            if chain.is_empty() {
                return Err((
                    "tls.client_cert_file".into(),
                    "holds no PEM certificate".into(),
                ));
            }
            let key_pem = read("tls.client_key_file", key)?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
                (
                    "tls.client_key_file".to_string(),
                    format!("holds no usable PEM private key ({e:?})"),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("tls.client_key_file".to_string(), e.to_string()))?
        }
        (Some(_), None) => {
            return Err((
                "tls.client_key_file".into(),
                "missing: client_cert_file needs its key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                "tls.client_cert_file".into(),
                "missing: client_key_file needs its certificate".into(),
            ))
        }
    };
    // Brokers speak one protocol each: no ALPN. Resumption stays on (rustls' default
    // in-memory cache), so a reconnect to the same node costs less.
    config.alpn_protocols.clear();
    let server_name = match &settings.server_name {
        Some(name) => Some(server_name(name).map_err(|why| ("tls.server_name".to_string(), why))?),
        None => None,
    };
    Ok(TlsClient {
        config: Arc::new(config),
        server_name,
        insecure: settings.insecure_skip_verify,
        fingerprint: digest.finish(),
    })
}

impl TlsSettings {
    fn hash_fields(&self, h: &mut DefaultHasher) {
        self.ca_file.hash(h);
        self.server_name.hash(h);
        self.client_cert_file.hash(h);
        self.client_key_file.hash(h);
        self.insecure_skip_verify.hash(h);
    }
}

/// The system's trusted roots (`/etc/ssl/certs` on Debian), read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map_or("none found".to_string(), ToString::to_string);
                return Err(format!(
                    "no system root certificates ({why}): install ca-certificates or give tls.ca_file"
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake's signatures
/// are still checked (the peer holds the key of the certificate it sent).
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

/// A rustls error in words that name the likely cause and the setting that fixes it.
pub fn explain(error: &rustls::Error) -> String {
    use rustls::Error as E;
    let hint = match error {
        E::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired",
        E::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet (check the clocks)",
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is signed by an authority ferry does not trust \
             (set tls.ca_file to the CA that signed it)"
        }
        E::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            "the server's certificate is not valid for this host name \
             (connect by the name in the certificate, or set tls.server_name)"
        }
        E::InvalidCertificate(_) => "the server's certificate was refused",
        E::InvalidMessage(InvalidMessage::InvalidContentType)
        | E::InvalidMessage(InvalidMessage::InvalidEmptyPayload)
        | E::InvalidMessage(InvalidMessage::UnknownProtocolVersion) => {
            "the server does not speak TLS (a plain-text port behind a TLS URL?)"
        }
        E::AlertReceived(_) => "the server refused the handshake",
        _ => "",
    };
    if hint.is_empty() {
        error.to_string()
    } else {
        format!("{hint} ({error})")
    }
}
