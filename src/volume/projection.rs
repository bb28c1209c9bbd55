//! The files of API-backed volumes (configMap, secret, downwardAPI,
//! projected), computed from the pod and the local object store the way
//! upstream's volume plugins compute their payloads: every key (or the
//! listed `items`), modes from `items[].mode` else `defaultMode`, a missing
//! optional object or key left out, a missing required one an error that
//! keeps the pod waiting.

use super::atomic::FileProjection;
use crate::api::downward::{resource_value, volume_field, Allocatable};
use crate::api::objects::{token_need, ObjData, ObjectKind, ObjectStore};
use crate::api::types::{DownwardApiVolumeFile, KeyToPath, Pod, Volume};
use std::collections::BTreeMap;

/// What API-backed volumes read besides the pod.
pub struct Sources<'a> {
    pub objects: &'a ObjectStore,
    pub node: &'a Allocatable,
}

pub type Payload = BTreeMap<String, FileProjection>;

const DEFAULT_MODE: i32 = 0o644;

fn mode(m: Option<i32>, default: Option<i32>) -> u32 {
    (m.or(default).unwrap_or(DEFAULT_MODE) as u32) & 0o777
}

/// Upstream's error aggregate: one message as is, several as `[a, b]`.
fn aggregate(errs: Vec<String>) -> Result<(), String> {
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.into_iter().next().unwrap_or_default()),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// A ConfigMap or Secret from the store; a missing one is an empty object
/// if `optional`, else upstream's `configmap "x" not found`.
fn object(src: &Sources, kind: ObjectKind, ns: &str, name: &str, optional: bool) -> Result<ObjData, String> {
    match src.objects.get(kind, ns, name) {
        Ok(Some(o)) => Ok(o),
        Ok(None) if optional => Ok(ObjData::default()),
        Ok(None) => Err(format!("{} {name:?} not found", kind.to_string().to_lowercase())),
        Err(e) => Err(e.to_string()),
    }
}

/// Upstream's MakePayload of the configmap and secret plugins.
fn key_payload(
    kind: ObjectKind,
    obj: &ObjData,
    items: &[KeyToPath],
    default_mode: Option<i32>,
    optional: bool,
    out: &mut Payload,
) -> Result<(), String> {
    let file = |data: &Vec<u8>, m| FileProjection { data: data.clone(), mode: m };
    if items.is_empty() {
        for (k, v) in obj.data.iter().chain(&obj.binary_data) {
            out.insert(k.clone(), file(v, mode(None, default_mode)));
        }
        return Ok(());
    }
    for item in items {
        match obj.data.get(&item.key).or_else(|| obj.binary_data.get(&item.key)) {
            Some(v) => {
                out.insert(item.path.clone(), file(v, mode(item.mode, default_mode)));
            }
            None if optional => {}
            None => {
                return Err(match kind {
                    ObjectKind::ConfigMap => format!("configmap references non-existent config key: {}", item.key),
                    ObjectKind::Secret => format!("references non-existent secret key: {}", item.key),
                })
            }
        }
    }
    Ok(())
}

/// Upstream's downwardapi CollectData: every item, errors aggregated.
fn downward_payload(pod: &Pod, items: &[DownwardApiVolumeFile], default_mode: Option<i32>, src: &Sources, out: &mut Payload) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(f), _) => volume_field(pod, &f.field_path),
            (None, Some(r)) => resource_value(r, pod, None, src.node),
            (None, None) => Ok(String::new()),
        };
        match value {
            Ok(v) => {
                out.insert(item.path.clone(), FileProjection { data: v.into_bytes(), mode: mode(item.mode, default_mode) });
            }
            Err(e) => errs.push(e),
        }
    }
    errs
}

