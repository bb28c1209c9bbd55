//! Validation of a Pod as the API server would do it, for the fields picolet
//! runs. Every problem is collected (not just the first), each naming its
//! field path with upstream-style wording ("Required value", "Invalid value",
//! "Unsupported value", "Duplicate value", "Not found", "Forbidden").
//!
//! Meant to run after `api::defaults::apply`; on an undefaulted pod the empty
//! enums are reported as required. Probes and lifecycle hooks are checked as
//! upstream does, plus one check of picolet's: a named probe port must be one
//! of the container's ports. Fields picolet keeps opaque (tolerations,
//! clusterTrustBundle projections) are not checked, nor are label syntax and
//! resource names beyond being non-empty.

use crate::api::quantity::parse_milli;
use crate::api::types::{
    Container, DownwardApiVolumeFile, EnvVar, HttpGetAction, IntOrString, KeyToPath, LifecycleHandler, ObjectFieldSelector, Pod,
    Probe, ResourceFieldSelector, Volume,
};
use std::collections::{BTreeSet, HashSet};
use std::fmt;

/// One validation failure: the field path and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for FieldError {}

/// Checks `pod`, returning every problem found.
pub fn validate(pod: &Pod) -> Result<(), Vec<FieldError>> {
    let mut v = V::default();
    v.pod(pod);
    if v.errs.is_empty() {
        Ok(())
    } else {
        Err(v.errs)
    }
}

const DNS_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Paths a downwardAPI volume file may read (besides keyed labels/annotations).
const VOLUME_FIELD_PATHS: [&str; 5] =
    ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
/// Resources a resourceFieldRef may name, sorted as upstream lists them.
pub const RESOURCE_FIELDS: [&str; 6] =
    ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory"];
const DIVISORS: &str = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_NAME_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// A relaxed environment variable name (upstream's default since 1.34):
/// printable ASCII other than '='.
pub fn is_env_var_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253, not `.`/`..`/`..x`.
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && s != "."
        && !s.starts_with("..")
}

