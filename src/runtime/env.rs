//! A container's environment and command line, as Kubernetes computes them.
//!
//! Does: image env, then what the kubelet makes (upstream's
//! makeEnvironmentVariables): `envFrom` (ConfigMaps and Secrets, with
//! `prefix`), the container's `env` list with `$(VAR)` expansion and every
//! `valueFrom` source (`fieldRef`, `resourceFieldRef`, `configMapKeyRef`,
//! `secretKeyRef`, optional ones honoured), and service-link variables
//! (`<SVC>_SERVICE_HOST`, `KUBERNETES_SERVICE_HOST`, ...) from the Services in
//! the object store; and the command/args vs Entrypoint/Cmd rule.
//! Errors carry upstream's wording, and keep the container waiting in
//! CreateContainerConfigError until the store has what is missing.

use crate::api::downward::{resource_value, split_subscript, Allocatable};
use crate::api::objects::{ObjData, ObjectKind, ObjectStore, ServiceInfo};
use crate::api::types::{Container, EnvVar, ObjectFieldSelector, Pod};
use crate::api::validate::is_env_var_name;
use crate::image::config::ImageConfig;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// What env values may read besides the container itself.
pub struct FieldContext<'a> {
    pub pod: &'a Pod,
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    /// The node's allocatable: what unset limits stand for in resourceFieldRef.
    pub node: &'a Allocatable,
    /// ConfigMaps, Secrets and Services.
    pub objects: &'a ObjectStore,
}

/// Why a container's env or command could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvError {
    /// A `fieldRef.fieldPath` that is not one of the supported paths.
    BadFieldPath { container: String, var: String, path: String },
    /// An object, key or value that cannot be had, in upstream's words
    /// (`configmap "x" not found`, `couldn't find key k in ConfigMap ns/x`).
    Source(String),
    /// Neither the container nor the image gives a command.
    NoCommand { container: String },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::BadFieldPath { container, var, path } => {
                write!(f, "container {container}: env {var}: unsupported fieldRef path {path:?}")
            }
            EnvError::Source(m) => f.write_str(m),
            EnvError::NoCommand { container } => {
                write!(f, "container {container}: no command specified (neither command/args nor image Entrypoint/Cmd)")
            }
        }
    }
}

impl std::error::Error for EnvError {}

/// A container's environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerEnv {
    /// The environment to run with: image env (`KEY=VALUE`), overridden and
    /// extended by `own`.
    pub env: Vec<(String, String)>,
    /// What the kubelet makes, in order: envFrom, env, then service links not
    /// set otherwise. `$(VAR)` in command and args expands with these.
    pub own: Vec<(String, String)>,
    /// envFrom keys skipped as invalid names (upstream's
    /// InvalidEnvironmentVariableNames event), for the caller to log.
    pub warnings: Vec<String>,
}

