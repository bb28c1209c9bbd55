//! A container's environment and command line, as Kubernetes computes them.
//!
//! Does: merge image env with the container's `env` list, `$(VAR)` expansion,
//! `fieldRef` (downward API) values, and the command/args vs Entrypoint/Cmd rule.
//! Doesn't: `envFrom`, `configMapKeyRef`, `secretKeyRef`, `resourceFieldRef`
//! (those need a cluster or resource plumbing) and service-link variables.

use crate::api::types::{Container, EnvVar, ObjectFieldSelector, Pod};
use crate::image::config::ImageConfig;
use std::fmt;

/// What a `fieldRef` may read besides the pod itself.
pub struct FieldContext<'a> {
    pub pod: &'a Pod,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
}

/// Why a container's env or command could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvError {
    /// A `valueFrom` source picolet cannot resolve standalone.
    Unsupported { container: String, var: String, source: &'static str },
    /// A `fieldRef.fieldPath` that is not one of the supported paths.
    BadFieldPath { container: String, var: String, path: String },
    /// `envFrom` is set (needs ConfigMaps/Secrets).
    EnvFrom { container: String },
    /// Neither the container nor the image gives a command.
    NoCommand { container: String },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Unsupported { container, var, source } => write!(
                f,
                "container {container}: env {var}: {source} needs a cluster (not supported standalone)"
            ),
            EnvError::BadFieldPath { container, var, path } => {
                write!(f, "container {container}: env {var}: unsupported fieldRef path {path:?}")
            }
            EnvError::EnvFrom { container } => {
                write!(f, "container {container}: envFrom needs a cluster (not supported standalone)")
            }
            EnvError::NoCommand { container } => {
                write!(f, "container {container}: no command specified (neither command/args nor image Entrypoint/Cmd)")
            }
        }
    }
}

impl std::error::Error for EnvError {}

/// Env for one container, in order: image env first (`KEY=VALUE`), then the container's
/// `env` list. `$(VAR)` in a value expands only variables defined earlier in the
/// container's list (image env is not used, as upstream); `$$` is a literal `$`; an
/// unresolved `$(X)` stays as written. A later entry with the same name replaces the
/// value but keeps the first position.
pub fn container_env(
    ctx: &FieldContext,
    c: &Container,
    image_env: &[String],
) -> Result<Vec<(String, String)>, EnvError> {
    if !c.env_from.is_empty() {
        return Err(EnvError::EnvFrom { container: c.name.clone() });
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if !k.is_empty() {
            set(&mut out, k, v.to_string());
        }
    }
    // Only the container's own earlier variables take part in expansion.
    let mut own: Vec<(String, String)> = Vec::new();
    for var in &c.env {
        let value = env_value(ctx, c, var, &own)?;
        set(&mut own, &var.name, value.clone());
        set(&mut out, &var.name, value);
    }
    Ok(out)
}

fn set(list: &mut Vec<(String, String)>, k: &str, v: String) {
    match list.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => list.push((k.to_string(), v)),
    }
}

fn env_value(
    ctx: &FieldContext,
    c: &Container,
    var: &EnvVar,
    earlier: &[(String, String)],
) -> Result<String, EnvError> {
    let unsupported = |source| EnvError::Unsupported {
        container: c.name.clone(),
        var: var.name.clone(),
        source,
    };
    match &var.value_from {
        None => Ok(expand(var.value.as_deref().unwrap_or(""), earlier)),
        Some(src) => {
            if let Some(f) = &src.field_ref {
                return field_value(ctx, f).ok_or_else(|| EnvError::BadFieldPath {
                    container: c.name.clone(),
                    var: var.name.clone(),
                    path: f.field_path.clone(),
                });
            }
            if src.config_map_key_ref.is_some() {
                return Err(unsupported("configMapKeyRef"));
            }
            if src.secret_key_ref.is_some() {
                return Err(unsupported("secretKeyRef"));
            }
            if src.resource_field_ref.is_some() {
                return Err(unsupported("resourceFieldRef"));
            }
            Err(unsupported("empty valueFrom"))
        }
    }
}