/// True for an RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 long.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of any length.
fn is_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for a Kubernetes DNS-1123 subdomain (object names: pods, ConfigMaps,
/// Secrets, ServiceAccounts): dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
/// parts, at most 253 long in all. As upstream's `IsDNS1123Subdomain`, only the
/// whole is limited: a part may be longer than a DNS label's 63 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

#[derive(Default)]
struct V {
    errs: Vec<FieldError>,
}

impl V {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errs.push(FieldError { field: field.into(), reason: reason.into() });
    }
    fn required(&mut self, field: impl Into<String>) {
        self.push(field, "Required value");
    }
    fn invalid(&mut self, field: impl Into<String>, value: impl fmt::Debug, why: &str) {
        self.push(field, format!("Invalid value: {value:?}: {why}"));
    }
    /// Checks a closed enum; `""` is reported as required.
    fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        if value.is_empty() {
            self.required(field);
        } else if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            self.push(field, format!("Unsupported value: {value:?}: supported values: {}", list.join(", ")));
        }
    }
    fn dns_label(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.required(field);
        } else if value.len() > 63 {
            self.invalid(field, value, "must be no more than 63 characters");
        } else if !is_dns_label(value) {
            self.invalid(field, value, &format!("{DNS_LABEL_MSG} (e.g. 'my-name', or '123-abc')"));
        }
    }
    fn id(&mut self, field: &str, value: Option<i64>) {
        if let Some(id) = value {
            if !(0..=i32::MAX as i64).contains(&id) {
                self.invalid(field, id, "must be between 0 and 2147483647, inclusive");
            }
        }
    }
    fn port(&mut self, field: &str, port: i32) {
        if !(1..=65535).contains(&port) {
            self.invalid(field, port, "must be between 1 and 65535, inclusive");
        }
    }

    fn pod(&mut self, pod: &Pod) {
        let m = &pod.metadata;
        if m.name.is_empty() {
            self.required("metadata.name");
        } else if m.name.len() > 253 {
            self.invalid("metadata.name", &m.name, "must be no more than 253 characters");
        } else if !is_dns_subdomain(&m.name) {
            self.invalid("metadata.name", &m.name, &format!("{DNS_SUBDOMAIN_MSG} (e.g. 'example.com')"));
        }
        if !m.namespace.is_empty() {
            self.dns_label("metadata.namespace", &m.namespace);
        }

        let s = &pod.spec;
        let volumes = self.volumes(&s.volumes);
        if s.containers.is_empty() {
            self.required("spec.containers");
        }
        let mut names = HashSet::new();
        for (i, c) in s.init_containers.iter().enumerate() {
            let f = format!("spec.initContainers[{i}]");
            self.container(&f, c, &volumes, &mut names, s.host_network);
            if let Some(rp) = &c.restart_policy {
                self.one_of(&format!("{f}.restartPolicy"), rp, &["Always"]);
            }
            if c.restart_policy.is_none() {
                let fields = [("livenessProbe", c.liveness_probe.is_some()), ("readinessProbe", c.readiness_probe.is_some()), ("startupProbe", c.startup_probe.is_some()), ("lifecycle", c.lifecycle.is_some())];
                for (name, set) in fields {
                    if set {
                        self.push(format!("{f}.{name}"), "Forbidden: may not be set for init containers without restartPolicy=Always");
                    }
                }
            }
        }
        for (i, c) in s.containers.iter().enumerate() {
            let f = format!("spec.containers[{i}]");
            self.container(&f, c, &volumes, &mut names, s.host_network);
            if c.restart_policy.is_some() {
                self.push(format!("{f}.restartPolicy"), "Forbidden: may not be set for non-init containers");
            }
        }

        self.one_of("spec.restartPolicy", &s.restart_policy, &["Always", "Never", "OnFailure"]);
        self.one_of("spec.dnsPolicy", &s.dns_policy, &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]);
        if s.dns_policy == "None" {
            match &s.dns_config {
                None => self.push("spec.dnsConfig", "Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
                Some(d) if d.nameservers.is_empty() => self.push(
                    "spec.dnsConfig.nameservers",
                    "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
                ),
                Some(_) => {}
            }
        }
        if let Some(d) = &s.dns_config {
            if d.nameservers.len() > 3 {
                self.invalid("spec.dnsConfig.nameservers", &d.nameservers, "must not have more than 3 nameservers");
            }
            for (i, ns) in d.nameservers.iter().enumerate() {
                if ns.parse::<std::net::IpAddr>().is_err() {
                    self.invalid(format!("spec.dnsConfig.nameservers[{i}]"), ns, "must be a valid IP address");
                }
            }
        }
        if let Some(t) = s.termination_grace_period_seconds {
            if t < 0 {
                self.invalid("spec.terminationGracePeriodSeconds", t, "must be greater than or equal to 0");
            }
        }
        if let Some(t) = s.active_deadline_seconds {
            if !(1..=i32::MAX as i64).contains(&t) {
                self.invalid("spec.activeDeadlineSeconds", t, "must be between 1 and 2147483647, inclusive");
            }
        }
        if let Some(sc) = &s.security_context {
            self.id("spec.securityContext.runAsUser", sc.run_as_user);
            self.id("spec.securityContext.runAsGroup", sc.run_as_group);
            self.id("spec.securityContext.fsGroup", sc.fs_group);
            for (i, g) in sc.supplemental_groups.iter().enumerate() {
                self.id(&format!("spec.securityContext.supplementalGroups[{i}]"), Some(*g));
            }
        }
    }

    /// Validates the volumes and returns their names (so a mount of a volume
    /// that is itself invalid is not also reported as not found).
    fn volumes(&mut self, volumes: &[Volume]) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for (i, v) in volumes.iter().enumerate() {
            let f = format!("spec.volumes[{i}]");
            self.dns_label(&format!("{f}.name"), &v.name);
            if !v.name.is_empty() && !names.insert(v.name.clone()) {
                self.push(format!("{f}.name"), format!("Duplicate value: {:?}", v.name));
            }
            let sources = [
                ("emptyDir", v.empty_dir.is_some()),
                ("hostPath", v.host_path.is_some()),
                ("configMap", v.config_map.is_some()),
                ("secret", v.secret.is_some()),
                ("downwardAPI", v.downward_api.is_some()),
                ("projected", v.projected.is_some()),
                ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
            ];
            let set: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
            match set.len() {
                0 if v.unsupported.is_some() => self.push(
                    format!("{f}.{}", v.unsupported.as_deref().unwrap_or("")),
                    "Unsupported value: picolet mounts emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes",
                ),
                0 => self.push(f.clone(), "Required value: must specify a volume type"),
                1 => {}
                _ => self.push(format!("{f}.{}", set[1]), "Forbidden: may not specify more than 1 volume type"),
            }
            if let Some(ed) = &v.empty_dir {
                if !ed.medium.is_empty() && ed.medium != "Memory" {
                    self.push(
                        format!("{f}.emptyDir.medium"),
                        format!("Unsupported value: {:?}: supported values: \"\", \"Memory\"", ed.medium),
                    );
                }
                if let Some(sl) = &ed.size_limit {
                    self.quantity(&format!("{f}.emptyDir.sizeLimit"), sl);
                }
            }
            if let Some(hp) = &v.host_path {
                let pf = format!("{f}.hostPath.path");
                if hp.path.is_empty() {
                    self.required(pf);
                } else if !hp.path.starts_with('/') {
                    self.invalid(pf, &hp.path, "must be an absolute path");
                } else if hp.path.split('/').any(|p| p == "..") {
                    self.invalid(pf, &hp.path, "must not contain '..'");
                }
                let t = hp.type_.as_deref().unwrap_or("");
                let allowed =
                    ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];
                if !allowed.contains(&t) {
                    let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
                    self.push(format!("{f}.hostPath.type"), format!("Unsupported value: {t:?}: supported values: {}", list.join(", ")));
                }
            }
            if let Some(cm) = &v.config_map {
                let cf = format!("{f}.configMap");
                self.object_name(&format!("{cf}.name"), &cm.name);
                self.mode(&format!("{cf}.defaultMode"), cm.default_mode);
                self.key_to_paths(&cf, &cm.items, &mut BTreeSet::new());
            }
            if let Some(sec) = &v.secret {
                let sf = format!("{f}.secret");
                self.object_name(&format!("{sf}.secretName"), &sec.secret_name);
                self.mode(&format!("{sf}.defaultMode"), sec.default_mode);
                self.key_to_paths(&sf, &sec.items, &mut BTreeSet::new());
            }
            if let Some(d) = &v.downward_api {
                let df = format!("{f}.downwardAPI");
                self.mode(&format!("{df}.defaultMode"), d.default_mode);
                let mut paths = BTreeSet::new();
                for (j, item) in d.items.iter().enumerate() {
                    self.downward_file(&format!("{df}.items[{j}]"), item, &df, &mut paths);
                }
            }
            if let Some(p) = &v.projected {
                self.projected(&format!("{f}.projected"), p);
            }
        }
        names
    }

    fn projected(&mut self, pf: &str, p: &crate::api::types::ProjectedVolumeSource) {
        self.mode(&format!("{pf}.defaultMode"), p.default_mode);
        let mut paths = BTreeSet::new();
        for (j, src) in p.sources.iter().enumerate() {
            let sf = format!("{pf}.sources[{j}]");
            let kinds = [
                src.secret.is_some(),
                src.config_map.is_some(),
                src.downward_api.is_some(),
                src.service_account_token.is_some(),
                src.cluster_trust_bundle.is_some(),
                src.pod_certificate.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() > 1 {
                self.push(sf.clone(), "Forbidden: may not specify more than 1 volume type");
            }
            if let Some(s) = &src.secret {
                self.object_name(&format!("{sf}.secret.name"), &s.name);
                self.key_to_paths_in(&format!("{sf}.secret"), &s.items, pf, &mut paths);
            }
            if let Some(c) = &src.config_map {
                self.object_name(&format!("{sf}.configMap.name"), &c.name);
                self.key_to_paths_in(&format!("{sf}.configMap"), &c.items, pf, &mut paths);
            }
            if let Some(d) = &src.downward_api {
                for (k, item) in d.items.iter().enumerate() {
                    self.downward_file(&format!("{sf}.downwardAPI.items[{k}]"), item, pf, &mut paths);
                }
            }
            if let Some(t) = &src.service_account_token {
                let tf = format!("{sf}.serviceAccountToken");
                match t.expiration_seconds {
                    Some(e) if e < 600 => {
                        self.invalid(format!("{tf}.expirationSeconds"), e, "may not specify a duration less than 10 minutes")
                    }
                    Some(e) if e > 1 << 32 => {
                        self.invalid(format!("{tf}.expirationSeconds"), e, "may not specify a duration larger than 2^32 seconds")
                    }
                    _ => {}
                }
                self.projected_path(&format!("{tf}.path"), &t.path, pf, &mut paths);
            }
        }
    }

    /// Checks `items` of a configMap or secret volume.
    fn key_to_paths(&mut self, f: &str, items: &[KeyToPath], paths: &mut BTreeSet<String>) {
        self.key_to_paths_in(f, items, "", paths);
    }

    /// Like `key_to_paths`; a non-empty `dup_field` also reports a path used
    /// twice in one projected volume there.
    fn key_to_paths_in(&mut self, f: &str, items: &[KeyToPath], dup_field: &str, paths: &mut BTreeSet<String>) {
        for (j, kp) in items.iter().enumerate() {
            let kf = format!("{f}.items[{j}]");
            if kp.key.is_empty() {
                self.required(format!("{kf}.key"));
            }
            if dup_field.is_empty() {
                self.file_path(&format!("{kf}.path"), &kp.path);
            } else {
                self.projected_path(&format!("{kf}.path"), &kp.path, dup_field, paths);
            }
            self.mode(&format!("{kf}.mode"), kp.mode);
        }
    }

    fn projected_path(&mut self, f: &str, path: &str, dup_field: &str, paths: &mut BTreeSet<String>) {
        self.file_path(f, path);
        if !path.is_empty() && !paths.insert(path.to_string()) {
            self.invalid(dup_field, path, "conflicting duplicate paths");
        }
    }

    fn downward_file(&mut self, f: &str, item: &DownwardApiVolumeFile, dup_field: &str, paths: &mut BTreeSet<String>) {
        self.projected_path(&format!("{f}.path"), &item.path, dup_field, paths);
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(fr), Some(_)) => {
                self.field_ref(&format!("{f}.fieldRef"), fr, &VOLUME_FIELD_PATHS);
                self.invalid(f, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously");
            }
            (Some(fr), None) => self.field_ref(&format!("{f}.fieldRef"), fr, &VOLUME_FIELD_PATHS),
            (None, Some(r)) => self.resource_field(&format!("{f}.resourceFieldRef"), r, true),
            (None, None) => self.push(f, "Required value: one of fieldRef and resourceFieldRef is required"),
        }
        self.mode(&format!("{f}.mode"), item.mode);
    }

    /// A file path inside a volume: relative, no `..` element, not starting with `..`.
    fn file_path(&mut self, f: &str, path: &str) {
        if path.is_empty() {
            self.required(f);
            return;
        }
        if path.starts_with('/') {
            self.invalid(f, path, "must be a relative path");
        }
        if path.split('/').any(|p| p == "..") {
            self.invalid(f, path, "must not contain '..'");
        } else if path.starts_with("..") {
            self.invalid(f, path, "must not start with '..'");
        }
    }

    fn mode(&mut self, f: &str, mode: Option<i32>) {
        if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
            self.invalid(f, m, FILE_MODE_MSG);
        }
    }

    /// The name of a ConfigMap or Secret: a DNS subdomain.
    fn object_name(&mut self, f: &str, name: &str) {
        if name.is_empty() {
            self.required(f);
        } else if !is_dns_subdomain(name) {
            self.invalid(f, name, &format!("{DNS_SUBDOMAIN_MSG} (e.g. 'example.com')"));
        }
    }

    fn config_key(&mut self, f: &str, key: &str) {
        if key.is_empty() {
            self.required(f);
        } else if !is_config_key(key) {
            self.invalid(f, key, CONFIG_KEY_MSG);
        }
    }

    fn field_ref(&mut self, f: &str, fr: &ObjectFieldSelector, paths: &[&str]) {
        let pf = format!("{f}.fieldPath");
        let path = fr.field_path.as_str();
        if path.is_empty() {
            self.required(pf);
        } else if !paths.contains(&path) && !is_keyed_path(path) {
            let mut all: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
            all.extend(["\"metadata.labels['<KEY>']\"".to_string(), "\"metadata.annotations['<KEY>']\"".to_string()]);
            self.push(pf, format!("Unsupported value: {path:?}: supported values: {}", all.join(", ")));
        }
        if !fr.api_version.is_empty() && fr.api_version != "v1" {
            self.one_of(&format!("{f}.apiVersion"), &fr.api_version, &["v1"]);
        }
    }

    /// `volume`: a downwardAPI file, where containerName is required.
    fn resource_field(&mut self, f: &str, r: &ResourceFieldSelector, volume: bool) {
        if volume && r.container_name.is_empty() {
            self.required(format!("{f}.containerName"));
        } else if r.resource.is_empty() {
            self.required(format!("{f}.resource"));
        } else if !RESOURCE_FIELDS.contains(&r.resource.as_str()) {
            self.one_of(&format!("{f}.resource"), &r.resource, &RESOURCE_FIELDS);
        }
        let Some(d) = &r.divisor else { return };
        let df = format!("{f}.divisor");
        let Some(milli) = self.quantity(&df, d) else { return };
        if milli == 0 {
            return; // "0" is how the API writes an unset divisor
        }
        let units: Vec<i128> = (0..=6).map(|k| 1000i128.pow(k)).chain((1..=6).map(|k| 1i128 << (10 * k))).collect();
        let (ok, what, list) = match r.resource.as_str() {
            "limits.cpu" | "requests.cpu" => (milli == 1 || milli == 1000, "cpu", "1m and 1"),
            "limits.memory" | "requests.memory" => (milli % 1000 == 0 && units.contains(&(milli / 1000)), "memory", DIVISORS),
            "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
                (milli % 1000 == 0 && units.contains(&(milli / 1000)), "local ephemeral storage", DIVISORS)
            }
            _ => return,
        };
        if !ok {
            self.invalid(df, &r.resource, &format!("only divisor's values {list} are supported with the {what} resource"));
        }
    }

    fn quantity(&mut self, field: &str, q: &str) -> Option<i128> {
        match parse_milli(q) {
            None => {
                self.invalid(field, q, "must be a valid quantity");
                None
            }
            Some(n) if n < 0 => {
                self.invalid(field, q, "must be greater than or equal to 0");
                None
            }
            Some(n) => Some(n),
        }
    }

    fn container(&mut self, f: &str, c: &Container, volumes: &BTreeSet<String>, names: &mut HashSet<String>, host_net: bool) {
        self.dns_label(&format!("{f}.name"), &c.name);
        if !c.name.is_empty() && !names.insert(c.name.clone()) {
            self.push(format!("{f}.name"), format!("Duplicate value: {:?}", c.name));
        }
        if c.image.is_empty() {
            self.required(format!("{f}.image"));
        } else if c.image.trim() != c.image {
            self.invalid(format!("{f}.image"), &c.image, "must not have leading or trailing whitespace");
        }
        self.one_of(&format!("{f}.imagePullPolicy"), &c.image_pull_policy, &["Always", "IfNotPresent", "Never"]);
        self.one_of(&format!("{f}.terminationMessagePolicy"), &c.termination_message_policy, &["File", "FallbackToLogsOnError"]);

        let mut port_names = HashSet::new();
        for (i, p) in c.ports.iter().enumerate() {
            let pf = format!("{f}.ports[{i}]");
            if !p.name.is_empty() {
                if !is_port_name(&p.name) {
                    self.invalid(format!("{pf}.name"), &p.name, "must be no more than 15 lower case alphanumeric characters or '-', contain at least one letter, and not start, end or have two '-' in a row");
                } else if !port_names.insert(p.name.as_str()) {
                    self.push(format!("{pf}.name"), format!("Duplicate value: {:?}", p.name));
                }
            }
            self.port(&format!("{pf}.containerPort"), p.container_port);
            if let Some(hp) = p.host_port.filter(|&h| h != 0) {
                self.port(&format!("{pf}.hostPort"), hp);
                if host_net && hp != p.container_port {
                    self.invalid(format!("{pf}.hostPort"), hp, "must match `containerPort` when `hostNetwork` is true");
                }
            }
            self.one_of(&format!("{pf}.protocol"), &p.protocol, &["SCTP", "TCP", "UDP"]);
        }

        for (i, e) in c.env.iter().enumerate() {
            self.env(&format!("{f}.env[{i}]"), e);
        }
        for (i, e) in c.env_from.iter().enumerate() {
            let ef = format!("{f}.envFrom[{i}]");
            if !e.prefix.is_empty() && !is_env_var_name(&e.prefix) {
                self.invalid(format!("{ef}.prefix"), &e.prefix, ENV_NAME_MSG);
            }
            match (&e.config_map_ref, &e.secret_ref) {
                (None, None) => self.invalid(&ef, "", "must specify one of: `configMapRef` or `secretRef`"),
                (Some(_), Some(_)) => self.push(ef.clone(), "Forbidden: may not have more than one field specified at a time"),
                _ => {}
            }
            if let Some(r) = &e.config_map_ref {
                self.object_name(&format!("{ef}.configMapRef.name"), &r.name);
            }
            if let Some(r) = &e.secret_ref {
                self.object_name(&format!("{ef}.secretRef.name"), &r.name);
            }
        }

        let mut paths = HashSet::new();
        for (i, m) in c.volume_mounts.iter().enumerate() {
            let mf = format!("{f}.volumeMounts[{i}]");
            if m.name.is_empty() {
                self.required(format!("{mf}.name"));
            } else if !volumes.contains(&m.name) {
                self.push(format!("{mf}.name"), format!("Not found: {:?}", m.name));
            }
            if m.mount_path.is_empty() {
                self.required(format!("{mf}.mountPath"));
            } else if !m.mount_path.starts_with('/') {
                self.invalid(format!("{mf}.mountPath"), &m.mount_path, "must be an absolute path");
            } else if !paths.insert(m.mount_path.trim_end_matches('/')) {
                self.invalid(format!("{mf}.mountPath"), &m.mount_path, "must be unique");
            }
            for (field, value) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
                if value.starts_with('/') {
                    self.invalid(format!("{mf}.{field}"), value, "must be a relative path");
                } else if value.split('/').any(|p| p == "..") {
                    self.invalid(format!("{mf}.{field}"), value, "must not contain '..'");
                }
            }
            if !m.sub_path.is_empty() && !m.sub_path_expr.is_empty() {
                self.invalid(format!("{mf}.subPathExpr"), &m.sub_path_expr, "subPathExpr and subPath are mutually exclusive");
            }
            if let Some(mp) = &m.mount_propagation {
                self.one_of(&format!("{mf}.mountPropagation"), mp, &["Bidirectional", "HostToContainer", "None"]);
            }
        }

        if let Some(r) = &c.resources {
            let rf = format!("{f}.resources");
            for (name, q) in &r.limits {
                if name.is_empty() {
                    self.required(format!("{rf}.limits"));
                }
                self.quantity(&format!("{rf}.limits[{name}]"), q);
            }
            for (name, q) in &r.requests {
                if name.is_empty() {
                    self.required(format!("{rf}.requests"));
                }
                let Some(req) = self.quantity(&format!("{rf}.requests[{name}]"), q) else { continue };
                let Some(lim_text) = r.limits.get(name) else { continue };
                if let Some(lim) = parse_milli(lim_text).filter(|&l| l >= 0) {
                    if req > lim {
                        self.invalid(
                            format!("{rf}.requests[{name}]"),
                            q,
                            &format!("must be less than or equal to {name} limit of {lim_text}"),
                        );
                    }
                }
            }
        }

        let probes = [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe), ("startupProbe", &c.startup_probe)];
        for (name, p) in probes {
            if let Some(p) = p {
                self.probe(&format!("{f}.{name}"), name, p, c);
            }
        }
        if let Some(l) = &c.lifecycle {
            for (name, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
                if let Some(h) = h {
                    self.hook(&format!("{f}.lifecycle.{name}"), h, c);
                }
            }
        }

        if let Some(sc) = &c.security_context {
            self.id(&format!("{f}.securityContext.runAsUser"), sc.run_as_user);
            self.id(&format!("{f}.securityContext.runAsGroup"), sc.run_as_group);
            if let Some(caps) = &sc.capabilities {
                for (list, names) in [("add", &caps.add), ("drop", &caps.drop)] {
                    for (i, n) in names.iter().enumerate() {
                        if n.trim().is_empty() {
                            self.required(format!("{f}.securityContext.capabilities.{list}[{i}]"));
                        }
                    }
                }
            }
        }
    }

    fn probe(&mut self, f: &str, kind: &str, p: &Probe, c: &Container) {
        let h = &p.handler;
        let n = [h.exec.is_some(), h.http_get.is_some(), h.tcp_socket.is_some(), h.grpc.is_some()].iter().filter(|x| **x).count();
        self.handler_count(f, n);
        self.exec_and_http(f, h.exec.as_ref(), h.http_get.as_ref(), c);
        if let Some(t) = &h.tcp_socket {
            self.probe_port(&format!("{f}.tcpSocket.port"), &t.port, c);
        }
        if let Some(g) = &h.grpc {
            self.port(&format!("{f}.grpc.port"), g.port);
        }
        let timing = [
            ("initialDelaySeconds", p.initial_delay_seconds),
            ("timeoutSeconds", p.timeout_seconds),
            ("periodSeconds", p.period_seconds),
            ("successThreshold", p.success_threshold),
            ("failureThreshold", p.failure_threshold),
        ];
        for (name, v) in timing {
            if let Some(v) = v.filter(|v| *v < 0) {
                self.invalid(format!("{f}.{name}"), v, "must be greater than or equal to 0");
            }
        }
        if kind != "readinessProbe" && p.success_threshold.is_some_and(|s| s != 1) {
            self.invalid(format!("{f}.successThreshold"), p.success_threshold.unwrap(), "must be 1");
        }
        if let Some(t) = p.termination_grace_period_seconds {
            if kind == "readinessProbe" {
                self.push(format!("{f}.terminationGracePeriodSeconds"), "Invalid value: must not be set for readinessProbes");
            } else if t <= 0 {
                self.invalid(format!("{f}.terminationGracePeriodSeconds"), t, "must be greater than 0");
            }
        }
    }

    /// The handler kinds probes and hooks share.
    fn exec_and_http(&mut self, f: &str, exec: Option<&crate::api::types::ExecAction>, http_get: Option<&HttpGetAction>, c: &Container) {
        if exec.is_some_and(|e| e.command.is_empty()) {
            self.required(format!("{f}.exec.command"));
        }
        if let Some(g) = http_get {
            self.http_get(&format!("{f}.httpGet"), g, c);
        }
    }

    fn hook(&mut self, f: &str, h: &LifecycleHandler, c: &Container) {
        // tcpSocket is kept by the API for compatibility and fails when run, as upstream.
        let n = [h.exec.is_some(), h.http_get.is_some(), h.tcp_socket.is_some(), h.sleep.is_some()].iter().filter(|x| **x).count();
        self.handler_count(f, n);
        self.exec_and_http(f, h.exec.as_ref(), h.http_get.as_ref(), c);
        if let Some(s) = &h.sleep {
            if s.seconds < 0 {
                self.invalid(format!("{f}.sleep.seconds"), s.seconds, "must be greater than or equal to 0");
            }
        }
    }

    fn handler_count(&mut self, f: &str, n: usize) {
        match n {
            0 => self.push(f, "Required value: must specify a handler type"),
            1 => {}
            _ => self.push(f, "Forbidden: may not specify more than 1 handler type"),
        }
    }

    fn http_get(&mut self, f: &str, g: &HttpGetAction, c: &Container) {
        self.probe_port(&format!("{f}.port"), &g.port, c);
        // HTTPS is accepted (upstream does not verify certificates either) and
        // checked as a TCP connect, since picolet has no TLS client.
        self.one_of(&format!("{f}.scheme"), &g.scheme, &["HTTP", "HTTPS"]);
        for (i, h) in g.http_headers.iter().enumerate() {
            if h.name.is_empty() || !h.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)) {
                self.invalid(format!("{f}.httpHeaders[{i}].name"), &h.name, "a valid HTTP header must consist of alphanumeric characters or '-'");
            }
        }
    }

    /// A probe or hook port: a number in range or the name of a container port.
    fn probe_port(&mut self, f: &str, port: &IntOrString, c: &Container) {
        match port {
            IntOrString::Int(n) => self.port(f, *n),
            IntOrString::Str(s) if !is_port_name(s) => {
                self.invalid(f, s, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
            }
            IntOrString::Str(s) if !c.ports.iter().any(|p| &p.name == s) => {
                self.push(f, format!("Not found: {s:?}: no port of the container has this name"))
            }
            IntOrString::Str(_) => {}
        }
    }

    fn env(&mut self, f: &str, e: &EnvVar) {
        if e.name.is_empty() {
            self.required(format!("{f}.name"));
        } else if !is_env_var_name(&e.name) {
            self.invalid(format!("{f}.name"), &e.name, ENV_NAME_MSG);
        }
        let Some(src) = &e.value_from else { return };
        let vf = format!("{f}.valueFrom");
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
            self.invalid(&vf, "", "may not be specified when `value` is not empty");
        }
        let n = [src.field_ref.is_some(), src.resource_field_ref.is_some(), src.config_map_key_ref.is_some(), src.secret_key_ref.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        match n {
            0 => self.invalid(&vf, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"),
            1 => {}
            _ => self.invalid(&vf, "", "may not have more than one field specified at a time"),
        }
        if let Some(fr) = &src.field_ref {
            self.field_ref(&format!("{vf}.fieldRef"), fr, &FIELD_PATHS);
        }
        if let Some(r) = &src.resource_field_ref {
            self.resource_field(&format!("{vf}.resourceFieldRef"), r, false);
        }
        if let Some(k) = &src.config_map_key_ref {
            self.object_name(&format!("{vf}.configMapKeyRef.name"), &k.name);
            self.config_key(&format!("{vf}.configMapKeyRef.key"), &k.key);
        }
        if let Some(k) = &src.secret_key_ref {
            self.object_name(&format!("{vf}.secretKeyRef.name"), &k.name);
            self.config_key(&format!("{vf}.secretKeyRef.key"), &k.key);
        }
    }
}

/// `metadata.labels['key']` or `metadata.annotations['key']` with a plausible key.
fn is_keyed_path(path: &str) -> bool {
    ["metadata.labels['", "metadata.annotations['"].iter().any(|prefix| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix("']"))
            .is_some_and(|key| !key.is_empty() && !key.contains(['\'', '[', ']']))
    })
}