/// Env for container `c` of `ctx.pod`. `$(VAR)` in a value expands with the
/// envFrom variables, the container's variables defined earlier in its list,
/// then service-link variables (not image env, as upstream); `$$` is a
/// literal `$`; an unresolved `$(X)` stays as written. A later entry with the
/// same name replaces the value but keeps the first position. A missing
/// optional object or key leaves the variable out.
pub fn container_env(ctx: &FieldContext, c: &Container, image_env: &[String]) -> Result<ContainerEnv, EnvError> {
    let pod = ctx.pod;
    let ns = pod.metadata.namespace.as_str();
    let services = service_env(ctx)?;
    let mut objects = Objects { store: ctx.objects, ns, cache: HashMap::new() };
    let mut own: Vec<(String, String)> = Vec::new();
    let mut warnings = Vec::new();
    for ef in &c.env_from {
        let (kind, r) = match (&ef.config_map_ref, &ef.secret_ref) {
            (Some(r), _) => (ObjectKind::ConfigMap, r),
            (None, Some(r)) => (ObjectKind::Secret, r),
            (None, None) => continue,
        };
        let Some(obj) = objects.get(kind, &r.name, r.optional.unwrap_or(false))? else { continue };
        let mut invalid = Vec::new();
        for (k, v) in &obj.data {
            let name = format!("{}{k}", ef.prefix);
            if is_env_var_name(&name) {
                set(&mut own, &name, String::from_utf8_lossy(v).into_owned());
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            let what = if kind == ObjectKind::ConfigMap { "configMap" } else { "secret" };
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {what} {ns}/{} were skipped since they are considered invalid environment variable names.",
                invalid.join(", "),
                r.name
            ));
        }
    }
    for var in &c.env {
        let value = match (var.value.as_deref(), &var.value_from) {
            (Some(v), _) if !v.is_empty() => expand_with(v, |name| lookup(&own, name).or_else(|| lookup(&services, name))),
            (_, Some(_)) => match env_value(ctx, c, var, &mut objects)? {
                Some(v) => v,
                None => continue,
            },
            _ => String::new(),
        };
        set(&mut own, &var.name, value);
    }
    for (k, v) in services {
        if lookup(&own, &k).is_none() {
            own.push((k, v));
        }
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        if !k.is_empty() {
            set(&mut env, k, v.to_string());
        }
    }
    for (k, v) in &own {
        set(&mut env, k, v.clone());
    }
    Ok(ContainerEnv { env, own, warnings })
}

fn set(list: &mut Vec<(String, String)>, k: &str, v: String) {
    match list.iter_mut().find(|(name, _)| name == k) {
        Some(slot) => slot.1 = v,
        None => list.push((k.to_string(), v)),
    }
}

fn lookup<'a>(list: &'a [(String, String)], k: &str) -> Option<&'a str> {
    list.iter().rev().find(|(name, _)| name == k).map(|(_, v)| v.as_str())
}

/// ConfigMaps and Secrets read once per container start.
struct Objects<'a> {
    store: &'a ObjectStore,
    ns: &'a str,
    cache: HashMap<(ObjectKind, String), Option<ObjData>>,
}

impl Objects<'_> {
    /// The object, None if it is missing and `optional`, else upstream's not-found error.
    fn get(&mut self, kind: ObjectKind, name: &str, optional: bool) -> Result<Option<&ObjData>, EnvError> {
        let key = (kind, name.to_string());
        if !self.cache.contains_key(&key) {
            let obj = self.store.get(kind, self.ns, name).map_err(|e| EnvError::Source(e.to_string()))?;
            self.cache.insert(key.clone(), obj);
        }
        match &self.cache[&key] {
            Some(o) => Ok(Some(o)),
            None if optional => Ok(None),
            None => Err(EnvError::Source(format!("{} {name:?} not found", kind.to_string().to_lowercase()))),
        }
    }
}

/// A `valueFrom` value; None when an optional object or key is missing.
fn env_value(ctx: &FieldContext, c: &Container, var: &EnvVar, objects: &mut Objects) -> Result<Option<String>, EnvError> {
    let Some(src) = &var.value_from else { return Ok(Some(String::new())) };
    if let Some(f) = &src.field_ref {
        return field_value(ctx, f).map(Some).ok_or_else(|| EnvError::BadFieldPath {
            container: c.name.clone(),
            var: var.name.clone(),
            path: f.field_path.clone(),
        });
    }
    if let Some(r) = &src.resource_field_ref {
        return resource_value(r, ctx.pod, Some(c), ctx.node).map(Some).map_err(EnvError::Source);
    }
    let (kind, name, key, optional) = match (&src.config_map_key_ref, &src.secret_key_ref) {
        (Some(k), _) => (ObjectKind::ConfigMap, &k.name, &k.key, k.optional.unwrap_or(false)),
        (None, Some(k)) => (ObjectKind::Secret, &k.name, &k.key, k.optional.unwrap_or(false)),
        (None, None) => return Ok(Some(String::new())),
    };
    let ns = objects.ns;
    let Some(obj) = objects.get(kind, name, optional)? else { return Ok(None) };
    match obj.data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(EnvError::Source(format!("couldn't find key {key} in {kind} {ns}/{name}"))),
    }
}

