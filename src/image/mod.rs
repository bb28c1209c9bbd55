//! Images: a content-addressed store under the root dir, filled from OCI
//! layout and `docker save` archives (`import.rs`) or pulled from OCI
//! distribution registries (`registry.rs` talks to them and picks the
//! credentials to try, `credentials.rs` reads keyrings, `pull.rs` picks the
//! platform and streams verified blobs into the store), unpacked into
//! read-only layer directories that containers mount with overlayfs; image
//! garbage collection (`gc.rs`).
//!
//! Imports only api and hostfs. Not here: pull policy and back-off per pod
//! (pod::worker::pull), the `images` subcommands (cli.rs).

pub mod config;
pub mod credentials;
pub mod error;
pub mod gc;
pub mod import;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod resolve;
pub mod rootfs;
pub mod store;
mod unpack;

#[cfg(test)]
pub(crate) mod testutil;

pub use config::ImageConfig;
pub use error::ImageError;
pub use reference::normalize;
pub use rootfs::{mount_rootfs, unmount_rootfs};
pub use pull::Platform;
pub use registry::Registries;
pub use store::Store;
