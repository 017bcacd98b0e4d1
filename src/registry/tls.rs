//! TLS to a registry: the system's roots plus what the user trusts for it
//! (`--ca-cert`, certs.d `*.crt`), a client certificate from certs.d, and
//! a verifier that also accepts a trusted certificate that is the server's
//! own, as docker (Go's crypto/x509) does. That is what Docker's guide for
//! private registries makes (`openssl req -x509 ...`: self-signed, marked
//! CA:TRUE), which webpki refuses as `CaUsedAsEndEntity`. Such a
//! certificate must be exactly one the user gave us, and still pass Go's
//! checks: the name, the validity period, the extended key usage if it has
//! one, and the handshake signature by its key. Nothing else is loosened.
//!
//! ureq's own rustls connector takes only a root list, so this module has
//! its own (the same few steps, with our rustls config).

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    RootCertStore, SignatureScheme, StreamOwned,
};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Either, LazyBuffers, NextTimeout, Transport, TransportAdapter,
};

use super::certs_d::{self, ClientPair};
use super::{RegistryError, paths, x509};

/// Everything TLS needs for one registry.
pub struct Trust {
    /// The registry as named (`HOST[:PORT]`), for certs.d and messages.
    registry: String,
    system: Vec<CertificateDer<'static>>,
    /// What the user trusts for this registry: `--ca-cert` and certs.d.
    extra: Vec<CertificateDer<'static>>,
    pub client: Option<ClientPair>,
    /// The certs.d directory in use, if any.
    pub cert_dir: Option<PathBuf>,
}

impl Trust {
    pub fn load(
        registry: &str,
        ca_cert: Option<&Path>,
        cert_dir: Option<&Path>,
    ) -> Result<Trust, RegistryError> {
        let mut extra = Vec::new();
        if let Some(path) = ca_cert {
            let certs = certs_d::read_certs(path)
                .map_err(|e| RegistryError::new(format!("--ca-cert {}", e.message())))?;
            extra.extend(certs);
        }
        let dir = certs_d::find(registry, cert_dir)?;
        let (client, cert_dir) = match dir {
            Some(d) => {
                extra.extend(d.roots);
                (d.client, Some(d.path))
            }
            None => (None, None),
        };
        Ok(Trust {
            registry: registry.to_string(),
            system: rustls_native_certs::load_native_certs().certs,
            extra,
            client,
            cert_dir,
        })
    }

