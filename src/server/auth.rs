//! Authentication and authorization of `:10250` requests, as upstream's kubelet
//! does them: x509 client certificates, bearer tokens through the TokenReview
//! webhook, anonymous when enabled; then a SubjectAccessReview per request.
//!
//! STUB (issue 8): to be filled in.

use std::collections::BTreeMap;

/// An authenticated user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}
