//! Pods on this node: where they come from and how they are run.

pub mod source;