    /// The rustls config: verified against our roots, or (`insecure`) not
    /// at all.
    pub fn config(&self, insecure: bool) -> Result<Arc<ClientConfig>, RegistryError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(self.system.iter().cloned());
        store.add_parsable_certificates(self.extra.iter().cloned());
        // No roots at all (an empty system store) leaves only the pinned
        // certificates; the builder refuses an empty store.
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .ok();
        let verifier = Verifier {
            webpki,
            pinned: self.extra.clone(),
            provider: provider.clone(),
            insecure,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::new(format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match &self.client {
            Some(pair) => builder
                .with_client_auth_cert(pair.chain.clone(), pair.key.clone_key())
                .map_err(|e| {
                    RegistryError::new(format!(
                        "client certificate {} with {}: {e}",
                        pair.cert_path.display(),
                        pair.key_path.display()
                    ))
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// Where a CA certificate for this registry would be read from: the
    /// certs.d directory in use, else the one docker and podman both read
    /// (the user's own when not root).
    pub fn ca_hint(&self) -> String {
        if let Some(dir) = &self.cert_dir {
            return dir.join("ca.crt").display().to_string();
        }
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let dir = if root {
            None
        } else {
            paths::user_config("containers/certs.d")
        };
        dir.unwrap_or_else(|| paths::etc("docker/certs.d"))
            .join(&self.registry)
            .join("ca.crt")
            .display()
            .to_string()
    }

    fn client_hint(&self) -> String {
        let dir = match &self.cert_dir {
            Some(d) => d.clone(),
            None => certs_d::search_path(&self.registry)
                .into_iter()
                .nth(1)
                .unwrap_or_default(),
        };
        dir.display().to_string()
    }

    /// One line for a TLS failure, saying what to do; `None` when it is
    /// not about certificates (the caller knows better).
    pub fn explain(&self, err: &rustls::Error) -> Option<String> {
        use rustls::Error as E;
        let fix_ca = || {
            format!(
                "put the CA's certificate (or the registry's own, if self-signed) in {}, \
                 or give --ca-cert FILE",
                self.ca_hint()
            )
        };
        let msg = match err {
            E::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the registry's certificate is signed by an unknown authority; {}",
                fix_ca()
            ),
            E::InvalidCertificate(CertificateError::Other(o))
                if o.to_string().contains("CaUsedAsEndEntity") =>
            {
                format!(
                    "the registry's certificate is a self-signed CA certificate that is \
                     not trusted; {}",
                    fix_ca()
                )
            }
            E::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "the registry's certificate is not valid for that name (see its subjectAltName)"
                .to_string(),
            E::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => "the registry's certificate has expired".to_string(),
            E::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => "the registry's certificate is not valid yet (check the clock)".to_string(),
            E::InvalidCertificate(c) => {
                format!("the registry's certificate is refused: {c:?}")
            }
            E::AlertReceived(
                a @ (AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::AccessDenied),
            ) => match &self.client {
                None => format!(
                    "the registry asks for a client certificate (TLS alert {a:?}): put it as \
                     client.cert with its client.key in {}, or give --cert-dir DIR",
                    self.client_hint()
                ),
                Some(pair) => format!(
                    "the registry refused the client certificate {} (TLS alert {a:?})",
                    pair.cert_path.display()
                ),
            },
            _ => return None,
        };
        Some(msg)
    }
}

#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The user's certificates: accepted as the server's own too.
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    insecure: bool,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let chained = match &self.webpki {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        match chained {
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                verify_pinned(end_entity, server_name, now)
            }
            other => other,
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Go's checks for a leaf that is itself a trusted root: name, validity,
/// extended key usage (serverAuth or any, if the extension is there).
fn verify_pinned(
    cert: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let invalid = |e| Err(rustls::Error::InvalidCertificate(e));
    verify_server_name(&ParsedCertificate::try_from(cert)?, name)?;
    let Ok(facts) = x509::facts(cert.as_ref()) else {
        return invalid(CertificateError::BadEncoding);
    };
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < facts.not_before {
        return invalid(CertificateError::NotValidYet);
    }
    if now > facts.not_after {
        return invalid(CertificateError::Expired);
    }
    if let Some(usages) = &facts.ext_key_usage
        && !usages
            .iter()
            .any(|u| u == x509::SERVER_AUTH || u == x509::ANY_EKU)
    {
        return invalid(CertificateError::InvalidPurpose);
    }
    Ok(ServerCertVerified::assertion())
}

/// Wraps ureq's transports in TLS with our config (in place of ureq's
/// `RustlsConnector`, which takes only roots).
pub struct Connector {
    pub config: Arc<ClientConfig>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tls::Connector")
    }
}

impl<In: Transport> ureq::unversioned::transport::Connector<In> for Connector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or(ureq::Error::Tls("no host to verify"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| ureq::Error::Tls("not a valid TLS server name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        // One deadline for the whole buffer, however many records and
        // system calls it takes (see `tcp`).
        self.stream
            .get_mut()
            .set_timeout(whole(timeout.for_write()));
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(whole(timeout.for_read()));
        let input = self.buffers.input_append_buf();
        let n = self.stream.read(input)?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// `t` as one budget for everything below: no per-call limits that would
/// restart on each system call.
fn whole(t: NextTimeout) -> NextTimeout {
    NextTimeout {
        per_read: None,
        per_write: None,
        ..t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::Error::InvalidCertificate;

    #[test]
    fn pinned_certificates_get_the_checks_go_applies() {
        // localhost, serverAuth, CA:TRUE, valid 2026-11-30 to 2036-11-27.
        let cert = CertificateDer::from(x509::tests::der(x509::tests::SELF_SIGNED));
        let name = ServerName::try_from("localhost").unwrap();
        let at = |secs| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        assert!(verify_pinned(&cert, &name, at(1_800_000_000)).is_ok());
        assert!(matches!(
            verify_pinned(&cert, &name, at(1_700_000_000)),
            Err(InvalidCertificate(CertificateError::NotValidYet))
        ));
        assert!(matches!(
            verify_pinned(&cert, &name, at(2_200_000_000)),
            Err(InvalidCertificate(CertificateError::Expired))
        ));
        let other = ServerName::try_from("other.example").unwrap();
        assert!(verify_pinned(&cert, &other, at(1_800_000_000)).is_err());
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        assert!(verify_pinned(&cert, &ip, at(1_800_000_000)).is_err());
    }
}
