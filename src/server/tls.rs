//! The `:10250` server's TLS: serving certificate from files or self-signed
//! and kept under the root dir; client certificates checked against the
//! client CA; the user a client certificate names.
//!
//! Not here: reloading certificates or the client CA while running (upstream
//! watches the files), serving-certificate bootstrap through a CSR.

mod cert;
mod der;

use super::auth::User;
use crate::hostfs::write_atomic_mode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// The only protocol offered in ALPN: the API server's SPDY upgrades for
/// exec/attach/port-forward need HTTP/1.1.
const ALPN: &[u8] = b"http/1.1";

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The server configuration. A client certificate is optional in the
/// handshake (token and anonymous clients have none); one that is sent must
/// verify against the client CA, else the handshake fails.
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key) = match (s.cert_file, s.key_file) {
        (Some(c), Some(k)) => {
            let pair = load_pair(c, k).map_err(TlsError)?;
            let extfile = format!("extendedKeyUsage=serverAuth\\nsubjectAltName=DNS:{}", s.node_name);
            let what = || format!("serving certificate {} (key {})", c.display(), k.display());
            crate::api::client::check_pair(&pair.0, &pair.1, &extfile).map_err(|e| TlsError(format!("{}: {e}", what())))?;
            pair
        }
        (None, None) => self_signed(s, &provider, unix_now())?,
        _ => return Err(TlsError("tlsCertFile and tlsPrivateKeyFile must be given together".into())),
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match s.client_ca_file {
        Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| TlsError(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Certificates signed by the client CA bundle at `path` are accepted; none is
/// fine too (anonymous and token clients), the authenticator decides.
fn client_verifier(path: &Path, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let what = format!("client CA {}", path.display());
    let pem = std::fs::read(path).map_err(|e| TlsError(format!("{what}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, c) in crate::api::client::certs(&pem, &what).map_err(TlsError)?.iter().enumerate() {
        let unusable = |e| TlsError(format!("{what}: certificate {} of the bundle is not usable as a CA certificate ({e:?})", i + 1));
        roots.add(CertificateDer::from(c.der().to_vec())).map_err(unusable)?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("{what}: {e}")))
}

/// A PEM certificate chain and its private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn load_pair(cert_path: &Path, key_path: &Path) -> Result<Pair, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let chain = crate::api::client::certs(&read(cert_path)?, &cert_path.display().to_string())?;
    let key = crate::api::client::key(&read(key_path)?, &key_path.display().to_string())?;
    let key = PrivateKeyDer::try_from(key.der().to_vec()).map_err(|e| format!("{}: {e}", key_path.display()))?;
    Ok((chain.iter().map(|c| CertificateDer::from(c.der().to_vec())).collect(), key))
}

/// The self-signed pair under `<root>/pki`: reused while it loads, matches,
/// names this node and has not expired; otherwise generated and written anew.
fn self_signed(s: &TlsSettings, provider: &rustls::crypto::CryptoProvider, now: u64) -> Result<Pair, TlsError> {
    let dir = s.root_dir.join("pki");
    let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
    let existing = load_pair(&crt, &key).and_then(|pair| reusable(&pair, s.node_name, provider, now).map(|()| pair));
    match existing {
        Ok(pair) => return Ok(pair),
        Err(e) if crt.exists() || key.exists() => log::warn!("replacing the self-signed serving certificate: {e}"),
        Err(_) => {}
    }
    let ip = s.node_ip.and_then(|ip| match ip.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            log::warn!("node IP {ip:?} is not an IP address: left out of the serving certificate");
            None
        }
    });
    let g = cert::generate(s.node_name, ip, now).map_err(TlsError)?;
    let write = |path: &Path, data: String, mode| {
        write_atomic_mode(path, data.as_bytes(), mode).map_err(|e| TlsError(format!("writing {}: {e}", path.display())))
    };
    // The key first: a crash between the two leaves a pair that does not match, which is regenerated.
    write(&key, pem("PRIVATE KEY", &g.key_pkcs8), 0o600)?;
    write(&crt, pem("CERTIFICATE", &g.cert), 0o644)?;
    log::info!("generated a self-signed serving certificate in {}", crt.display());
    Ok((vec![CertificateDer::from(g.cert)], PrivateKeyDer::Pkcs8(g.key_pkcs8.into())))
}

fn reusable((chain, key): &Pair, node_name: &str, provider: &rustls::crypto::CryptoProvider, now: u64) -> Result<(), String> {
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), provider).map_err(|e| e.to_string())?;
    let info = der::cert_info(chain[0].as_ref()).ok_or("unreadable certificate")?;
    if info.not_after <= now {
        return Err("expired".into());
    }
    // Not checking notBefore: a board without a real-time clock may boot with its clock behind.
    let names_node = subject(&info).is_some_and(|a| a.iter().any(|(oid, v)| *oid == CN && v.starts_with(&format!("{node_name}@"))));
    if !names_node {
        return Err(format!("not issued for node {node_name}"));
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = crate::api::objects::base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Attribute types of a subject Name: 2.5.4.3 commonName, 2.5.4.10
/// organizationName, 1.3.6.1.4.1.57683.2 (Kubernetes' user UID).
const CN: &[u8] = &[0x55, 4, 3];
const O: &[u8] = &[0x55, 4, 10];
const UID: &[u8] = &[0x2b, 6, 1, 4, 1, 0x83, 0xc2, 0x53, 2];

/// The subject's attributes as (type OID content, string); None when one
/// that matters here is not a readable string.
fn subject<'a>(info: &der::CertInfo<'a>) -> Option<Vec<(&'a [u8], String)>> {
    let mut out = Vec::new();
    for (oid, tag, value) in der::name_attributes(info.subject)? {
        match der::string(tag, value) {
            Some(s) => out.push((oid, s)),
            None if [CN, O, UID].contains(&oid) => return None,
            None => {}
        }
    }
    Some(out)
}

/// The user a verified client certificate names, as upstream's x509
/// authenticator reads it: CN → name, each O → a group, the Kubernetes UID
/// attribute → uid, and the certificate's SHA-256 as the credential id.
/// None without a CN, or with more than one (or an empty) UID.
pub fn client_user(cert: &CertificateDer<'_>) -> Option<User> {
    let info = der::cert_info(cert.as_ref())?;
    let mut user = User::default();
    let mut uids = Vec::new();
    for (oid, value) in subject(&info)? {
        match oid {
            // Go keeps the last commonName.
            CN => user.name = value,
            O => user.groups.push(value),
            UID => uids.push(value),
            _ => {}
        }
    }
    if user.name.is_empty() {
        return None;
    }
    match uids.as_slice() {
        [] => {}
        [uid] if !uid.is_empty() => user.uid = uid.clone(),
        _ => return None,
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let id = format!("X509SHA256={}", crate::image::store::hex(digest.as_ref()));
    user.extra.insert("authentication.kubernetes.io/credential-id".into(), vec![id]);
    Some(user)
}

/// A self-signed certificate naming `cn@<time>`, for other modules' tests.
#[cfg(test)]
pub(super) fn test_certificate(node_name: &str) -> CertificateDer<'static> {
    CertificateDer::from(cert::generate(node_name, None, unix_now()).unwrap().cert)
}

#[cfg(test)]
mod tests;
