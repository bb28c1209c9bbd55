//! Images without a registry: a content-addressed store under the root dir,
//! filled from OCI layout and `docker save` archives, unpacked into read-only
//! layer directories that containers mount with overlayfs.

pub mod config;
pub use config::ImageConfig;