/// The downward-API value of `fieldPath`, or None if the path is not supported.
fn field_value(ctx: &FieldContext, f: &ObjectFieldSelector) -> Option<String> {
    let pod = ctx.pod;
    let path = f.field_path.as_str();
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix('[')?.strip_suffix(']')?;
        let key = rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
        Some(key.to_string())
    };
    if let Some(k) = subscript("metadata.labels") {
        return Some(pod.metadata.labels.get(&k).cloned().unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Some(pod.metadata.annotations.get(&k).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => pod.spec.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.service_account_name.clone(),
        // picolet knows a single address of each kind so far.
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.to_string(),
        _ => return None,
    })
}

/// Kubernetes `$(VAR)` expansion: `$(NAME)` → value of NAME in `vars` (the last
/// entry wins), kept as written if undefined; `$$` → `$`; any other `$` is literal.
pub fn expand(s: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    // Unterminated reference: keep "$(" and go on after it.
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Kubernetes' rule: `command` replaces the image Entrypoint (and the image Cmd is then
/// ignored); `args` replace Cmd. `$(VAR)` is expanded in the container's command and
/// args with the variables of the container's own `env` list (values taken from `env`,
/// the result of [`container_env`]); image Entrypoint/Cmd are used verbatim.
/// An empty result is [`EnvError::NoCommand`].
pub fn command_line(
    c: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, EnvError> {
    // Upstream expands with the kubelet-made env only, not with image env.
    let vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| c.env.iter().any(|e| &e.name == k))
        .cloned()
        .collect();
    let ex = |list: &[String]| list.iter().map(|a| expand(a, &vars)).collect::<Vec<_>>();
    let mut argv = if !c.command.is_empty() {
        let mut v = ex(&c.command);
        v.extend(ex(&c.args));
        v
    } else {
        let mut v = image.entrypoint.clone();
        if !c.args.is_empty() {
            v.extend(ex(&c.args));
        } else {
            v.extend(image.cmd.iter().cloned());
        }
        v
    };
    if argv.is_empty() || argv[0].is_empty() {
        argv.clear();
        return Err(EnvError::NoCommand { container: c.name.clone() });
    }
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::EnvVarSource;

    fn v(n: &str, val: &str) -> EnvVar {
        EnvVar { name: n.into(), value: Some(val.into()), value_from: None }
    }
    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }
    fn field(n: &str, path: &str) -> EnvVar {
        EnvVar {
            name: n.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { api_version: "v1".into(), field_path: path.into() }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn expand_table() {
        let vs = vars(&[("A", "x"), ("B", "y")]);
        let cases = [
            ("$(A)", "x"),
            ("pre-$(A)-$(B)-post", "pre-x-y-post"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("$(C)", "$(C)"),
            ("$()", "$()"),
            ("$A", "$A"),
            ("a$", "a$"),
            ("$(A", "$(A"),
            ("$((A))", "$((A))"),
            ("no vars", "no vars"),
            ("$$", "$"),
            ("ünï$(A)", "ünïx"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vs), want, "input {input:?}");
        }
    }

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = "default".into();
        p.metadata.uid = "u-1".into();
        p.metadata.labels.insert("app".into(), "nginx".into());
        p.metadata.annotations.insert("a/b".into(), "note".into());
        p.spec.node_name = "pi".into();
        p.spec.service_account_name = "sa".into();
        p
    }

    #[test]
    fn env_order_override_and_expansion() {
        let p = pod();
        let ctx = FieldContext { pod: &p, host_ip: "10.0.0.2", pod_ip: "10.1.0.5" };
        let c = Container {
            name: "c".into(),
            env: vec![
                v("B", "$(A)-b"),   // A not yet defined in the container list
                v("A", "a"),
                v("C", "$(A)-$(B)-$(PATH)"), // PATH is image env: not expanded
                v("PATH", "/x"),
                v("A", "a2"),       // override keeps position
                v("D", "$(A)"),
            ],
            ..Default::default()
        };
        let image_env = vec!["PATH=/usr/bin".to_string(), "LANG=C.UTF-8".to_string(), "EMPTY".to_string()];
        let env = container_env(&ctx, &c, &image_env).unwrap();
        assert_eq!(
            env,
            vars(&[
                ("PATH", "/x"),
                ("LANG", "C.UTF-8"),
                ("EMPTY", ""),
                ("B", "$(A)-b"),
                ("A", "a2"),
                ("C", "a-$(A)-b-$(PATH)"),
                ("D", "a2"),
            ])
        );
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let ctx = FieldContext { pod: &p, host_ip: "10.0.0.2", pod_ip: "10.1.0.5" };
        let c = Container {
            name: "c".into(),
            env: vec![
                field("N", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("U", "metadata.uid"),
                field("L", "metadata.labels['app']"),
                field("L2", "metadata.labels['missing']"),
                field("AN", "metadata.annotations['a/b']"),
                field("NODE", "spec.nodeName"),
                field("SA", "spec.serviceAccountName"),
                field("H", "status.hostIP"),
                field("HS", "status.hostIPs"),
                field("P", "status.podIP"),
                field("PS", "status.podIPs"),
                v("X", "$(N).$(NS)"),
            ],
            ..Default::default()
        };
        let env = container_env(&ctx, &c, &[]).unwrap();
        let got: Vec<&str> = env.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            got,
            ["web", "default", "u-1", "nginx", "", "note", "pi", "sa", "10.0.0.2", "10.0.0.2", "10.1.0.5", "10.1.0.5", "web.default"]
        );
    }

    #[test]
    fn unsupported_sources() {
        let p = pod();
        let ctx = FieldContext { pod: &p, host_ip: "", pod_ip: "" };
        let mut c = Container { name: "c".into(), env: vec![field("X", "spec.bogus")], ..Default::default() };
        assert!(matches!(container_env(&ctx, &c, &[]), Err(EnvError::BadFieldPath { .. })));
        c.env = vec![EnvVar {
            name: "S".into(),
            value: None,
            value_from: Some(EnvVarSource { secret_key_ref: Some(Default::default()), ..Default::default() }),
        }];
        let e = container_env(&ctx, &c, &[]).unwrap_err();
        assert!(e.to_string().contains("secretKeyRef needs a cluster"), "{e}");
        c.env[0].value_from = Some(EnvVarSource { config_map_key_ref: Some(Default::default()), ..Default::default() });
        let e = container_env(&ctx, &c, &[]).unwrap_err();
        assert!(e.to_string().contains("configMapKeyRef needs a cluster"), "{e}");
    }

    #[test]
    fn command_line_table() {
        let image = ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["dflt".into(), "$(A)".into()],
            ..Default::default()
        };
        let bare = ImageConfig::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = |cmd: &[&str], args: &[&str]| Container {
            name: "c".into(),
            command: s(cmd),
            args: s(args),
            env: vec![v("A", "1")],
            ..Default::default()
        };
        let env = vars(&[("IMG", "i"), ("A", "1")]);
        let cases: Vec<(Container, &ImageConfig, Result<Vec<String>, ()>)> = vec![
            (c(&["/bin/sh", "-c"], &[]), &image, Ok(s(&["/bin/sh", "-c"]))),
            (c(&[], &["x", "$(A)", "$(IMG)"]), &image, Ok(s(&["/entry", "x", "1", "$(IMG)"]))),
            (c(&["run", "$(A)"], &["$$(A)"]), &image, Ok(s(&["run", "1", "$(A)"]))),
            (c(&[], &[]), &image, Ok(s(&["/entry", "dflt", "$(A)"]))),
            (c(&[], &["only"]), &bare, Ok(s(&["only"]))),
            (c(&[], &[]), &bare, Err(())),
        ];
        for (i, (ctr, img, want)) in cases.into_iter().enumerate() {
            let got = command_line(&ctr, img, &env).map_err(|_| ());
            assert_eq!(got, want, "case {i}");
        }
    }
}
