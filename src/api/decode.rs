//! Decoding manifests (YAML, possibly several documents, or JSON) into Pods.
