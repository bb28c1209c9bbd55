//! The `:10250` server's TLS: serving certificate from files or self-signed
//! and kept under the root dir; client certificates checked against the
//! client CA.
//!
//! STUB (issue 8): to be filled in.
