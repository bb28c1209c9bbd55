//! The Kubernetes API objects picolet understands: types, decoding from YAML or
//! JSON manifests, the defaults the API server would apply, and validation.

pub mod client;
pub mod decode;
pub mod defaults;
pub mod downward;
pub mod events;
pub mod fetch;
pub mod kubeconfig;
pub mod objects;
pub mod qos;
pub mod quantity;
pub mod time;
pub mod types;
pub mod validate;

pub use types::*;