/// An IANA service name, the form of a container port name.
fn is_port_name(s: &str) -> bool {
    s.len() <= 15
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::defaults;
    use crate::api::types::*;

    fn good() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "web-node1".into();
        p.spec.containers.push(Container { name: "web".into(), image: "nginx:1.25".into(), ..Default::default() });
        defaults::apply(&mut p);
        p
    }

    /// Validates and returns the errors as "field: reason" strings.
    fn errors(p: &Pod) -> Vec<String> {
        match validate(p) {
            Ok(()) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    fn has(p: &Pod, want: &str) {
        let e = errors(p);
        assert!(e.iter().any(|s| s == want), "wanted {want:?} in {e:#?}");
    }

    fn with_probe(p: Probe) -> Pod {
        let mut pod = good();
        pod.spec.containers[0].ports.push(ContainerPort { name: "http".into(), container_port: 80, protocol: "TCP".into(), ..Default::default() });
        pod.spec.containers[0].liveness_probe = Some(p);
        defaults::apply(&mut pod);
        pod
    }

    fn http(port: IntOrString) -> ProbeHandler {
        ProbeHandler { http_get: Some(HttpGetAction { port, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn probes() {
        assert_eq!(validate(&with_probe(Probe { handler: http(IntOrString::Str("http".into())), ..Default::default() })), Ok(()));
        has(&with_probe(Probe::default()), "spec.containers[0].livenessProbe: Required value: must specify a handler type");
        let two = ProbeHandler { tcp_socket: Some(TcpSocketAction { port: IntOrString::Int(80), ..Default::default() }), ..http(IntOrString::Int(80)) };
        has(&with_probe(Probe { handler: two, ..Default::default() }), "spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type");
        has(
            &with_probe(Probe { handler: http(IntOrString::Str("metrics".into())), ..Default::default() }),
            "spec.containers[0].livenessProbe.httpGet.port: Not found: \"metrics\": no port of the container has this name",
        );
        has(
            &with_probe(Probe { handler: http(IntOrString::Int(0)), ..Default::default() }),
            "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive",
        );
        has(
            &with_probe(Probe { handler: http(IntOrString::Int(80)), success_threshold: Some(2), ..Default::default() }),
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        );
        has(
            &with_probe(Probe { handler: http(IntOrString::Int(80)), period_seconds: Some(-1), ..Default::default() }),
            "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        );
        let exec = ProbeHandler { exec: Some(ExecAction::default()), ..Default::default() };
        has(&with_probe(Probe { handler: exec, ..Default::default() }), "spec.containers[0].livenessProbe.exec.command: Required value");
        let mut gs = http(IntOrString::Int(80));
        gs.http_get.as_mut().unwrap().scheme = "FTP".into();
        has(&with_probe(Probe { handler: gs, ..Default::default() }), "spec.containers[0].livenessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"");
        let grpc = ProbeHandler { grpc: Some(GrpcAction { port: 9000, service: None }), ..Default::default() };
        assert_eq!(validate(&with_probe(Probe { handler: grpc, ..Default::default() })), Ok(()));
    }

    #[test]
    fn hooks_and_init_containers() {
        let mut pod = good();
        pod.spec.containers[0].lifecycle = Some(Lifecycle {
            post_start: Some(LifecycleHandler { sleep: Some(SleepAction { seconds: -1 }), ..Default::default() }),
            pre_stop: Some(LifecycleHandler::default()),
        });
        pod.spec.init_containers.push(Container {
            name: "init".into(),
            image: "busybox".into(),
            readiness_probe: Some(Probe { handler: http(IntOrString::Int(80)), ..Default::default() }),
            ..Default::default()
        });
        defaults::apply(&mut pod);
        has(&pod, "spec.containers[0].lifecycle.postStart.sleep.seconds: Invalid value: -1: must be greater than or equal to 0");
        has(&pod, "spec.containers[0].lifecycle.preStop: Required value: must specify a handler type");
        has(&pod, "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always");
    }

    #[test]
    fn good_pod_passes() {
        assert_eq!(validate(&good()), Ok(()));
    }

    #[test]
    fn names() {
        assert!(is_dns_label("a-1") && !is_dns_label("-a") && !is_dns_label("A") && !is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b-c.d") && !is_dns_subdomain("a..b") && !is_dns_subdomain(".a"));
        // Only the whole subdomain is limited (253), not its parts (upstream's
        // IsDNS1123Subdomain): e2e names its pods with 36-character UUIDs plus a prefix.
        assert!(is_dns_subdomain(&"a".repeat(64)) && is_dns_subdomain(&"a".repeat(253)));
        assert!(is_dns_subdomain(&format!("{}.{}", "b".repeat(100), "c".repeat(100))));
        assert!(!is_dns_subdomain(&"a".repeat(254)) && !is_dns_subdomain(&format!("{}-", "a".repeat(70))));
        assert!(!is_dns_subdomain(&format!("{}.-b", "a".repeat(70))));
        let mut p = good();
        p.metadata.name.clear();
        has(&p, "metadata.name: Required value");
        p.metadata.name = "Web".into();
        let e = errors(&p);
        assert!(e[0].starts_with("metadata.name: Invalid value: \"Web\": a lowercase RFC 1123 subdomain"), "{e:?}");
        p.metadata.name = "a".repeat(254);
        assert!(errors(&p)[0].ends_with("must be no more than 253 characters"));
        // A pod name longer than a label is valid (the hostname is cut to 63 elsewhere).
        p.metadata.name = format!("pod-{}", "x".repeat(80));
        assert_eq!(validate(&p), Ok(()));
        p.metadata.name = "a.b".into();
        p.metadata.namespace = "kube.system".into();
        assert!(errors(&p)[0].starts_with("metadata.namespace: Invalid value: \"kube.system\": a lowercase RFC 1123 label"));
    }

    #[test]
    fn containers_required_and_named_uniquely() {
        let mut p = good();
        p.spec.containers.clear();
        has(&p, "spec.containers: Required value");
        let mut p = good();
        let c = p.spec.containers[0].clone();
        p.spec.init_containers.push(c.clone());
        p.spec.containers.push(Container { name: "Bad_Name".into(), ..c.clone() });
        p.spec.containers.push(Container { name: String::new(), image: String::new(), ..c });
        has(&p, "spec.containers[0].name: Duplicate value: \"web\"");
        assert!(errors(&p).iter().any(|e| e.starts_with("spec.containers[1].name: Invalid value: \"Bad_Name\"")));
        has(&p, "spec.containers[2].name: Required value");
        has(&p, "spec.containers[2].image: Required value");
        p.spec.containers[2].image = " x".into();
        has(&p, "spec.containers[2].image: Invalid value: \" x\": must not have leading or trailing whitespace");
    }

    #[test]
    fn enums() {
        let mut p = good();
        p.spec.restart_policy = "Sometimes".into();
        p.spec.dns_policy = "Google".into();
        p.spec.containers[0].image_pull_policy = "Maybe".into();
        p.spec.containers[0].termination_message_policy = String::new();
        has(&p, "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"");
        has(&p, "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"");
        has(&p, "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"");
        has(&p, "spec.containers[0].terminationMessagePolicy: Required value");
        assert_eq!(errors(&p).len(), 4, "all errors collected");
    }

    #[test]
    fn container_restart_policy() {
        let mut p = good();
        let mut init = p.spec.containers[0].clone();
        init.name = "side".into();
        init.restart_policy = Some("Always".into());
        p.spec.init_containers.push(init);
        assert_eq!(validate(&p), Ok(()));
        p.spec.init_containers[0].restart_policy = Some("Never".into());
        has(&p, "spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"");
        p.spec.init_containers[0].restart_policy = None;
        p.spec.containers[0].restart_policy = Some("Always".into());
        has(&p, "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers");
    }

    #[test]
    fn ports() {
        let mut p = good();
        p.spec.containers[0].ports = vec![
            ContainerPort { container_port: 0, protocol: "TCP".into(), ..Default::default() },
            ContainerPort { container_port: 70000, host_port: Some(-1), protocol: "ICMP".into(), ..Default::default() },
            ContainerPort { name: "http".into(), container_port: 80, protocol: "TCP".into(), ..Default::default() },
            ContainerPort { name: "http".into(), container_port: 81, protocol: "UDP".into(), ..Default::default() },
            ContainerPort { name: "Not--ok".into(), container_port: 82, protocol: "SCTP".into(), ..Default::default() },
        ];
        has(&p, "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive");
        has(&p, "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive");
        has(&p, "spec.containers[0].ports[1].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive");
        has(&p, "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
        has(&p, "spec.containers[0].ports[3].name: Duplicate value: \"http\"");
        assert!(errors(&p).iter().any(|e| e.starts_with("spec.containers[0].ports[4].name: Invalid value")));
        assert_eq!(errors(&p).len(), 6);
        let mut p = good();
        p.spec.host_network = true;
        p.spec.containers[0].ports = vec![ContainerPort { container_port: 80, host_port: Some(8080), protocol: "TCP".into(), ..Default::default() }];
        has(&p, "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true");
    }

    #[test]
    fn env() {
        let mut p = good();
        let field = |path: &str| EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        };
        p.spec.containers[0].env = vec![
            EnvVar { name: "OK_1".into(), value: Some("x".into()), value_from: None },
            EnvVar { name: String::new(), value: None, value_from: None },
            EnvVar { name: "A=B".into(), value: None, value_from: None },
            EnvVar { name: "my.var-1".into(), value: None, value_from: Some(field("metadata.labels['app']")) },
            EnvVar { name: "NODE".into(), value: None, value_from: Some(field("spec.nodeName")) },
            EnvVar { name: "BAD".into(), value: None, value_from: Some(field("spec.hostname")) },
            EnvVar { name: "NONE".into(), value: None, value_from: Some(EnvVarSource::default()) },
            EnvVar {
                name: "TWO".into(),
                value: Some("v".into()),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector { name: "s".into(), key: "k".into(), optional: None }),
                    ..field("metadata.uid")
                }),
            },
            EnvVar { name: "EMPTY".into(), value: None, value_from: Some(field("")) },
            EnvVar { name: "KEYLESS".into(), value: None, value_from: Some(field("metadata.annotations['']")) },
        ];
        let e = errors(&p);
        has(&p, "spec.containers[0].env[1].name: Required value");
        has(&p, "spec.containers[0].env[2].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='");
        assert!(e.iter().any(|s| s.starts_with("spec.containers[0].env[5].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.hostname\": supported values: \"metadata.name\"")));
        has(&p, "spec.containers[0].env[6].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`");
        has(&p, "spec.containers[0].env[7].valueFrom: Invalid value: \"\": may not have more than one field specified at a time");
        has(&p, "spec.containers[0].env[7].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty");
        has(&p, "spec.containers[0].env[8].valueFrom.fieldRef.fieldPath: Required value");
        assert!(e.iter().any(|s| s.starts_with("spec.containers[0].env[9].valueFrom.fieldRef.fieldPath: Unsupported value")));
        assert_eq!(e.len(), 8, "{e:#?}");
    }

    #[test]
    fn env_sources() {
        let mut p = good();
        let src = |s: EnvVarSource| EnvVar { name: "V".into(), value: None, value_from: Some(s) };
        let res = |container: &str, resource: &str, divisor: Option<&str>| EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: container.into(),
                resource: resource.into(),
                divisor: divisor.map(Into::into),
            }),
            ..Default::default()
        };
        let cm = |name: &str, key: &str| EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector { name: name.into(), key: key.into(), optional: Some(true) }),
            ..Default::default()
        };
        let sk = |name: &str, key: &str| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector { name: name.into(), key: key.into(), optional: None }),
            ..Default::default()
        };
        p.spec.containers[0].env = vec![
            src(res("", "limits.cpu", Some("1m"))),
            src(res("", "requests.memory", Some("1Mi"))),
            src(res("", "limits.memory", Some("0"))),
            src(res("", "limits.cpu", Some("2"))),
            src(res("", "limits.memory", Some("3Mi"))),
            src(res("", "limits.gpu", None)),
            src(res("", "", None)),
            src(res("", "requests.ephemeral-storage", Some("lots"))),
            src(cm("app-config", "config.yaml")),
            src(cm("", "..x")),
            src(sk("Bad_Name", "")),
        ];
        p.spec.containers[0].env_from = vec![
            EnvFromSource { prefix: "APP_".into(), config_map_ref: Some(ObjectEnvSource { name: "cfg".into(), optional: None }), secret_ref: None },
            EnvFromSource { prefix: "A=".into(), ..Default::default() },
            EnvFromSource {
                prefix: String::new(),
                config_map_ref: Some(ObjectEnvSource::default()),
                secret_ref: Some(ObjectEnvSource { name: "s".into(), optional: Some(false) }),
            },
        ];
        let e = errors(&p);
        let c = "spec.containers[0]";
        has(&p, &format!("{c}.env[3].valueFrom.resourceFieldRef.divisor: Invalid value: \"limits.cpu\": only divisor's values 1m and 1 are supported with the cpu resource"));
        has(&p, &format!("{c}.env[4].valueFrom.resourceFieldRef.divisor: Invalid value: \"limits.memory\": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"));
        has(&p, &format!("{c}.env[5].valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\", \"limits.memory\", \"requests.cpu\", \"requests.ephemeral-storage\", \"requests.memory\""));
        has(&p, &format!("{c}.env[6].valueFrom.resourceFieldRef.resource: Required value"));
        has(&p, &format!("{c}.env[7].valueFrom.resourceFieldRef.divisor: Invalid value: \"lots\": must be a valid quantity"));
        has(&p, &format!("{c}.env[9].valueFrom.configMapKeyRef.name: Required value"));
        assert!(e.iter().any(|s| s.starts_with(&format!("{c}.env[9].valueFrom.configMapKeyRef.key: Invalid value: \"..x\": a valid config key"))), "{e:#?}");
        assert!(e.iter().any(|s| s.starts_with(&format!("{c}.env[10].valueFrom.secretKeyRef.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"))));
        has(&p, &format!("{c}.env[10].valueFrom.secretKeyRef.key: Required value"));
        has(&p, &format!("{c}.envFrom[1].prefix: Invalid value: \"A=\": a valid environment variable name must consist only of printable ASCII characters other than '='"));
        has(&p, &format!("{c}.envFrom[1]: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`"));
        has(&p, &format!("{c}.envFrom[2]: Forbidden: may not have more than one field specified at a time"));
        has(&p, &format!("{c}.envFrom[2].configMapRef.name: Required value"));
        assert_eq!(e.len(), 13, "{e:#?}");
    }

    #[test]
    fn api_volumes() {
        let mut p = good();
        let kp = |key: &str, path: &str, mode: Option<i32>| KeyToPath { key: key.into(), path: path.into(), mode };
        let field = |path: &str| ObjectFieldSelector { api_version: "v1".into(), field_path: path.into() };
        let dfile = |path: &str, f: Option<&str>, r: Option<(&str, &str)>| DownwardApiVolumeFile {
            path: path.into(),
            field_ref: f.map(field),
            resource_field_ref: r.map(|(c, res)| ResourceFieldSelector { container_name: c.into(), resource: res.into(), divisor: None }),
            mode: None,
        };
        p.spec.volumes = vec![
            Volume {
                name: "cm".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: String::new(),
                    items: vec![kp("a", "sub/a", Some(0o400)), kp("", "/abs", Some(0o1000)), kp("b", "../up", None), kp("c", "..c", None)],
                    default_mode: Some(-1),
                    optional: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "sec".into(),
                secret: Some(SecretVolumeSource { secret_name: "tls".into(), items: vec![kp("k", "", None)], default_mode: Some(0o600), optional: Some(true) }),
                ..Default::default()
            },
            Volume {
                name: "dw".into(),
                downward_api: Some(DownwardApiVolumeSource {
                    items: vec![
                        dfile("labels", Some("metadata.labels"), None),
                        dfile("node", Some("spec.nodeName"), None),
                        dfile("mem", None, Some(("", "limits.memory"))),
                        dfile("both", Some("metadata.name"), Some(("web", "limits.cpu"))),
                        dfile("none", None, None),
                    ],
                    default_mode: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "kube-api-access-x".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: vec![
                        VolumeProjection {
                            service_account_token: Some(ServiceAccountTokenProjection { audience: String::new(), expiration_seconds: Some(3607), path: "token".into() }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            config_map: Some(ConfigMapProjection { name: "kube-root-ca.crt".into(), items: vec![kp("ca.crt", "ca.crt", None)], optional: None }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            downward_api: Some(DownwardApiProjection { items: vec![dfile("namespace", Some("metadata.namespace"), None)] }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            secret: Some(SecretProjection { name: "s".into(), items: vec![kp("x", "token", None)], optional: None }),
                            service_account_token: Some(ServiceAccountTokenProjection { audience: "a".into(), expiration_seconds: Some(60), path: "t2".into() }),
                            ..Default::default()
                        },
                    ],
                    default_mode: Some(420),
                }),
                ..Default::default()
            },
        ];
        let e = errors(&p);
        let v = "spec.volumes";
        has(&p, &format!("{v}[0].configMap.name: Required value"));
        has(&p, &format!("{v}[0].configMap.defaultMode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive"));
        has(&p, &format!("{v}[0].configMap.items[1].key: Required value"));
        has(&p, &format!("{v}[0].configMap.items[1].path: Invalid value: \"/abs\": must be a relative path"));
        has(&p, &format!("{v}[0].configMap.items[1].mode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive"));
        has(&p, &format!("{v}[0].configMap.items[2].path: Invalid value: \"../up\": must not contain '..'"));
        has(&p, &format!("{v}[0].configMap.items[3].path: Invalid value: \"..c\": must not start with '..'"));
        has(&p, &format!("{v}[1].secret.items[0].path: Required value"));
        assert!(e.iter().any(|s| s.starts_with(&format!("{v}[2].downwardAPI.items[1].fieldRef.fieldPath: Unsupported value: \"spec.nodeName\": supported values: \"metadata.annotations\""))));
        has(&p, &format!("{v}[2].downwardAPI.items[2].resourceFieldRef.containerName: Required value"));
        has(&p, &format!("{v}[2].downwardAPI.items[3]: Invalid value: \"resource\": fieldRef and resourceFieldRef can not be specified simultaneously"));
        has(&p, &format!("{v}[2].downwardAPI.items[4]: Required value: one of fieldRef and resourceFieldRef is required"));
        has(&p, &format!("{v}[3].projected.sources[3]: Forbidden: may not specify more than 1 volume type"));
        has(&p, &format!("{v}[3].projected: Invalid value: \"token\": conflicting duplicate paths"));
        has(&p, &format!("{v}[3].projected.sources[3].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"));
        assert_eq!(e.len(), 15, "{e:#?}");
    }

    fn vol(name: &str) -> Volume {
        Volume { name: name.into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }
    }

    #[test]
    fn volumes() {
        let mut p = good();
        let hp = |path: &str, t: &str| HostPathVolumeSource { path: path.into(), type_: Some(t.into()) };
        p.spec.volumes = vec![
            vol("data"),
            vol("data"),
            Volume { name: "none".into(), ..Default::default() },
            Volume { host_path: Some(hp("/x", "")), ..vol("both") },
            Volume { empty_dir: Some(EmptyDirVolumeSource { medium: "Disk".into(), size_limit: Some("lots".into()) }), ..vol("ed") },
            Volume { name: "rel".into(), host_path: Some(hp("var/log", "Directory")), ..Default::default() },
            Volume { name: "kind".into(), host_path: Some(hp("/dev/x", "Pipe")), ..Default::default() },
            Volume { name: "ok".into(), host_path: Some(hp("/var/log", "DirectoryOrCreate")), ..Default::default() },
            Volume { empty_dir: Some(EmptyDirVolumeSource { medium: "Memory".into(), size_limit: Some("64Mi".into()) }), ..vol("mem") },
            vol("Upper"),
        ];
        let e = errors(&p);
        has(&p, "spec.volumes[1].name: Duplicate value: \"data\"");
        has(&p, "spec.volumes[2]: Required value: must specify a volume type");
        has(&p, "spec.volumes[3].hostPath: Forbidden: may not specify more than 1 volume type");
        has(&p, "spec.volumes[4].emptyDir.medium: Unsupported value: \"Disk\": supported values: \"\", \"Memory\"");
        has(&p, "spec.volumes[4].emptyDir.sizeLimit: Invalid value: \"lots\": must be a valid quantity");
        has(&p, "spec.volumes[5].hostPath.path: Invalid value: \"var/log\": must be an absolute path");
        assert!(e.iter().any(|s| s.starts_with("spec.volumes[6].hostPath.type: Unsupported value: \"Pipe\"")));
        assert!(e.iter().any(|s| s.starts_with("spec.volumes[9].name: Invalid value: \"Upper\"")));
        assert_eq!(e.len(), 8, "{e:#?}");
        // An unknown volume type is named, not reported as missing.
        let mut p = good();
        let mut nfs = Volume { name: "n".into(), ..Default::default() };
        nfs.unsupported = Some("nfs".into());
        p.spec.volumes = vec![nfs];
        let msg = errors(&p).join("\n");
        assert!(msg.contains("spec.volumes[0].nfs: Unsupported value"), "{msg}");
    }

    #[test]
    fn volume_mounts() {
        let mut p = good();
        p.spec.volumes = vec![vol("data")];
        let m = |name: &str, path: &str| VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() };
        p.spec.containers[0].volume_mounts = vec![
            m("data", "/data"),
            m("data", "/data/"),
            m("cache", "/cache"),
            m("", "relative"),
            VolumeMount { sub_path: "../etc".into(), mount_propagation: Some("Sideways".into()), ..m("data", "/x") },
            VolumeMount { sub_path: "a".into(), sub_path_expr: "/$(X)".into(), ..m("data", "/y") },
            VolumeMount { sub_path_expr: "$(X)/../..".into(), ..m("data", "/z") },
        ];
        let e = errors(&p);
        has(&p, "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/data/\": must be unique");
        has(&p, "spec.containers[0].volumeMounts[2].name: Not found: \"cache\"");
        has(&p, "spec.containers[0].volumeMounts[3].name: Required value");
        has(&p, "spec.containers[0].volumeMounts[3].mountPath: Invalid value: \"relative\": must be an absolute path");
        has(&p, "spec.containers[0].volumeMounts[4].subPath: Invalid value: \"../etc\": must not contain '..'");
        assert!(e.iter().any(|s| s.starts_with("spec.containers[0].volumeMounts[4].mountPropagation: Unsupported value")));
        has(&p, "spec.containers[0].volumeMounts[5].subPathExpr: Invalid value: \"/$(X)\": must be a relative path");
        has(&p, "spec.containers[0].volumeMounts[5].subPathExpr: Invalid value: \"/$(X)\": subPathExpr and subPath are mutually exclusive");
        has(&p, "spec.containers[0].volumeMounts[6].subPathExpr: Invalid value: \"$(X)/../..\": must not contain '..'");
        assert_eq!(e.len(), 9, "{e:#?}");
    }

    #[test]
    fn resources() {
        let mut p = good();
        let mut r = ResourceRequirements::default();
        r.limits.insert("cpu".into(), "500m".into());
        r.requests.insert("cpu".into(), "1".into());
        r.limits.insert("memory".into(), "64Mb".into());
        r.requests.insert("memory".into(), "32Mi".into());
        r.requests.insert("ephemeral-storage".into(), "-1".into());
        p.spec.containers[0].resources = Some(r);
        has(&p, "spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m");
        has(&p, "spec.containers[0].resources.limits[memory]: Invalid value: \"64Mb\": must be a valid quantity");
        has(&p, "spec.containers[0].resources.requests[ephemeral-storage]: Invalid value: \"-1\": must be greater than or equal to 0");
        assert_eq!(errors(&p).len(), 3);
    }

    #[test]
    fn grace_period_and_ids() {
        let mut p = good();
        p.spec.termination_grace_period_seconds = Some(-1);
        p.spec.security_context = Some(PodSecurityContext { run_as_user: Some(-5), run_as_group: Some(0), ..Default::default() });
        p.spec.containers[0].security_context = Some(SecurityContext {
            run_as_group: Some(-1),
            capabilities: Some(Capabilities { add: vec!["NET_ADMIN".into(), "".into()], drop: vec![] }),
            ..Default::default()
        });
        has(&p, "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0");
        has(&p, "spec.securityContext.runAsUser: Invalid value: -5: must be between 0 and 2147483647, inclusive");
        has(&p, "spec.containers[0].securityContext.runAsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive");
        has(&p, "spec.containers[0].securityContext.capabilities.add[1]: Required value");
        assert_eq!(errors(&p).len(), 4);
    }

    #[test]
    fn dns_none_needs_nameservers() {
        let mut p = good();
        p.spec.dns_policy = "None".into();
        has(&p, "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None");
        p.spec.dns_config = Some(PodDnsConfig::default());
        has(&p, "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None");
        p.spec.dns_config = Some(PodDnsConfig { nameservers: vec!["1.1.1.1".into(), "dns.google".into()], ..Default::default() });
        assert_eq!(errors(&p), ["spec.dnsConfig.nameservers[1]: Invalid value: \"dns.google\": must be a valid IP address"]);
        p.spec.dns_config.as_mut().unwrap().nameservers.pop();
        assert_eq!(validate(&p), Ok(()));
    }
}