/// The downward-API value of `fieldPath`, or None if the path is not supported.
fn field_value(ctx: &FieldContext, f: &ObjectFieldSelector) -> Option<String> {
    let pod = ctx.pod;
    let path = f.field_path.as_str();
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.labels" => &pod.metadata.labels,
            "metadata.annotations" => &pod.metadata.annotations,
            _ => return None,
        };
        return Some(map.get(key).cloned().unwrap_or_default());
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

/// Service-link variables for `ctx.pod`, sorted by name: the `kubernetes`
/// Service of namespace `default` always, and with enableServiceLinks
/// (default true) every Service of the pod's namespace (which wins over
/// `default/kubernetes` on a name clash, as upstream). A pod from the API
/// must wait until the fetcher has stored Services at least once, as
/// upstream waits for its informer; static pods use what there is.
fn service_env(ctx: &FieldContext) -> Result<Vec<(String, String)>, EnvError> {
    let pod = ctx.pod;
    let store_err = |e: crate::api::objects::StoreError| EnvError::Source(e.to_string());
    let from_api = pod.metadata.annotations.get("kubernetes.io/config.source").is_some_and(|s| s == "api");
    let default = ctx.objects.services("default").map_err(store_err)?;
    if default.is_none() && from_api {
        return Err(EnvError::Source("services have not yet been read at least once, cannot construct envvars".into()));
    }
    let mut chosen: BTreeMap<String, ServiceInfo> = BTreeMap::new();
    if let Some(k) = default.iter().flatten().find(|s| s.name == "kubernetes") {
        chosen.insert(k.name.clone(), k.clone());
    }
    if pod.spec.enable_service_links.unwrap_or(true) {
        let own = if pod.metadata.namespace == "default" {
            default
        } else {
            ctx.objects.services(&pod.metadata.namespace).map_err(store_err)?
        };
        for s in own.into_iter().flatten() {
            chosen.insert(s.name.clone(), s);
        }
    }
    let mut vars = BTreeMap::new();
    for s in chosen.values() {
        for (k, v) in service_vars(s) {
            vars.insert(k, v);
        }
    }
    Ok(vars.into_iter().collect())
}

/// Upstream's envvars.FromServices for one Service, Docker link variables included.
fn service_vars(s: &ServiceInfo) -> Vec<(String, String)> {
    let Some(first) = s.ports.first() else { return Vec::new() };
    if s.cluster_ip.is_empty() || s.cluster_ip == "None" {
        return Vec::new();
    }
    let name = env_name(&s.name);
    let ip = &s.cluster_ip;
    let mut out = vec![(format!("{name}_SERVICE_HOST"), ip.clone()), (format!("{name}_SERVICE_PORT"), first.port.to_string())];
    for p in s.ports.iter().filter(|p| !p.name.is_empty()) {
        out.push((format!("{name}_SERVICE_PORT_{}", env_name(&p.name)), p.port.to_string()));
    }
    for (i, p) in s.ports.iter().enumerate() {
        let proto = if p.protocol.is_empty() { "TCP" } else { p.protocol.as_str() };
        let url = format!("{}://{ip}:{}", proto.to_lowercase(), p.port);
        if i == 0 {
            out.push((format!("{name}_PORT"), url.clone()));
        }
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((prefix.clone(), url));
        out.push((format!("{prefix}_PROTO"), proto.to_lowercase()));
        out.push((format!("{prefix}_PORT"), p.port.to_string()));
        out.push((format!("{prefix}_ADDR"), ip.clone()));
    }
    out
}

/// `my-svc.x` → `MY_SVC_X`; a leading digit gets a `_`.
fn env_name(s: &str) -> String {
    let n = s.replace(['.', '-'], "_").to_uppercase();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{n}")
    } else {
        n
    }
}

