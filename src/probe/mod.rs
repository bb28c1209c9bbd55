//! Health checks and lifecycle hooks: probes (startup, liveness, readiness)
//! and postStart/preStop hooks, turned into runnable `Action`s and run
//! without blocking the manager.
//!
//! - `state`: the pure per-container state machine (what is due, thresholds,
//!   when to kill).
//! - `http`: the pure parts of an HTTP/1.1 probe (request, status line,
//!   redirect rules).
//! - `run`: the async side: TCP and HTTP connections made *inside* the pod's
//!   network namespace, and exec, each bounded by its timeout.
//! - `nsexec`: exec by entering the container's namespaces directly (setns,
//!   fork, exec with the container's user, capabilities and environment);
//!   `runc exec` is the fallback for what it does not reproduce.
//!
//! - `grpc`: the pure parts of a gRPC health check (HTTP/2 frames, verdict).
//!
//! Imports only api. Not here: deciding what a failure means for the pod
//! (pod/worker).
//! `scheme: HTTPS` is TLS without certificate checks (run.rs), as upstream.

pub mod grpc;
pub mod http;
pub mod nsexec;
pub mod run;
pub mod state;

use crate::api::{Container, IntOrString, LifecycleHandler, ProbeHandler};
use std::fmt;
use std::time::Duration;

/// What to run, resolved from a handler and its container.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A command run inside the container; exit 0 is success.
    Exec(Vec<String>),
    /// GET `path` on host:port; 200–399 is success.
    Http { host: String, port: u16, path: String, headers: Vec<(String, String)>, https: bool },
    /// A TCP connect to host:port.
    Tcp { host: String, port: u16 },
    /// `grpc.health.v1.Health/Check` on host:port; SERVING is success.
    Grpc { host: String, port: u16, service: String },
    /// Hooks only: wait.
    Sleep(Duration),
    /// A handler picolet cannot run: always fails with this message.
    Unsupported(String),
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    /// Success, with something worth a log line (a redirect to another host).
    Warning(String),
    Failure(String),
}

impl Outcome {
    pub fn ok(&self) -> bool {
        !matches!(self, Outcome::Failure(_))
    }
}