/// The files of API-backed volume `v` of `pod`.
pub fn payload(pod: &Pod, v: &Volume, src: &Sources) -> Result<Payload, String> {
    let ns = pod.metadata.namespace.as_str();
    let mut out = Payload::new();
    if let Some(cm) = &v.config_map {
        let optional = cm.optional.unwrap_or(false);
        let obj = object(src, ObjectKind::ConfigMap, ns, &cm.name, optional)?;
        key_payload(ObjectKind::ConfigMap, &obj, &cm.items, cm.default_mode, optional, &mut out)?;
    } else if let Some(s) = &v.secret {
        let optional = s.optional.unwrap_or(false);
        let obj = object(src, ObjectKind::Secret, ns, &s.secret_name, optional)?;
        key_payload(ObjectKind::Secret, &obj, &s.items, s.default_mode, optional, &mut out)?;
    } else if let Some(d) = &v.downward_api {
        aggregate(downward_payload(pod, &d.items, d.default_mode, src, &mut out))?;
    } else if let Some(p) = &v.projected {
        let mut errs = Vec::new();
        for s in &p.sources {
            let mut part = Payload::new();
            let r = if let Some(c) = &s.config_map {
                let optional = c.optional.unwrap_or(false);
                object(src, ObjectKind::ConfigMap, ns, &c.name, optional)
                    .and_then(|o| key_payload(ObjectKind::ConfigMap, &o, &c.items, p.default_mode, optional, &mut part))
            } else if let Some(c) = &s.secret {
                let optional = c.optional.unwrap_or(false);
                object(src, ObjectKind::Secret, ns, &c.name, optional)
                    .and_then(|o| key_payload(ObjectKind::Secret, &o, &c.items, p.default_mode, optional, &mut part))
            } else if let Some(d) = &s.downward_api {
                aggregate(downward_payload(pod, &d.items, p.default_mode, src, &mut part))
            } else if let Some(t) = &s.service_account_token {
                let need = token_need(pod, t);
                match src.objects.get_token(ns, &pod.metadata.uid, &need) {
                    Ok(Some(tok)) => {
                        let f = FileProjection { data: tok.token.into_bytes(), mode: mode(None, p.default_mode) };
                        part.insert(t.path.clone(), f);
                        Ok(())
                    }
                    Ok(None) => Err(format!(
                        "failed to fetch token: no token for serviceaccount \"{ns}/{}\" in the local object store yet",
                        need.service_account
                    )),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                Ok(())
            };
            match r {
                Ok(()) => out.extend(part),
                Err(e) => errs.push(e),
            }
        }
        aggregate(errs)?;
    }
    Ok(out)
}

/// A fingerprint of everything `v`'s files are made of: its spec, the
/// versions of the stored objects and tokens it reads, and the pod fields
/// a downward API item may show. Computed from `stat`s, without reading
/// the objects, so checking a running pod for updates is cheap.
pub fn stamp(pod: &Pod, v: &Volume, src: &Sources) -> String {
    let ns = pod.metadata.namespace.as_str();
    let mut parts = vec![serde_json::to_string(v).unwrap_or_default()];
    let obj = |kind, name: &str| src.objects.version(kind, ns, name);
    if let Some(c) = &v.config_map {
        parts.push(obj(ObjectKind::ConfigMap, &c.name));
    }
    if let Some(s) = &v.secret {
        parts.push(obj(ObjectKind::Secret, &s.secret_name));
    }
    let mut downward = v.downward_api.is_some();
    for s in v.projected.iter().flat_map(|p| &p.sources) {
        if let Some(c) = &s.config_map {
            parts.push(obj(ObjectKind::ConfigMap, &c.name));
        }
        if let Some(c) = &s.secret {
            parts.push(obj(ObjectKind::Secret, &c.name));
        }
        if let Some(t) = &s.service_account_token {
            parts.push(src.objects.token_version(ns, &pod.metadata.uid, &token_need(pod, t)));
        }
        downward |= s.downward_api.is_some();
    }
    if downward {
        let m = &pod.metadata;
        parts.push(serde_json::to_string(&(&m.name, &m.namespace, &m.uid, &m.labels, &m.annotations)).unwrap_or_default());
        for c in pod.spec.containers.iter().chain(&pod.spec.init_containers) {
            parts.push(serde_json::to_string(&(&c.name, &c.resources)).unwrap_or_default());
        }
        parts.push(format!("{:?}", src.node));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, parts.join("\n").as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
