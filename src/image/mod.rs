//! Images without a registry: a content-addressed store under the root dir,
//! filled from OCI layout and `docker save` archives, unpacked into read-only
//! layer directories that containers mount with overlayfs.

pub mod config;
pub mod error;
pub mod import;
pub mod reference;
pub mod rootfs;
pub mod store;
mod unpack;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::ImageConfig;
pub use error::ImageError;
pub use reference::normalize;
pub use rootfs::{mount_rootfs, unmount_rootfs};
pub use store::Store;