/// Why a probe or hook could not be run or failed.
#[derive(Debug)]
pub enum ProbeError {
    Port(String),
    Connect(String, std::io::Error),
    Timeout(Duration),
    Http(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ProbeError::Port(p) => write!(f, "port {p:?} is not a port of the container"),
            ProbeError::Connect(addr, e) => write!(f, "dial tcp {addr}: {e}"),
            ProbeError::Timeout(d) => write!(f, "timeout after {}s", d.as_secs_f32()),
            ProbeError::Http(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Resolves a port number or a name among the container's ports.
pub fn port(p: &IntOrString, c: &Container) -> Result<u16, ProbeError> {
    let n = match p {
        IntOrString::Int(n) => *n,
        IntOrString::Str(s) => match s.parse::<i32>() {
            Ok(n) => n,
            Err(_) => c.ports.iter().find(|cp| &cp.name == s).map(|cp| cp.container_port).ok_or_else(|| ProbeError::Port(s.clone()))?,
        },
    };
    u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| ProbeError::Port(n.to_string()))
}

/// Upstream aims at the pod IP when no host is given; a pod without CNI has
/// none yet, and loopback in its own namespace reaches the same listeners.
fn host_or(host: &str, pod_ip: &str) -> String {
    if !host.is_empty() {
        host.to_string()
    } else if !pod_ip.is_empty() {
        pod_ip.to_string()
    } else {
        "127.0.0.1".into()
    }
}

fn http_action(g: &crate::api::HttpGetAction, c: &Container, pod_ip: &str) -> Action {
    match port(&g.port, c) {
        Ok(port) => Action::Http {
            host: host_or(&g.host, pod_ip),
            port,
            path: if g.path.is_empty() { "/".into() } else { g.path.clone() },
            headers: g.http_headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            https: g.scheme.eq_ignore_ascii_case("HTTPS"),
        },
        Err(e) => Action::Unsupported(e.to_string()),
    }
}

/// The action of a probe handler.
pub fn probe_action(h: &ProbeHandler, c: &Container, pod_ip: &str) -> Action {
    if let Some(e) = &h.exec {
        Action::Exec(e.command.clone())
    } else if let Some(g) = &h.http_get {
        http_action(g, c, pod_ip)
    } else if let Some(t) = &h.tcp_socket {
        match port(&t.port, c) {
            Ok(port) => Action::Tcp { host: host_or(&t.host, pod_ip), port },
            Err(e) => Action::Unsupported(e.to_string()),
        }
    } else if let Some(g) = &h.grpc {
        match u16::try_from(g.port) {
            Ok(port) if port > 0 => Action::Grpc { host: host_or("", pod_ip), port, service: g.service.clone().unwrap_or_default() },
            _ => Action::Unsupported(format!("invalid grpc port {}", g.port)),
        }
    } else {
        Action::Unsupported("probe has no handler".into())
    }
}

/// The action of a lifecycle hook.
pub fn hook_action(h: &LifecycleHandler, c: &Container, pod_ip: &str) -> Action {
    if let Some(e) = &h.exec {
        Action::Exec(e.command.clone())
    } else if let Some(g) = &h.http_get {
        http_action(g, c, pod_ip)
    } else if let Some(s) = &h.sleep {
        Action::Sleep(crate::api::time::seconds(s.seconds))
    } else if h.tcp_socket.is_some() {
        Action::Unsupported("tcpSocket is not supported as a lifecycle hook".into())
    } else {
        Action::Unsupported("hook has no handler".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerPort, GrpcAction, HttpGetAction, HttpHeader, TcpSocketAction};

    fn c() -> Container {
        Container { ports: vec![ContainerPort { name: "web".into(), container_port: 8080, ..Default::default() }], ..Default::default() }
    }

    #[test]
    fn ports_by_number_and_name() {
        assert_eq!(port(&IntOrString::Int(80), &c()).unwrap(), 80);
        assert_eq!(port(&IntOrString::Str("web".into()), &c()).unwrap(), 8080);
        assert_eq!(port(&IntOrString::Str("81".into()), &c()).unwrap(), 81);
        assert!(port(&IntOrString::Str("nope".into()), &c()).is_err());
        assert!(port(&IntOrString::Int(70000), &c()).is_err());
    }

    #[test]
    fn actions() {
        let h = ProbeHandler {
            http_get: Some(HttpGetAction {
                port: IntOrString::Str("web".into()),
                path: "/healthz".into(),
                scheme: "HTTPS".into(),
                http_headers: vec![HttpHeader { name: "X-A".into(), value: "b".into() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            probe_action(&h, &c(), ""),
            Action::Http { host: "127.0.0.1".into(), port: 8080, path: "/healthz".into(), headers: vec![("X-A".into(), "b".into())], https: true }
        );
        let t = ProbeHandler { tcp_socket: Some(TcpSocketAction { port: IntOrString::Int(9), host: String::new() }), ..Default::default() };
        assert_eq!(probe_action(&t, &c(), "10.0.0.5"), Action::Tcp { host: "10.0.0.5".into(), port: 9 });
        let g = ProbeHandler { grpc: Some(GrpcAction { port: 9, service: None }), ..Default::default() };
        assert_eq!(probe_action(&g, &c(), ""), Action::Grpc { host: "127.0.0.1".into(), port: 9, service: String::new() });
        let s = LifecycleHandler { sleep: Some(crate::api::SleepAction { seconds: 2 }), ..Default::default() };
        assert_eq!(hook_action(&s, &c(), ""), Action::Sleep(Duration::from_secs(2)));
    }
}
