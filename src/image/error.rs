//! The one error type of the image module. Every variant names what failed and
//! the path or reference it failed on; messages are short and lowercase.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong importing, resolving or mounting an image.
#[derive(Debug)]
pub enum ImageError {
    /// An image reference that does not parse.
    InvalidReference { reference: String, reason: String },
    /// A filesystem operation failed.
    Io { what: String, path: PathBuf, source: std::io::Error },
    /// A mount-related system call failed.
    Sys { what: String, path: PathBuf, source: nix::Error },
    /// A blob's content does not hash to the digest it is named by.
    DigestMismatch { blob: String, archive: PathBuf, actual: String },
    /// A JSON document (manifest, index, config, store record) is malformed.
    Json { what: String, path: PathBuf, source: serde_json::Error },
    /// A document is bigger than we are willing to read into memory.
    TooLarge { what: String, path: PathBuf, limit: u64 },
    /// An archive is structurally wrong (missing file, bad layout, ...).
    BadArchive { archive: PathBuf, reason: String },
    /// A blob an image needs is neither in the archive nor in the store.
    MissingBlob { digest: String, archive: PathBuf },
    /// A multi-platform index offers nothing for this host.
    NoPlatform { archive: PathBuf, wanted: String, offered: Vec<String> },
    /// A layer entry that could not be unpacked: it would reach outside the
    /// layer directory (through `..`, a symlink, a hard link, a whiteout of
    /// `..`), has an unusable header, or writing it failed.
    LayerEntry { layer: String, entry: String, reason: String },
    /// A registry refused or failed.
    Registry { url: String, reason: String },
    /// No registry answered: connection refused, name not resolved, timed
    /// out, or a gateway in front of it said 502/503/504. Kept apart so
    /// `imagePullPolicy: Always` can fall back to the local image.
    Unreachable { url: String, reason: String },
    /// The registry configuration file is malformed.
    BadConfig { path: PathBuf, reason: String },
    /// A docker config with credentials (a pull Secret, the node's file) is
    /// malformed; `source` names it.
    BadCredentials { source: String, reason: String },
}

impl ImageError {
    pub(crate) fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io { what: what.into(), path: path.into(), source }
    }

    pub(crate) fn bad(archive: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ImageError::BadArchive { archive: archive.into(), reason: reason.into() }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ImageError::*;
        match self {
            InvalidReference { reference, reason } => {
                write!(f, "invalid image reference {reference:?}: {reason}")
            }
            Io { what, path, source } => write!(f, "{what} {}: {source}", path.display()),
            Sys { what, path, source } => write!(f, "{what} {}: {source}", path.display()),
            DigestMismatch { blob, archive, actual } => write!(
                f,
                "sha256 mismatch for blob {blob} in {}: content hashes to {actual}",
                archive.display()
            ),
            Json { what, path, source } => write!(f, "bad {what} in {}: {source}", path.display()),
            TooLarge { what, path, limit } => {
                write!(f, "{what} in {} is larger than {limit} bytes", path.display())
            }
            BadArchive { archive, reason } => write!(f, "bad image archive {}: {reason}", archive.display()),
            MissingBlob { digest, archive } => {
                write!(f, "blob {digest} needed by {} is missing", archive.display())
            }
            NoPlatform { archive, wanted, offered } => write!(
                f,
                "no image for {wanted} in {} (offered: {})",
                archive.display(),
                if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
            ),
            LayerEntry { layer, entry, reason } => write!(f, "layer {layer}: entry {entry:?}: {reason}"),
            Registry { url, reason } | Unreachable { url, reason } => write!(f, "{url}: {reason}"),
            BadConfig { path, reason } => write!(f, "registry config {}: {reason}", path.display()),
            BadCredentials { source, reason } => write!(f, "registry credentials in {source}: {reason}"),
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImageError::Io { source, .. } => Some(source),
            ImageError::Sys { source, .. } => Some(source),
            ImageError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}
