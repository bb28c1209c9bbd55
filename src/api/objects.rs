//! The local object store: the ConfigMaps, Secrets, ServiceAccount tokens and
//! Services that the pods bound to this node use, kept on disk so that pods
//! can start and restart from it while the API server is unreachable.
//!
//! The API client (the fetcher) writes it with the `put_*` functions and
//! `remove`; volumes (`volume::setup`/`refresh`) and container env
//! (`runtime::env`) read it. [`references`] and [`token_needs`] say what a
//! pod needs, so the fetcher knows what to get.
//!
//! Layout under `<root>/objects/` (directories 0700, files 0600, each file
//! written atomically, so a reader sees a whole old or a whole new object):
//!
//! ```text
//! <ns>/configmap/<name>.json   {"metadata":{name,namespace,uid,resourceVersion},
//!                               "data":{key: text}, "binaryData":{key: base64}}
//! <ns>/secret/<name>.json      {"metadata":{...}, "type", "data":{key: base64}}
//! <ns>/<kind>/<name>.missing   empty: the API server said 404 for it
//! <ns>/token/<pod-uid>/<serviceaccount>/<audience-hash>-<expirationSeconds>.json
//!                              {"serviceAccountName","audience","expirationSeconds",
//!                               "token","expirationTimestamp","storedAt"}
//! <ns>/services.json           [{"name","clusterIP","ports":[{"name","port","protocol"}]}]
//! ```
//!
//! Only those fields are kept, never whole API objects; the JSON shapes are
//! the API's own (ConfigMap data as text, Secret data and binaryData as
//! base64), so a stored file reads like the object it came from. Unlike
//! upstream, which keeps secrets in memory only, secrets and tokens are on
//! disk here: that is what lets a node restart its pods offline.

use crate::api::time::{self, parse_rfc3339, rfc3339};
use crate::api::types::Pod;
use crate::api::validate::{is_config_key, is_dns_label, is_dns_subdomain};
use crate::hostfs::write_atomic_mode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The kinds of object a pod may reference by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

impl ObjectKind {
    fn dir(self) -> &'static str {
        match self {
            ObjectKind::ConfigMap => "configmap",
            ObjectKind::Secret => "secret",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::ConfigMap => "ConfigMap",
            ObjectKind::Secret => "Secret",
        })
    }
}

/// An object a pod references. `optional` is true only if every reference
/// to it is optional (a missing optional object does not stop the pod).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
    pub optional: bool,
}

/// A service-account token a pod's projected volumes need: one TokenRequest
/// for `service_account` with these audiences and expirationSeconds, bound
/// to the pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenNeed {
    pub service_account: String,
    /// Empty: the API server's own audiences (the TokenRequest gets none).
    pub audience: String,
    pub expiration_seconds: i64,
}

/// What the object fetcher needs to know of a pod (not the pod itself).
#[derive(Debug, Clone, PartialEq)]
pub struct PodNeeds {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub refs: Vec<ObjectRef>,
    pub tokens: Vec<TokenNeed>,
}

impl PodNeeds {
    pub fn of(pod: &Pod) -> PodNeeds {
        PodNeeds {
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            refs: references(pod),
            tokens: token_needs(pod),
        }
    }
}

/// A ConfigMap or Secret as stored: its identity and its data, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjData {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub resource_version: String,
    /// ConfigMap `data` (text) or Secret `data` (decoded from base64).
    pub data: BTreeMap<String, Vec<u8>>,
    /// ConfigMap `binaryData`, decoded; always empty for Secrets.
    pub binary_data: BTreeMap<String, Vec<u8>>,
    /// A Secret's `type` (image pulls read only the docker config types).
    pub secret_type: String,
}

/// A stored service-account token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Token {
    pub service_account_name: String,
    pub audience: String,
    pub expiration_seconds: i64,
    pub token: String,
    pub expiration_timestamp: String,
    /// When picolet stored it, to refresh at 80 % of its life as upstream does.
    pub stored_at: String,
}

/// What service-link env variables need of a Service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceInfo {
    pub name: String,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: String,
    pub ports: Vec<ServicePortInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePortInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// Why the store could not be read or written.
#[derive(Debug)]
pub enum StoreError {
    /// A name, key or value the store refuses (it would not be a valid API object).
    Invalid(String),
    Io { path: PathBuf, source: io::Error },
    /// A stored file that does not parse (never written by picolet, or damaged).
    Corrupt { path: PathBuf, reason: String },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Invalid(m) => write!(f, "object store: {m}"),
            StoreError::Io { path, source } => write!(f, "object store: {}: {source}", path.display()),
            StoreError::Corrupt { path, reason } => write!(f, "object store: {}: {reason}", path.display()),
        }
    }
}

impl std::error::Error for StoreError {}

