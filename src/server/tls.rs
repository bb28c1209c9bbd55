//! The `:10250` server's TLS: serving certificate from files or self-signed
//! and kept under the root dir; client certificates checked against the
//! client CA.
//!
//! STUB (issue 8): to be filled in.

use super::auth::User;
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Where the server's certificates come from.
pub struct TlsSettings<'a> {
    /// `tlsCertFile`/`tlsPrivateKeyFile`; both None: self-signed, generated once
    /// and kept under `root_dir` (upstream: `<root>/pki/kubelet.crt|key`).
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    /// `authentication.x509.clientCAFile`: client certificates signed by it are
    /// verified in the handshake; None: no client certificates are asked for.
    pub client_ca_file: Option<&'a Path>,
    pub root_dir: &'a Path,
    /// Names for the self-signed certificate's subjectAltName.
    pub node_name: &'a str,
    pub node_ip: Option<&'a str>,
}

/// Why the TLS configuration could not be built.
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kubelet server TLS: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server configuration. A client certificate is optional in the
/// handshake (token and anonymous clients have none); one that is sent must
/// verify against the client CA, else the handshake fails.
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let _ = s;
    Err(TlsError("not implemented yet".into()))
}

/// The user a verified client certificate names: CN → name, each O → a group.
pub fn client_user(cert: &CertificateDer<'_>) -> Option<User> {
    let _ = cert;
    None
}