/// Kubernetes `$(VAR)` expansion: `$(NAME)` → value of NAME in `vars` (the last
/// entry wins), kept as written if undefined; `$$` → `$`; any other `$` is literal.
pub fn expand(s: &str, vars: &[(String, String)]) -> String {
    expand_with(s, |name| lookup(vars, name))
}

/// `subPathExpr` expanded as upstream's kubelet does it: like [`expand`], but
/// a variable that is undefined or empty is an error naming them all.
pub fn expand_sub_path(expr: &str, vars: &[(String, String)]) -> Result<String, String> {
    let missing = std::cell::RefCell::new(Vec::new());
    let out = expand_with(expr, |name| {
        let value = lookup(vars, name).filter(|v| !v.is_empty());
        if value.is_none() {
            missing.borrow_mut().push(name.to_string());
        }
        value
    });
    let mut missing = missing.into_inner();
    if missing.is_empty() {
        return Ok(out);
    }
    missing.sort_unstable();
    missing.dedup();
    Err(format!("missing value for {}", missing.join(", ")))
}

/// [`expand`] with the values from `var`.
fn expand_with<'a>(s: &str, var: impl Fn(&str) -> Option<&'a str>) -> String {
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
                    match var(name) {
                        Some(v) => out.push_str(v),
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
/// args with `vars`, the kubelet-made variables ([`ContainerEnv::own`]: envFrom, env,
/// service links; not image env, as upstream); image Entrypoint/Cmd are used verbatim.
/// An empty result is [`EnvError::NoCommand`].
pub fn command_line(c: &Container, image: &ImageConfig, vars: &[(String, String)]) -> Result<Vec<String>, EnvError> {
    let ex = |list: &[String]| list.iter().map(|a| expand(a, vars)).collect::<Vec<_>>();
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
    use crate::api::types::{ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectEnvSource, ResourceFieldSelector, SecretKeySelector};

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

    #[test]
    fn sub_path_expressions_need_every_value() {
        let vs = vec![("POD".to_string(), "web-1".to_string()), ("EMPTY".to_string(), String::new())];
        assert_eq!(expand_sub_path("logs/$(POD)", &vs), Ok("logs/web-1".into()));
        assert_eq!(expand_sub_path("$$(POD)/x", &vs), Ok("$(POD)/x".into()), "$$ is a literal $");
        assert_eq!(expand_sub_path("$(Z)/$(EMPTY)/$(Z)/$(A)", &vs), Err("missing value for A, EMPTY, Z".into()));
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

    /// An object store in a temp dir (removed on drop) and a 2-CPU, 1 GiB node.
    struct Fx {
        dir: std::path::PathBuf,
        objects: ObjectStore,
        node: Allocatable,
    }

    impl Fx {
        fn new(tag: &str) -> Fx {
            let dir = std::env::temp_dir().join(format!("picolet-env-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            Fx { objects: ObjectStore::new(dir.join("objects")), dir, node: Allocatable { cpu_milli: 2000, memory: 1 << 30, ephemeral_storage: 1 << 40 } }
        }
        fn ctx<'a>(&'a self, p: &'a Pod) -> FieldContext<'a> {
            FieldContext { pod: p, host_ip: "10.0.0.2", pod_ip: "10.1.0.5", node: &self.node, objects: &self.objects }
        }
    }

    impl Drop for Fx {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn from(n: &str, src: EnvVarSource) -> EnvVar {
        EnvVar { name: n.into(), value: None, value_from: Some(src) }
    }
    fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource { config_map_key_ref: Some(ConfigMapKeySelector { name: name.into(), key: key.into(), optional }), ..Default::default() }
    }
    fn secret_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource { secret_key_ref: Some(SecretKeySelector { name: name.into(), key: key.into(), optional }), ..Default::default() }
    }
    fn resource(container: &str, res: &str, divisor: Option<&str>) -> EnvVarSource {
        EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector { container_name: container.into(), resource: res.into(), divisor: divisor.map(Into::into) }),
            ..Default::default()
        }
    }

    #[test]
    fn env_order_override_and_expansion() {
        let p = pod();
        let fx = Fx::new("order");
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
        let env = container_env(&fx.ctx(&p), &c, &image_env).unwrap();
        assert_eq!(
            env.env,
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
        assert_eq!(env.own.len(), 5, "image env is not the kubelet's");
    }

    #[test]
    fn field_refs() {
        let p = pod();
        let fx = Fx::new("fields");
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
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap().env;
        let got: Vec<&str> = env.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            got,
            ["web", "default", "u-1", "nginx", "", "note", "pi", "sa", "10.0.0.2", "10.0.0.2", "10.1.0.5", "10.1.0.5", "web.default"]
        );
        let c = Container { name: "c".into(), env: vec![field("X", "spec.bogus")], ..Default::default() };
        assert!(matches!(container_env(&fx.ctx(&p), &c, &[]), Err(EnvError::BadFieldPath { .. })));
    }

    #[test]
    fn config_map_and_secret_keys() {
        let p = pod();
        let fx = Fx::new("keys");
        let b64 = crate::api::objects::base64_encode;
        fx.objects.put_config_map("default", "app", &serde_json::json!({"data": {"mode": "prod", "port": "8080"}, "binaryData": {"bin": b64(b"x")}})).unwrap();
        fx.objects.put_secret("default", "db", &serde_json::json!({"data": {"password": b64(b"hunter2")}})).unwrap();
        let c = Container {
            name: "c".into(),
            env: vec![
                from("MODE", cm_key("app", "mode", None)),
                from("PASS", secret_key("db", "password", None)),
                from("OPT_KEY", cm_key("app", "nope", Some(true))),
                from("OPT_OBJ", secret_key("missing", "k", Some(true))),
                v("URL", "db://$(PASS)@host:$(PORT)"), // PORT is not defined: kept as written
            ],
            ..Default::default()
        };
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        assert_eq!(env.env, vars(&[("MODE", "prod"), ("PASS", "hunter2"), ("URL", "db://hunter2@host:$(PORT)")]));
        // Upstream's words for what is missing; a binaryData key is not a data key.
        let one = |src: EnvVarSource| {
            let c = Container { name: "c".into(), env: vec![from("X", src)], ..Default::default() };
            container_env(&fx.ctx(&p), &c, &[]).unwrap_err().to_string()
        };
        assert_eq!(one(cm_key("app", "nope", None)), "couldn't find key nope in ConfigMap default/app");
        assert_eq!(one(cm_key("app", "bin", Some(false))), "couldn't find key bin in ConfigMap default/app");
        assert_eq!(one(cm_key("gone", "k", None)), "configmap \"gone\" not found");
        assert_eq!(one(secret_key("db", "user", None)), "couldn't find key user in Secret default/db");
        assert_eq!(one(secret_key("gone", "k", Some(false))), "secret \"gone\" not found");
    }

    #[test]
    fn env_from_with_prefix_and_invalid_keys() {
        let p = pod();
        let fx = Fx::new("envfrom");
        let b64 = crate::api::objects::base64_encode;
        fx.objects.put_config_map("default", "app", &serde_json::json!({"data": {"MODE": "prod", "port": "80", "1st": "x"}})).unwrap();
        fx.objects.put_secret("default", "db", &serde_json::json!({"data": {"PASSWORD": b64(b"pw"), "MODE": b64(b"secret-mode")}})).unwrap();
        let ef = |prefix: &str, cm: Option<&str>, sec: Option<&str>, optional: Option<bool>| EnvFromSource {
            prefix: prefix.into(),
            config_map_ref: cm.map(|n| ObjectEnvSource { name: n.into(), optional }),
            secret_ref: sec.map(|n| ObjectEnvSource { name: n.into(), optional }),
        };
        let c = Container {
            name: "c".into(),
            env_from: vec![ef("APP_", Some("app"), None, None), ef("", None, Some("db"), None), ef("", Some("missing"), None, Some(true))],
            env: vec![v("APP_MODE", "override-$(PASSWORD)")],
            ..Default::default()
        };
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        // envFrom in source order (keys sorted), then env, which wins and sees envFrom values.
        assert_eq!(
            env.env,
            vars(&[("APP_1st", "x"), ("APP_MODE", "override-pw"), ("APP_port", "80"), ("MODE", "secret-mode"), ("PASSWORD", "pw")])
        );
        assert!(env.warnings.is_empty(), "relaxed names: \"APP_1st\" is valid");
        // A prefix that makes names invalid skips those keys and says so, as upstream's event does.
        let c = Container { name: "c".into(), env_from: vec![ef("X=", Some("app"), None, None)], ..Default::default() };
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        assert!(env.env.is_empty());
        assert_eq!(
            env.warnings,
            ["Keys [X=1st, X=MODE, X=port] from the EnvFrom configMap default/app were skipped since they are considered invalid environment variable names."]
        );
        let c = Container { name: "c".into(), env_from: vec![ef("", None, Some("gone"), None)], ..Default::default() };
        assert_eq!(container_env(&fx.ctx(&p), &c, &[]).unwrap_err().to_string(), "secret \"gone\" not found");
    }

    #[test]
    fn resource_field_refs() {
        let mut p = pod();
        let fx = Fx::new("resources");
        let mut r = crate::api::types::ResourceRequirements::default();
        r.limits.insert("cpu".into(), "1500m".into());
        r.limits.insert("memory".into(), "100Mi".into());
        r.requests.insert("cpu".into(), "250m".into());
        r.requests.insert("memory".into(), "100Mi".into());
        let c = Container {
            name: "c".into(),
            resources: Some(r),
            env: vec![
                from("CPU", resource("", "limits.cpu", None)),
                from("CPU_M", resource("", "limits.cpu", Some("1m"))),
                from("REQ_CPU", resource("", "requests.cpu", None)),
                from("MEM_MI", resource("", "limits.memory", Some("1Mi"))),
                from("MEM_M", resource("", "requests.memory", Some("1M"))),
                from("SIDE_MEM", resource("side", "limits.memory", Some("1Gi"))),
                from("SIDE_CPU", resource("side", "limits.cpu", Some("1m"))),
                from("EPH", resource("", "limits.ephemeral-storage", Some("1Ti"))),
            ],
            ..Default::default()
        };
        p.spec.containers = vec![c.clone(), Container { name: "side".into(), ..Default::default() }];
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        assert_eq!(
            env.env,
            vars(&[
                ("CPU", "2"),       // 1.5 cores round up
                ("CPU_M", "1500"),
                ("REQ_CPU", "1"),
                ("MEM_MI", "100"),
                ("MEM_M", "105"),   // 104.86 MB round up
                ("SIDE_MEM", "1"),  // no limit: the node's 1 GiB
                ("SIDE_CPU", "2000"),
                ("EPH", "1"),
            ])
        );
        let bad = Container { name: "c".into(), env: vec![from("X", resource("nope", "limits.cpu", None))], ..Default::default() };
        assert_eq!(container_env(&fx.ctx(&p), &bad, &[]).unwrap_err().to_string(), "container nope not found");
    }

    fn put_services(fx: &Fx, ns: &str, list: serde_json::Value) {
        fx.objects.put_services(ns, list.as_array().unwrap()).unwrap();
    }

    #[test]
    fn service_links() {
        let fx = Fx::new("services");
        put_services(&fx, "default", serde_json::json!([
            {"metadata": {"name": "kubernetes"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"name": "other"}, "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 1}]}}]));
        put_services(&fx, "shop", serde_json::json!([
            {"metadata": {"name": "redis-primary"}, "spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 6379}]}},
            {"metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "metrics", "port": 9153, "protocol": "TCP"}]}},
            {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}]));
        let mut p = pod();
        p.metadata.namespace = "shop".into();
        let c = Container { name: "c".into(), env: vec![v("REDIS", "$(REDIS_PRIMARY_SERVICE_HOST):$(REDIS_PRIMARY_SERVICE_PORT)"), v("DNS_SERVICE_HOST", "mine")], ..Default::default() };
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        let get = |k: &str| env.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REDIS"), Some("10.96.3.4:6379"), "$(VAR) sees service links");
        assert_eq!(get("DNS_SERVICE_HOST"), Some("mine"), "the container's own value wins");
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP"), Some("tcp://10.96.0.1:443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        assert_eq!(get("DNS_SERVICE_PORT"), Some("53"));
        assert_eq!(get("DNS_SERVICE_PORT_METRICS"), Some("9153"));
        assert_eq!(get("DNS_PORT"), Some("udp://10.96.0.10:53"));
        assert_eq!(get("DNS_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(get("DNS_PORT_9153_TCP"), Some("tcp://10.96.0.10:9153"));
        assert_eq!(get("REDIS_PRIMARY_PORT_6379_TCP_ADDR"), Some("10.96.3.4"));
        assert_eq!(get("OTHER_SERVICE_HOST"), None, "other namespaces' services are not linked");
        assert!(!env.env.iter().any(|(k, _)| k.starts_with("HEADLESS")));
        // enableServiceLinks: false keeps only the master service.
        p.spec.enable_service_links = Some(false);
        let env = container_env(&fx.ctx(&p), &c, &[]).unwrap();
        let names: Vec<&str> = env.env.iter().map(|(k, _)| k.as_str()).filter(|k| k.ends_with("_SERVICE_HOST")).collect();
        assert_eq!(names, ["DNS_SERVICE_HOST", "KUBERNETES_SERVICE_HOST"]);
    }

    #[test]
    fn services_not_read_yet() {
        let fx = Fx::new("nosvc");
        let mut p = pod();
        let c = Container { name: "c".into(), ..Default::default() };
        // A static pod without a cluster: no service variables, no error.
        assert!(container_env(&fx.ctx(&p), &c, &[]).unwrap().env.is_empty());
        // A pod from the API waits until the fetcher has stored Services once.
        p.metadata.annotations.insert("kubernetes.io/config.source".into(), "api".into());
        assert_eq!(
            container_env(&fx.ctx(&p), &c, &[]).unwrap_err().to_string(),
            "services have not yet been read at least once, cannot construct envvars"
        );
        put_services(&fx, "default", serde_json::json!([]));
        assert!(container_env(&fx.ctx(&p), &c, &[]).is_ok());
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
        // The kubelet-made variables (ContainerEnv::own); image env is not among them.
        let own = vars(&[("A", "1"), ("SVC_SERVICE_HOST", "10.0.0.1")]);
        let cases: Vec<(Container, &ImageConfig, Result<Vec<String>, ()>)> = vec![
            (c(&["/bin/sh", "-c"], &[]), &image, Ok(s(&["/bin/sh", "-c"]))),
            (c(&[], &["x", "$(A)", "$(IMG)"]), &image, Ok(s(&["/entry", "x", "1", "$(IMG)"]))),
            (c(&["run", "$(A)"], &["$$(A)", "$(SVC_SERVICE_HOST)"]), &image, Ok(s(&["run", "1", "$(A)", "10.0.0.1"]))),
            (c(&[], &[]), &image, Ok(s(&["/entry", "dflt", "$(A)"]))),
            (c(&[], &["only"]), &bare, Ok(s(&["only"]))),
            (c(&[], &[]), &bare, Err(())),
        ];
        for (i, (ctr, img, want)) in cases.into_iter().enumerate() {
            let got = command_line(&ctr, img, &own).map_err(|_| ());
            assert_eq!(got, want, "case {i}");
        }
    }
}