fn invalid<T>(m: String) -> Result<T, StoreError> {
    Err(StoreError::Invalid(m))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// A stored ConfigMap or Secret, in the API's JSON shape.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Stored {
    metadata: StoredMeta,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    type_: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    binary_data: BTreeMap<String, String>,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct StoredMeta {
    name: String,
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    resource_version: String,
}

/// The store: a directory, normally `<root>/objects`. Cheap to create; one
/// per thread is fine (the fetcher writes, the pod manager reads).
#[derive(Debug)]
pub struct ObjectStore {
    dir: PathBuf,
    /// Writes made through this handle, so a writer can tell readers.
    writes: std::cell::Cell<u64>,
}

impl ObjectStore {
    pub fn new(dir: impl Into<PathBuf>) -> ObjectStore {
        ObjectStore { dir: dir.into(), writes: Default::default() }
    }

    /// Changes with every write through this handle (content that differs).
    pub fn generation(&self) -> u64 {
        self.writes.get()
    }

    /// The store of the picolet whose `--root-dir` is `root`.
    pub fn under_root(root: &Path) -> ObjectStore {
        ObjectStore::new(root.join("objects"))
    }

    fn ns_dir(&self, ns: &str) -> Result<PathBuf, StoreError> {
        if !is_dns_label(ns) {
            return invalid(format!("invalid namespace {ns:?}"));
        }
        Ok(self.dir.join(ns))
    }

    fn object_path(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<PathBuf, StoreError> {
        if !is_dns_subdomain(name) {
            return invalid(format!("invalid {} name {name:?}", kind.dir()));
        }
        Ok(self.ns_dir(ns)?.join(kind.dir()).join(format!("{name}.json")))
    }

    fn pod_token_dir(&self, ns: &str, pod_uid: &str) -> Result<PathBuf, StoreError> {
        let ok = !pod_uid.is_empty()
            && !pod_uid.starts_with('.')
            && pod_uid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return invalid(format!("invalid pod uid {pod_uid:?}"));
        }
        Ok(self.ns_dir(ns)?.join("token").join(pod_uid))
    }

    fn token_path(&self, ns: &str, pod_uid: &str, need: &TokenNeed) -> Result<PathBuf, StoreError> {
        if !is_dns_subdomain(&need.service_account) {
            return invalid(format!("invalid service account name {:?}", need.service_account));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, need.audience.as_bytes());
        let hash: String = digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        let file = format!("{hash}-{}.json", need.expiration_seconds);
        Ok(self.pod_token_dir(ns, pod_uid)?.join(&need.service_account).join(file))
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, StoreError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })
    }

    pub fn get(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<Option<ObjData>, StoreError> {
        let path = self.object_path(kind, ns, name)?;
        let Some(stored) = self.read_json::<Stored>(&path)? else { return Ok(None) };
        let corrupt = |k: &str| StoreError::Corrupt { path: path.clone(), reason: format!("{k:?} is not base64") };
        let mut out = ObjData {
            name: stored.metadata.name,
            namespace: stored.metadata.namespace,
            uid: stored.metadata.uid,
            resource_version: stored.metadata.resource_version,
            secret_type: stored.type_,
            ..Default::default()
        };
        for (k, v) in stored.data {
            let bytes = match kind {
                ObjectKind::ConfigMap => v.into_bytes(),
                ObjectKind::Secret => base64_decode(&v).ok_or_else(|| corrupt(&k))?,
            };
            out.data.insert(k, bytes);
        }
        for (k, v) in stored.binary_data {
            let bytes = base64_decode(&v).ok_or_else(|| corrupt(&k))?;
            out.binary_data.insert(k, bytes);
        }
        Ok(Some(out))
    }

    /// A cheap fingerprint of a stored object's file (inode, mtime, size; "-"
    /// when absent): it changes whenever the object is written again. Used to
    /// notice updates without reading and parsing the file.
    pub fn version(&self, kind: ObjectKind, ns: &str, name: &str) -> String {
        self.object_path(kind, ns, name).map(|p| file_version(&p)).unwrap_or_else(|_| "-".into())
    }

    pub fn get_token(&self, ns: &str, pod_uid: &str, need: &TokenNeed) -> Result<Option<Token>, StoreError> {
        self.read_json(&self.token_path(ns, pod_uid, need)?)
    }

    pub fn token_version(&self, ns: &str, pod_uid: &str, need: &TokenNeed) -> String {
        self.token_path(ns, pod_uid, need).map(|p| file_version(&p)).unwrap_or_else(|_| "-".into())
    }

    /// The Services of `ns`, or None if the fetcher has never stored them.
    pub fn services(&self, ns: &str) -> Result<Option<Vec<ServiceInfo>>, StoreError> {
        self.read_json(&self.ns_dir(ns)?.join("services.json"))
    }
}

