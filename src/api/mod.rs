//! The Kubernetes API as picolet speaks it: the objects it understands
//! (types), decoding them from YAML or JSON manifests, the defaults the API
//! server would apply, validation, and what follows from a pod spec alone
//! (QoS class, downward API values, object references). Also the client side
//! of the API server: the HTTP client and kubeconfig, the local store of
//! configMaps, secrets and tokens with the thread that fills it (fetch), and
//! the event correlator.
//!
//! The ground floor: imports nothing of picolet's but `hostfs`.
//! Not here: what picolet does with pods (pod/), the node's own objects
//! (node::status, node::agent).

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
