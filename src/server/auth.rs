//! Authentication and authorization of `:10250` requests, as upstream's kubelet
//! does them: x509 client certificates, bearer tokens through the TokenReview
//! webhook, anonymous when enabled; then a SubjectAccessReview per request.
//!
//! STUB (issue 8): to be filled in.

use crate::api::client::Client;
use rustls::pki_types::CertificateDer;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// From the configuration (see config.rs for the upstream names and defaults).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub node_name: String,
    pub anonymous: bool,
    pub token_webhook: bool,
    pub token_cache_ttl: Duration,
    /// "Webhook" or "AlwaysAllow".
    pub authorization_mode: String,
    pub authorized_ttl: Duration,
    pub unauthorized_ttl: Duration,
}

/// A refused request: 401 (who are you?) or 403 (not allowed), with the body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: u16,
    pub message: String,
}

/// Decides who a request comes from and whether they may make it.
pub struct Auth {
    settings: AuthSettings,
    client: Option<Arc<Client>>,
}

impl Auth {
    /// Errors when a webhook is asked for without an API server to ask.
    pub fn new(settings: AuthSettings, client: Option<Arc<Client>>) -> Result<Auth, String> {
        Ok(Auth { settings, client })
    }

    /// `peer`: the client certificate the handshake verified, if any;
    /// `authorization`: the Authorization header, if any.
    pub fn authenticate(&self, peer: Option<&CertificateDer<'_>>, authorization: Option<&str>) -> Result<User, Denied> {
        let _ = (peer, authorization, &self.client, &self.settings);
        Err(Denied { status: 401, message: "Unauthorized".into() })
    }

    /// Whether `user` may `method` `path` (query excluded) on this node.
    pub fn authorize(&self, user: &User, method: &str, path: &str) -> Result<(), Denied> {
        let _ = (user, method, path);
        Err(Denied { status: 403, message: "Forbidden".into() })
    }
}