/// The writer's half, and typed getters: the API fetcher (api::client)
/// calls these; until it lands only the tests do.
#[allow(dead_code)]
impl ObjectStore {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, path: &Path, body: &[u8]) -> Result<bool, StoreError> {
        if fs::read(path).ok().as_deref() == Some(body) {
            return Ok(false);
        }
        if let Some(parent) = path.parent() {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(parent).map_err(io_err(parent))?;
        }
        write_atomic_mode(path, body, 0o600).map_err(io_err(path))?;
        if path.extension().is_some_and(|e| e == "json") {
            // It exists now: no longer "missing".
            let _ = fs::remove_file(path.with_extension("missing"));
        }
        self.writes.set(self.writes.get() + 1);
        Ok(true)
    }

    /// Stores ConfigMap `ns/name` from its API object (`metadata`, `data`,
    /// `binaryData`; anything else is dropped). True if the stored file
    /// changed (writing the same object again is a no-op).
    pub fn put_config_map(&self, ns: &str, name: &str, obj: &Value) -> Result<bool, StoreError> {
        let path = self.object_path(ObjectKind::ConfigMap, ns, name)?;
        let mut stored = Stored { metadata: meta_of(obj, ns, name)?, ..Default::default() };
        for (k, v) in string_map(obj, "data")? {
            stored.data.insert(k, v);
        }
        for (k, v) in string_map(obj, "binaryData")? {
            if base64_decode(&v).is_none() {
                return invalid(format!("configmap {ns}/{name}: binaryData[{k}] is not base64"));
            }
            if stored.data.contains_key(&k) {
                return invalid(format!("configmap {ns}/{name}: key {k:?} is in both data and binaryData"));
            }
            stored.binary_data.insert(k, v);
        }
        self.write(&path, &serde_json::to_vec(&stored).expect("serialises"))
    }

    /// Stores Secret `ns/name` from its API object (`metadata`, `data` in
    /// base64, and `stringData` merged over it as the API server would).
    pub fn put_secret(&self, ns: &str, name: &str, obj: &Value) -> Result<bool, StoreError> {
        let path = self.object_path(ObjectKind::Secret, ns, name)?;
        let type_ = obj.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut stored = Stored { metadata: meta_of(obj, ns, name)?, type_, ..Default::default() };
        for (k, v) in string_map(obj, "data")? {
            if base64_decode(&v).is_none() {
                return invalid(format!("secret {ns}/{name}: data[{k}] is not base64"));
            }
            stored.data.insert(k, v);
        }
        for (k, v) in string_map(obj, "stringData")? {
            stored.data.insert(k, base64_encode(v.as_bytes()));
        }
        self.write(&path, &serde_json::to_vec(&stored).expect("serialises"))
    }

    /// Forgets an object (deleted in the API). Removing a missing one is fine.
    pub fn remove(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<(), StoreError> {
        let path = self.object_path(kind, ns, name)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Forgets an object and notes that the API server does not have it,
    /// so a reader can tell "does not exist" from "not read yet".
    pub fn mark_missing(&self, kind: ObjectKind, ns: &str, name: &str) -> Result<(), StoreError> {
        self.remove(kind, ns, name)?;
        let marker = self.object_path(kind, ns, name)?.with_extension("missing");
        if marker.exists() {
            return Ok(());
        }
        self.write(&marker, b"")?;
        Ok(())
    }

    pub fn get_config_map(&self, ns: &str, name: &str) -> Result<Option<ObjData>, StoreError> {
        self.get(ObjectKind::ConfigMap, ns, name)
    }

    pub fn get_secret(&self, ns: &str, name: &str) -> Result<Option<ObjData>, StoreError> {
        self.get(ObjectKind::Secret, ns, name)
    }

    /// True once the fetcher found that the API server has no such object
    /// (and has not seen it appear since).
    pub fn known_missing(&self, kind: ObjectKind, ns: &str, name: &str) -> bool {
        self.object_path(kind, ns, name).is_ok_and(|p| p.with_extension("missing").exists())
    }

    /// Stores the token of `need` for pod `pod_uid` in namespace `ns`, from
    /// the TokenRequest the API server returned (its `status.token` and
    /// `status.expirationTimestamp`; a bare status object works too).
    pub fn put_token(&self, ns: &str, pod_uid: &str, need: &TokenNeed, response: &Value) -> Result<(), StoreError> {
        let path = self.token_path(ns, pod_uid, need)?;
        let status = response.get("status").unwrap_or(response);
        let token = status.get("token").and_then(Value::as_str).unwrap_or_default();
        let exp = status.get("expirationTimestamp").and_then(Value::as_str).unwrap_or_default();
        if token.is_empty() {
            return invalid(format!("token for serviceaccount {ns}/{}: empty token", need.service_account));
        }
        if parse_rfc3339(exp).is_none() {
            return invalid(format!("token for serviceaccount {ns}/{}: bad expirationTimestamp {exp:?}", need.service_account));
        }
        let t = Token {
            service_account_name: need.service_account.clone(),
            audience: need.audience.clone(),
            expiration_seconds: need.expiration_seconds,
            token: token.to_string(),
            expiration_timestamp: exp.to_string(),
            stored_at: rfc3339(SystemTime::now()),
        };
        self.write(&path, &serde_json::to_vec(&t).expect("serialises")).map(drop)
    }

    /// Whether the fetcher should request this token (again): it is missing,
    /// unreadable, or past upstream's refresh point (80 % of its life, or 24 h).
    pub fn token_due(&self, ns: &str, pod_uid: &str, need: &TokenNeed, now: SystemTime) -> bool {
        let Ok(Some(t)) = self.get_token(ns, pod_uid, need) else { return true };
        let (Some(exp), Some(stored)) = (parse_rfc3339(&t.expiration_timestamp), parse_rfc3339(&t.stored_at)) else {
            return true;
        };
        let ttl = time::seconds(need.expiration_seconds);
        let by_life = time::wall_deadline(stored, ttl - ttl / 5);
        let by_expiry = exp.checked_sub(ttl / 5).unwrap_or(exp);
        let by_age = time::wall_deadline(stored, Duration::from_secs(24 * 3600));
        now >= by_life.min(by_expiry).min(by_age)
    }

    /// Forgets a pod's tokens (the pod is gone).
    pub fn remove_tokens(&self, ns: &str, pod_uid: &str) -> Result<(), StoreError> {
        let dir = self.pod_token_dir(ns, pod_uid)?;
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Stores the Services of namespace `ns` (their API objects) for
    /// service-link env variables: name, clusterIP and ports only; services
    /// without a cluster IP (headless, ExternalName) are left out, as upstream
    /// makes no variables for them. True if the stored list changed.
    pub fn put_services(&self, ns: &str, services: &[Value]) -> Result<bool, StoreError> {
        let path = self.ns_dir(ns)?.join("services.json");
        let mut list = Vec::new();
        for s in services {
            let name = s.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            let ip = s.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or_default();
            if !is_dns_label(name) {
                return invalid(format!("service in {ns}: invalid name {name:?}"));
            }
            if ip.is_empty() || ip == "None" {
                continue;
            }
            let ports = s.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
            let ports = ports
                .iter()
                .map(|p| ServicePortInfo {
                    name: p.get("name").and_then(Value::as_str).unwrap_or_default().to_string(),
                    port: p.get("port").and_then(Value::as_i64).unwrap_or_default() as i32,
                    protocol: p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
                })
                .collect();
            list.push(ServiceInfo { name: name.to_string(), cluster_ip: ip.to_string(), ports });
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        self.write(&path, &serde_json::to_vec(&list).expect("serialises"))
    }

    /// Removes ConfigMaps, Secrets and tokens that none of `pods` (every pod
    /// bound to the node) references. Services are kept. Returns how many
    /// files or token directories went.
    pub fn prune(&self, pods: &[PodNeeds]) -> Result<usize, StoreError> {
        let mut keep = std::collections::BTreeSet::new();
        let mut uids = std::collections::BTreeSet::new();
        for p in pods {
            for r in &p.refs {
                keep.insert((r.namespace.clone(), r.kind.dir(), format!("{}.json", r.name)));
                keep.insert((r.namespace.clone(), r.kind.dir(), format!("{}.missing", r.name)));
            }
            uids.insert((p.namespace.clone(), p.uid.clone()));
        }
        let mut removed = 0;
        for ns in list_dir(&self.dir)? {
            let ns_dir = self.dir.join(&ns);
            for kind in [ObjectKind::ConfigMap, ObjectKind::Secret] {
                let dir = ns_dir.join(kind.dir());
                for f in list_dir(&dir)? {
                    if !keep.contains(&(ns.clone(), kind.dir(), f.clone())) {
                        let path = dir.join(&f);
                        fs::remove_file(&path).map_err(io_err(&path))?;
                        removed += 1;
                    }
                }
            }
            let tokens = ns_dir.join("token");
            for uid in list_dir(&tokens)? {
                if !uids.contains(&(ns.clone(), uid.clone())) {
                    let path = tokens.join(&uid);
                    fs::remove_dir_all(&path).map_err(io_err(&path))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Names in `dir` (none if it doesn't exist), without temp files.
fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    Ok(entries.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| !n.starts_with('.')).collect())
}

fn file_version(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => format!("{}:{}.{}:{}", m.ino(), m.mtime(), m.mtime_nsec(), m.size()),
        Err(_) => "-".into(),
    }
}

/// The kept metadata of an API object, checked against the names it is stored under.
fn meta_of(obj: &Value, ns: &str, name: &str) -> Result<StoredMeta, StoreError> {
    let get = |k: &str| obj.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_string();
    let (n, namespace) = (get("name"), get("namespace"));
    if !n.is_empty() && n != name {
        return invalid(format!("object named {n:?} stored as {name:?}"));
    }
    if !namespace.is_empty() && namespace != ns {
        return invalid(format!("object of namespace {namespace:?} stored in {ns:?}"));
    }
    Ok(StoredMeta { name: name.into(), namespace: ns.into(), uid: get("uid"), resource_version: get("resourceVersion") })
}

/// `obj[field]` as a map of strings with valid keys (absent or null: empty).
fn string_map(obj: &Value, field: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let mut out = BTreeMap::new();
    match obj.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !is_config_key(k) {
                    return invalid(format!("{field}: invalid key {k:?}"));
                }
                let Some(s) = v.as_str() else { return invalid(format!("{field}[{k}]: not a string")) };
                out.insert(k.clone(), s.to_string());
            }
        }
        Some(_) => return invalid(format!("{field}: not a map")),
    }
    Ok(out)
}

/// What `pod` references by name: ConfigMaps and Secrets of its volumes
/// (projected sources included), env (`configMapKeyRef`, `secretKeyRef`,
/// `envFrom`) and imagePullSecrets (optional: a missing one does not stop
/// the pod). Sorted, one entry per object.
pub fn references(pod: &Pod) -> Vec<ObjectRef> {
    let mut refs: BTreeMap<(ObjectKind, String), bool> = BTreeMap::new();
    let mut add = |kind: ObjectKind, name: &str, optional: Option<bool>| {
        if name.is_empty() {
            return;
        }
        let optional = optional.unwrap_or(false);
        refs.entry((kind, name.to_string())).and_modify(|o| *o &= optional).or_insert(optional);
    };
    for v in &pod.spec.volumes {
        if let Some(c) = &v.config_map {
            add(ObjectKind::ConfigMap, &c.name, c.optional);
        }
        if let Some(s) = &v.secret {
            add(ObjectKind::Secret, &s.secret_name, s.optional);
        }
        for src in v.projected.iter().flat_map(|p| &p.sources) {
            if let Some(c) = &src.config_map {
                add(ObjectKind::ConfigMap, &c.name, c.optional);
            }
            if let Some(s) = &src.secret {
                add(ObjectKind::Secret, &s.name, s.optional);
            }
        }
    }
    for c in pod.spec.init_containers.iter().chain(&pod.spec.containers) {
        for e in c.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(k) = &e.config_map_key_ref {
                add(ObjectKind::ConfigMap, &k.name, k.optional);
            }
            if let Some(k) = &e.secret_key_ref {
                add(ObjectKind::Secret, &k.name, k.optional);
            }
        }
        for e in &c.env_from {
            if let Some(r) = &e.config_map_ref {
                add(ObjectKind::ConfigMap, &r.name, r.optional);
            }
            if let Some(r) = &e.secret_ref {
                add(ObjectKind::Secret, &r.name, r.optional);
            }
        }
    }
    for s in &pod.spec.image_pull_secrets {
        add(ObjectKind::Secret, &s.name, Some(true));
    }
    let ns = &pod.metadata.namespace;
    refs.into_iter()
        .map(|((kind, name), optional)| ObjectRef { kind, namespace: ns.clone(), name, optional })
        .collect()
}

/// The service account a pod's tokens are for (`default` when unset, as the
/// ServiceAccount admission would set it).
pub fn service_account(pod: &Pod) -> &str {
    match pod.spec.service_account_name.as_str() {
        "" => "default",
        sa => sa,
    }
}

/// The tokens `pod`'s projected volumes need (serviceAccountToken sources),
/// one per distinct audience and expiration.
pub fn token_needs(pod: &Pod) -> Vec<TokenNeed> {
    let mut out: Vec<TokenNeed> = pod
        .spec
        .volumes
        .iter()
        .flat_map(|v| v.projected.iter().flat_map(|p| &p.sources))
        .filter_map(|s| s.service_account_token.as_ref())
        .map(|t| token_need(pod, t))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn token_need(pod: &Pod, t: &crate::api::types::ServiceAccountTokenProjection) -> TokenNeed {
    TokenNeed {
        service_account: service_account(pod).to_string(),
        audience: t.audience.clone(),
        expiration_seconds: t.expiration_seconds.unwrap_or(3600),
    }
}

// ---- base64 (standard alphabet, padded), as the API writes bytes ----

/// Standard base64 (with padding), as the API writes Secret data; the
/// `base64` crate ureq already brings in.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// None for anything that is not canonical padded base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::*;
    use serde_json::json;

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("picolet-objects-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn base64_round_trip() {
        for (plain, enc) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy"), ("\u{0}\u{ff}", "AMO/")] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)).unwrap(), all);
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!", "Zm 9"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_maps_and_secrets_round_trip() {
        let d = tempdir("roundtrip");
        let s = ObjectStore::under_root(&d);
        let cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app", "namespace": "web", "uid": "u1", "resourceVersion": "7", "labels": {"x": "y"},
                         "managedFields": [{"manager": "kubectl"}]},
            "data": {"app.conf": "listen 80\n", "empty": ""},
            "binaryData": {"logo.png": base64_encode(&[0, 1, 2, 255])},
        });
        assert!(s.put_config_map("web", "app", &cm).unwrap());
        assert!(!s.put_config_map("web", "app", &cm).unwrap(), "same object again: no write");
        let got = s.get_config_map("web", "app").unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.namespace.as_str(), got.uid.as_str(), got.resource_version.as_str()), ("app", "web", "u1", "7"));
        assert_eq!(got.data["app.conf"], b"listen 80\n");
        assert_eq!(got.data["empty"], b"");
        assert_eq!(got.binary_data["logo.png"], [0, 1, 2, 255]);
        // Only the kept fields are on disk, in the API's shape, 0600 in a 0700 dir.
        let path = d.join("objects/web/configmap/app.json");
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("labels") && !text.contains("managedFields") && !text.contains("apiVersion"), "{text}");
        let on_disk: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(on_disk["data"]["app.conf"], "listen 80\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);

        let sec = json!({"metadata": {"name": "db", "resourceVersion": "3"},
                         "data": {"password": base64_encode(b"s3cr\x00t")}, "stringData": {"user": "admin"}, "type": "Opaque"});
        assert!(s.put_secret("web", "db", &sec).unwrap());
        let got = s.get_secret("web", "db").unwrap().unwrap();
        assert_eq!(got.data["password"], b"s3cr\x00t");
        assert_eq!(got.data["user"], b"admin");
        assert!(got.binary_data.is_empty());
        assert_eq!(got.secret_type, "Opaque");
        let text = fs::read_to_string(d.join("objects/web/secret/db.json")).unwrap();
        assert!(!text.contains("admin"), "secret data stays base64: {text}");

        // Missing is None, not an error; a ConfigMap is not a Secret.
        assert_eq!(s.get_config_map("web", "nope").unwrap(), None);
        assert_eq!(s.get_secret("web", "app").unwrap(), None);
        assert_eq!(s.get_config_map("other", "app").unwrap(), None);

        // Versions change with each write, not with reads.
        let v1 = s.version(ObjectKind::ConfigMap, "web", "app");
        assert_eq!(v1, s.version(ObjectKind::ConfigMap, "web", "app"));
        let mut cm2 = cm.clone();
        cm2["data"]["app.conf"] = json!("listen 8080\n");
        assert!(s.put_config_map("web", "app", &cm2).unwrap());
        assert_ne!(v1, s.version(ObjectKind::ConfigMap, "web", "app"));
        assert_eq!(s.version(ObjectKind::ConfigMap, "web", "nope"), "-");

        s.remove(ObjectKind::ConfigMap, "web", "app").unwrap();
        s.remove(ObjectKind::ConfigMap, "web", "app").unwrap();
        assert_eq!(s.get_config_map("web", "app").unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_input_is_refused() {
        let d = tempdir("bad");
        let s = ObjectStore::under_root(&d);
        let e = |r: Result<bool, StoreError>| r.unwrap_err().to_string();
        assert!(e(s.put_config_map("web", "../x", &json!({}))).contains("invalid configmap name"));
        assert!(e(s.put_config_map("Web", "x", &json!({}))).contains("invalid namespace"));
        assert!(e(s.put_config_map("web", "x", &json!({"metadata": {"name": "y"}}))).contains("stored as"));
        assert!(e(s.put_config_map("web", "x", &json!({"data": {"a/b": "v"}}))).contains("invalid key"));
        assert!(e(s.put_config_map("web", "x", &json!({"data": {"a": 1}}))).contains("not a string"));
        assert!(e(s.put_config_map("web", "x", &json!({"data": {"a": "1"}, "binaryData": {"a": "AA=="}}))).contains("both"));
        assert!(e(s.put_secret("web", "x", &json!({"data": {"a": "not base64"}}))).contains("not base64"));
        fs::create_dir_all(d.join("objects/web/secret")).unwrap();
        fs::write(d.join("objects/web/secret/broken.json"), "{").unwrap();
        assert!(matches!(s.get_secret("web", "broken"), Err(StoreError::Corrupt { .. })));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tokens() {
        let d = tempdir("tokens");
        let s = ObjectStore::under_root(&d);
        let need = TokenNeed { service_account: "default".into(), audience: String::new(), expiration_seconds: 3607 };
        let vault = TokenNeed { audience: "vault".into(), ..need.clone() };
        let now = SystemTime::now();
        assert!(s.token_due("web", "uid-1", &need, now));
        let exp = rfc3339(now + Duration::from_secs(3607));
        let resp = json!({"kind": "TokenRequest", "spec": {"expirationSeconds": 3607}, "status": {"token": "eyJ.a.b", "expirationTimestamp": exp}});
        s.put_token("web", "uid-1", &need, &resp).unwrap();
        s.put_token("web", "uid-1", &vault, &json!({"token": "eyJ.v.v", "expirationTimestamp": exp})).unwrap();
        let t = s.get_token("web", "uid-1", &need).unwrap().unwrap();
        assert_eq!((t.token.as_str(), t.expiration_seconds), ("eyJ.a.b", 3607));
        assert_eq!(s.get_token("web", "uid-1", &vault).unwrap().unwrap().token, "eyJ.v.v");
        assert!(!s.token_due("web", "uid-1", &need, now));
        assert!(!s.token_due("web", "uid-1", &need, now + Duration::from_secs(2800)));
        assert!(s.token_due("web", "uid-1", &need, now + Duration::from_secs(2900)), "80 % of 3607 s");
        // A token extended by the API server (a year) is still refreshed at 80 % of what was asked.
        let long = json!({"token": "eyJ.l.l", "expirationTimestamp": rfc3339(now + Duration::from_secs(365 * 86400))});
        s.put_token("web", "uid-1", &need, &long).unwrap();
        assert!(s.token_due("web", "uid-1", &need, now + Duration::from_secs(2900)));
        assert!(s.put_token("web", "uid-1", &need, &json!({"token": "x", "expirationTimestamp": "soon"})).is_err());
        assert!(s.put_token("web", "../uid", &need, &long).is_err());
        s.remove_tokens("web", "uid-1").unwrap();
        assert_eq!(s.get_token("web", "uid-1", &need).unwrap(), None);
        fs::remove_dir_all(&d).unwrap();
    }

    /// expirationSeconds of any int64 (a static pod's manifest is not
    /// validated by an API server): the refresh point saturates.
    #[test]
    fn token_refresh_of_extreme_lifetimes() {
        let d = tempdir("tokens-extreme");
        let s = ObjectStore::under_root(&d);
        let now = SystemTime::now();
        let resp = json!({"token": "eyJ.a.b", "expirationTimestamp": rfc3339(now + Duration::from_secs(3600))});
        for secs in [i64::MAX, i64::MIN, -1, 0] {
            let need = TokenNeed { service_account: "default".into(), audience: String::new(), expiration_seconds: secs };
            s.put_token("web", "uid-1", &need, &resp).unwrap();
            // Due by 24 h of age at the latest, at once for a lifetime of nothing.
            assert!(s.token_due("web", "uid-1", &need, now + Duration::from_secs(25 * 3600)), "{secs}");
            let soon = SystemTime::now() + Duration::from_secs(2);
            assert!(s.token_due("web", "uid-1", &need, soon) || secs > 0, "{secs}");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn services_are_compacted() {
        let d = tempdir("services");
        let s = ObjectStore::under_root(&d);
        assert_eq!(s.services("default").unwrap(), None);
        let list = [
            json!({"metadata": {"name": "kubernetes", "namespace": "default", "uid": "x"},
                   "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
            json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}]}}),
        ];
        assert!(s.put_services("default", &list).unwrap());
        assert!(!s.put_services("default", &list).unwrap());
        let got = s.services("default").unwrap().unwrap();
        let names: Vec<&str> = got.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["dns", "kubernetes"]);
        assert_eq!(got[0].ports[1], ServicePortInfo { name: "dns-tcp".into(), port: 53, protocol: "TCP".into() });
        assert!(!fs::read_to_string(d.join("objects/default/services.json")).unwrap().contains("targetPort"));
        fs::remove_dir_all(&d).unwrap();
    }

    fn pod_with_everything() -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = "web".into();
        p.metadata.uid = "uid-1".into();
        p.spec.service_account_name = "builder".into();
        let ktp = |k: &str| KeyToPath { key: k.into(), path: k.into(), mode: None };
        p.spec.volumes = vec![
            Volume { name: "a".into(), config_map: Some(ConfigMapVolumeSource { name: "cfg".into(), optional: Some(true), ..Default::default() }), ..Default::default() },
            Volume { name: "b".into(), secret: Some(SecretVolumeSource { secret_name: "tls".into(), ..Default::default() }), ..Default::default() },
            Volume {
                name: "kube-api-access-x".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: vec![
                        VolumeProjection {
                            service_account_token: Some(ServiceAccountTokenProjection { audience: String::new(), expiration_seconds: Some(3607), path: "token".into() }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            config_map: Some(ConfigMapProjection { name: "kube-root-ca.crt".into(), items: vec![ktp("ca.crt")], optional: None }),
                            ..Default::default()
                        },
                        VolumeProjection {
                            service_account_token: Some(ServiceAccountTokenProjection { audience: "vault".into(), expiration_seconds: None, path: "vault".into() }),
                            ..Default::default()
                        },
                    ],
                    default_mode: Some(420),
                }),
                ..Default::default()
            },
        ];
        p.spec.containers = vec![Container {
            name: "c".into(),
            env: vec![EnvVar {
                name: "K".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector { name: "cfg".into(), key: "k".into(), optional: None }),
                    ..Default::default()
                }),
            }],
            env_from: vec![EnvFromSource { prefix: String::new(), config_map_ref: None, secret_ref: Some(ObjectEnvSource { name: "env".into(), optional: Some(true) }) }],
            ..Default::default()
        }];
        p.spec.image_pull_secrets = vec![LocalObjectReference { name: "regcred".into() }];
        p
    }

    #[test]
    fn what_a_pod_references() {
        let p = pod_with_everything();
        let r = |kind, name: &str, optional| ObjectRef { kind, namespace: "web".into(), name: name.into(), optional };
        assert_eq!(
            references(&p),
            [
                r(ObjectKind::ConfigMap, "cfg", false), // optional in the volume, required by env
                r(ObjectKind::ConfigMap, "kube-root-ca.crt", false),
                r(ObjectKind::Secret, "env", true),
                r(ObjectKind::Secret, "regcred", true),
                r(ObjectKind::Secret, "tls", false),
            ]
        );
        let t = |aud: &str, exp| TokenNeed { service_account: "builder".into(), audience: aud.into(), expiration_seconds: exp };
        assert_eq!(token_needs(&p), [t("", 3607), t("vault", 3600)]);
        let mut q = p.clone();
        q.spec.service_account_name.clear();
        assert_eq!(token_needs(&q)[0].service_account, "default");
    }

    #[test]
    fn prune_keeps_what_pods_use() {
        let d = tempdir("prune");
        let s = ObjectStore::under_root(&d);
        let p = pod_with_everything();
        for name in ["cfg", "kube-root-ca.crt", "old"] {
            s.put_config_map("web", name, &json!({})).unwrap();
        }
        s.put_secret("web", "tls", &json!({})).unwrap();
        s.put_secret("other", "tls", &json!({})).unwrap();
        s.put_services("web", &[]).unwrap();
        let need = &token_needs(&p)[0];
        let tok = json!({"token": "t", "expirationTimestamp": "2030-01-01T00:00:00Z"});
        s.put_token("web", "uid-1", need, &tok).unwrap();
        s.put_token("web", "uid-gone", need, &tok).unwrap();
        assert_eq!(s.prune(&[PodNeeds::of(&p)]).unwrap(), 3);
        assert!(s.get_config_map("web", "cfg").unwrap().is_some());
        assert!(s.get_config_map("web", "old").unwrap().is_none());
        assert!(s.get_secret("other", "tls").unwrap().is_none());
        assert!(s.get_token("web", "uid-1", need).unwrap().is_some());
        assert!(s.get_token("web", "uid-gone", need).unwrap().is_none());
        assert!(s.services("web").unwrap().is_some());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_objects_are_told_from_unread_ones() {
        let d = tempdir("missing");
        let s = ObjectStore::under_root(&d);
        assert!(!s.known_missing(ObjectKind::Secret, "web", "regcred"), "not read yet");
        s.put_secret("web", "regcred", &json!({"type": "kubernetes.io/dockerconfigjson"})).unwrap();
        let g = s.generation();
        s.mark_missing(ObjectKind::Secret, "web", "regcred").unwrap();
        assert!(s.known_missing(ObjectKind::Secret, "web", "regcred") && s.generation() > g, "a write readers notice");
        assert_eq!(s.get_secret("web", "regcred").unwrap(), None, "the old copy went");
        let g = s.generation();
        s.mark_missing(ObjectKind::Secret, "web", "regcred").unwrap();
        assert_eq!(s.generation(), g, "marking again changes nothing");
        // Kept by prune while referenced, gone once it exists.
        let mut p = Pod::default();
        p.metadata.namespace = "web".into();
        p.spec.image_pull_secrets = vec![LocalObjectReference { name: "regcred".into() }];
        s.prune(&[PodNeeds::of(&p)]).unwrap();
        assert!(s.known_missing(ObjectKind::Secret, "web", "regcred"));
        s.put_secret("web", "regcred", &json!({"type": "kubernetes.io/dockerconfigjson"})).unwrap();
        assert!(!s.known_missing(ObjectKind::Secret, "web", "regcred"));
        assert_eq!(s.get_secret("web", "regcred").unwrap().unwrap().secret_type, "kubernetes.io/dockerconfigjson");
        s.mark_missing(ObjectKind::Secret, "web", "regcred").unwrap();
        s.prune(&[]).unwrap();
        assert!(!s.known_missing(ObjectKind::Secret, "web", "regcred"), "pruned with the pod");
        fs::remove_dir_all(&d).unwrap();
    }
}
