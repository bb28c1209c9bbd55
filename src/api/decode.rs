//! Decoding manifests (JSON, or YAML with one or many documents) into [`Pod`]s.
//!
//! Each document is decoded on its own, so one bad document does not hide the
//! others; every error names the document and, where known, the field path.
//! A `kind: List` (or `PodList`) is expanded into its items.
//!
//! YAML is parsed by yaml-rust2 (YAML 1.2 core schema) and bridged into a
//! `serde_json::Value`, then deserialized with the field path tracked.
//!
//! Booleans: only `true`/`false` are booleans. Upstream's sigs.k8s.io/yaml
//! follows YAML 1.1 and reads unquoted `yes/no/on/off` as booleans; picolet
//! keeps them as strings, so `hostNetwork: yes` is a type error naming the
//! field rather than a silent guess, and `value: yes` in an env var stays the
//! string "yes". As in upstream's Go decoding, `field: null` (or `field:`)
//! leaves the field unset. Defaults and validation are not applied here.
//!
//! Integers: a plain `0644` is octal (420), as YAML 1.1 and upstream read it,
//! so `defaultMode: 0400` means what the Kubernetes docs say; YAML 1.2 would
//! read decimal 400 (mode 0620). `0o644` works too.

use crate::api::types::Pod;
use serde_json::{Map as JsonMap, Number, Value};
use std::fmt;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::{Yaml, YamlLoader};

/// Why one document of a manifest could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// 0-based index of the document in the file.
    pub document: usize,
    /// Field path such as `spec.containers[0].ports[1].containerPort`, or "".
    pub field: String,
    pub reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "document {}: {}", self.document, self.reason)
        } else {
            write!(f, "document {}: {}: {}", self.document, self.field, self.reason)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes every Pod in `text`, in order. Empty and null documents are skipped.
#[cfg(test)]
pub fn pods_from_str(text: &str) -> Vec<Result<Pod, DecodeError>> {
    pods_from_str_indexed(text).into_iter().map(|(_, r)| r).collect()
}

/// Like [`pods_from_str`], with each result's 0-based document index (the
/// items of a List share their document's index).
pub fn pods_from_str_indexed(text: &str) -> Vec<(usize, Result<Pod, DecodeError>)> {
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        // A stream of JSON objects is accepted too, though one is the norm.
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let mut document = 0;
        loop {
            match stream.next() {
                None => break,
                Some(Ok(v)) => pods_from_value(v, document, &mut out),
                Some(Err(e)) => {
                    let reason = format!("line {} column {}: {}", e.line(), e.column(), strip_position(&e));
                    out.push((document, Err(DecodeError { document, field: String::new(), reason })));
                    break; // the stream cannot be resynchronised after a syntax error
                }
            }
            document += 1;
        }
        return out;
    }
    for (document, (first_line, chunk)) in yaml_documents(text).into_iter().enumerate() {
        // yaml-rust2 stops at a NUL as if the input ended, silently dropping the rest.
        if let Some(at) = chunk.find('\0') {
            let line = first_line + 1 + chunk[..at].matches('\n').count();
            let reason = format!("line {line}: NUL byte in YAML text");
            out.push((document, Err(DecodeError { document, field: String::new(), reason })));
            continue;
        }
        match YamlLoader::load_from_str(chunk).map(|docs| with_octal_ints(chunk).unwrap_or(docs)) {
            Err(e) => {
                let m = e.marker();
                let reason = format!("line {} column {}: {}", m.line() + first_line, m.col() + 1, e.info());
                out.push((document, Err(DecodeError { document, field: String::new(), reason })));
            }
            Ok(docs) => {
                for doc in docs {
                    match yaml_to_json(doc) {
                        Ok(v) => pods_from_value(v, document, &mut out),
                        Err(reason) => out.push((document, Err(DecodeError { document, field: String::new(), reason }))),
                    }
                }
            }
        }
    }
    out
}

/// serde_json appends " at line L column C" to its messages; we print our own.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Splits a YAML stream at `---` marker lines so each document is parsed (and
/// can fail) alone. Returns each chunk with the 0-based line it starts at.
/// Text before the first marker that holds only comments, blank lines or
/// directives is not a document.
fn yaml_documents(text: &str) -> Vec<(usize, &str)> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 0usize, 0usize);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let l = line.trim_end_matches(['\n', '\r']);
        let is_marker = l == "---" || l.starts_with("--- ") || l.starts_with("---\t");
        if is_marker && offset > start {
            chunks.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i;
        } else if is_marker {
            start_line = i;
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    if chunks.len() > 1 {
        let preamble = chunks[0].1.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#') || l.starts_with('%')
        });
        if preamble {
            chunks.remove(0);
        }
    }
    chunks
}

/// Hands the parser's events to a YamlLoader, turning plain scalars written
/// as YAML 1.1 octal (`0644`) into YAML 1.2 octal (`0o644`) on the way.
#[derive(Default)]
struct Yaml11Octal {
    loader: YamlLoader,
    rewrote: bool,
}

impl MarkedEventReceiver for Yaml11Octal {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let ev = match ev {
            Event::Scalar(v, TScalarStyle::Plain, anchor, None) if is_yaml11_octal(&v) => {
                self.rewrote = true;
                Event::Scalar(format!("0o{}", &v[1..]), TScalarStyle::Plain, anchor, None)
            }
            ev => ev,
        };
        self.loader.on_event(ev, mark);
    }
}

fn is_yaml11_octal(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// The documents of `chunk` (already loaded once without error) with YAML
/// 1.1 octal integers, or None when it has none.
fn with_octal_ints(chunk: &str) -> Option<Vec<Yaml>> {
    let mut rx = Yaml11Octal::default();
    Parser::new_from_str(chunk).load(&mut rx, true).ok()?;
    rx.rewrote.then(|| rx.loader.documents().to_vec())
}

/// Bridges a parsed YAML node into JSON. yaml-rust2 has already resolved aliases.
/// The first document of a YAML (or JSON) text as a JSON value, nulls dropped:
/// for files that are not pods, such as a kubeconfig.
pub fn yaml_value(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    let mut v = match docs.into_iter().next() {
        Some(y) => yaml_to_json(y)?,
        None => Value::Null,
    };
    drop_nulls(&mut v);
    Ok(v)
}

/// One Pod from an API object (a list item or a watch event's object).
pub fn pod_from_json(mut v: Value) -> Result<Pod, DecodeError> {
    drop_nulls(&mut v);
    let unknown = unknown_volume_types(&v);
    let mut pod = pod_from_value(v, 0, "")?;
    for (vol, kind) in pod.spec.volumes.iter_mut().zip(unknown) {
        vol.unsupported = kind;
    }
    Ok(pod)
}

/// Per volume, the first key that is no volume type picolet knows (so an
/// `nfs:` volume is reported as such, not as "no volume type").
fn unknown_volume_types(pod: &Value) -> Vec<Option<String>> {
    const KNOWN: [&str; 8] = ["name", "emptyDir", "hostPath", "configMap", "secret", "downwardAPI", "projected", "persistentVolumeClaim"];
    let vols = pod["spec"]["volumes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    vols.iter().map(|v| v.as_object().and_then(|o| o.keys().find(|k| !KNOWN.contains(&k.as_str())).cloned())).collect()
}

fn yaml_to_json(y: Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        // Non-finite floats have no JSON form; keep the text so the target
        // field's type reports the problem.
        Yaml::Real(s) => match s.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(s),
        },
        Yaml::String(s) => Value::String(s),
        Yaml::Array(a) => Value::Array(a.into_iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = JsonMap::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Null => "null".to_string(),
                    _ => return Err("mapping keys must be scalars".to_string()),
                };
                m.insert(key, yaml_to_json(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("unresolvable YAML value (unknown alias or bad tag)".to_string()),
    })
}

/// Drops `key: null` members, recursively: as with upstream's Go decoding, a
/// null leaves the field at its zero value, so `image:` decodes to "" (and is
/// then reported by validation) rather than failing as a type error.
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Turns one document's value into pods (one, none for null, or a List's items).
fn pods_from_value(mut v: Value, document: usize, out: &mut Vec<(usize, Result<Pod, DecodeError>)>) {
    if v.is_null() {
        return;
    }
    drop_nulls(&mut v);
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || kind == "PodList" {
        let items = match v.get("items") {
            None | Some(Value::Null) => return,
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                let reason = "must be a list of Pods".to_string();
                out.push((document, Err(DecodeError { document, field: "items".to_string(), reason })));
                return;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            out.push((document, pod_from_value(item, document, &format!("items[{i}]"))));
        }
        return;
    }
    out.push((document, pod_from_value(v, document, "")));
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

fn pod_from_value(v: Value, document: usize, prefix: &str) -> Result<Pod, DecodeError> {
    let err = |field: String, reason: String| {
        let field = match (prefix.is_empty(), field.is_empty()) {
            (true, _) => field,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{field}"),
        };
        DecodeError { document, field, reason }
    };
    // serde would also accept a sequence for a struct, positionally; refuse it.
    let Value::Object(m) = &v else {
        return Err(err(String::new(), format!("expected a Pod object (a mapping), found {}", json_type(&v))));
    };
    {
        match m.get("kind") {
            None | Some(Value::Null) => {}
            Some(Value::String(k)) if k == "Pod" => {}
            Some(Value::String(k)) => {
                return Err(err(String::new(), format!("unsupported kind \"{k}\": only v1 Pod (or a List of them) is accepted")))
            }
            Some(_) => return Err(err("kind".to_string(), "must be a string".to_string())),
        }
        match m.get("apiVersion") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) if a == "v1" => {}
            Some(Value::String(a)) => {
                return Err(err("apiVersion".to_string(), format!("unsupported apiVersion \"{a}\" for kind Pod: expected \"v1\"")))
            }
            Some(_) => return Err(err("apiVersion".to_string(), "must be a string".to_string())),
        }
    }
    serde_path_to_error::deserialize::<_, Pod>(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        err(field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Pod> {
        pods_from_str(text).into_iter().map(|r| r.expect("decodes")).collect()
    }

    fn errs(text: &str) -> Vec<DecodeError> {
        pods_from_str(text).into_iter().filter_map(Result::err).collect()
    }

    #[test]
    fn single_yaml_pod() {
        let pods = ok("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: nginx\n    ports:\n    - containerPort: 80\n");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name, "web");
        assert_eq!(pods[0].spec.containers[0].ports[0].container_port, 80);
    }

    #[test]
    fn multi_document_yaml_skips_empty_and_null() {
        let text = "# leading comment\n---\nmetadata: {name: a}\n---\n---\n~\n---\nmetadata:\n  name: b\n...\n";
        let pods = ok(text);
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn document_index_counts_from_zero_without_preamble() {
        let e = errs("metadata: {name: a}\n---\nkind: Service\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].document, 1);
        let e = errs("---\nkind: Service\n");
        assert_eq!(e[0].document, 0);
    }

    #[test]
    fn json_pod_and_stream() {
        let pods = ok(r#"  {"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"hostNetwork":true}}"#);
        assert_eq!(pods[0].metadata.name, "j");
        assert!(pods[0].spec.host_network);
        assert_eq!(ok(r#"{"metadata":{"name":"a"}} {"metadata":{"name":"b"}}"#).len(), 2);
    }

    #[test]
    fn json_syntax_error_has_line() {
        let e = errs("{\n\"metadata\": {\n  \"name\": }\n}");
        assert_eq!(e.len(), 1);
        assert!(e[0].reason.starts_with("line 3 column"), "{}", e[0]);
    }

    #[test]
    fn list_is_expanded() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: one}\n- kind: Pod\n  metadata: {name: two}\n- kind: ConfigMap\n";
        let r = pods_from_str(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].as_ref().unwrap().metadata.name, "two");
        let e = r[2].as_ref().unwrap_err();
        assert_eq!(e.field, "items[2]");
        assert!(e.reason.contains("ConfigMap"));
    }

    #[test]
    fn bad_yaml_reports_line_and_keeps_other_documents() {
        let text = "metadata: {name: a}\n---\nmetadata:\n  name: b\n   bad: [\n---\nmetadata: {name: c}\n";
        let r = pods_from_str(text);
        assert_eq!(r.len(), 3);
        let e = r[1].as_ref().unwrap_err();
        assert_eq!(e.document, 1);
        assert!(e.reason.starts_with("line 5 ") || e.reason.starts_with("line 4 "), "{e}");
        assert_eq!(r[2].as_ref().unwrap().metadata.name, "c");
    }

    #[test]
    fn type_error_names_field_path() {
        let text = "metadata: {name: a}\n---\n---\nspec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: 80\n    - containerPort: x\n";
        let e = &errs(text)[0];
        assert_eq!(e.document, 2);
        assert_eq!(e.field, "spec.containers[0].ports[1].containerPort");
        assert_eq!(e.to_string(), "document 2: spec.containers[0].ports[1].containerPort: invalid type: string \"x\", expected i32");
    }

    #[test]
    fn non_pod_kind_and_version_rejected() {
        let e = &errs("apiVersion: apps/v1\nkind: Deployment\n")[0];
        assert!(e.reason.contains("\"Deployment\""), "{e}");
        let e = &errs("apiVersion: v2\nkind: Pod\n")[0];
        assert_eq!(e.field, "apiVersion");
        assert!(e.reason.contains("v2"));
    }

    #[test]
    fn yaml_bools_are_strict() {
        let e = &errs("spec:\n  hostNetwork: yes\n")[0];
        assert_eq!(e.field, "spec.hostNetwork");
        let pods = ok("spec:\n  containers:\n  - name: c\n    env:\n    - name: A\n      value: yes\n");
        assert_eq!(pods[0].spec.containers[0].env[0].value.as_deref(), Some("yes"));
    }

    #[test]
    fn modes_written_in_octal() {
        let text = "spec:\n  volumes:\n  - name: s\n    secret: {secretName: x, defaultMode: 0400, items: [{key: k, path: p, mode: 0o755}]}\n  - name: c\n    configMap: {name: y, defaultMode: 420}\n  containers:\n  - name: c\n    env: [{name: A, value: '0644'}]\n";
        let p = &ok(text)[0];
        let s = p.spec.volumes[0].secret.as_ref().unwrap();
        assert_eq!(s.default_mode, Some(0o400));
        assert_eq!(s.items[0].mode, Some(0o755));
        assert_eq!(p.spec.volumes[1].config_map.as_ref().unwrap().default_mode, Some(420));
        assert_eq!(p.spec.containers[0].env[0].value.as_deref(), Some("0644"), "quoted stays a string");
        // 0800 is not octal: a plain decimal, as YAML 1.1 has it
        let p = &ok("spec:\n  terminationGracePeriodSeconds: 0800\n")[0];
        assert_eq!(p.spec.termination_grace_period_seconds, Some(800));
    }

    #[test]
    fn aliases_numbers_and_quantities() {
        let text = "metadata:\n  labels: &l {app: x}\n  annotations: *l\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: c\n    resources:\n      limits: {cpu: 0.5, memory: 64Mi}\n";
        let p = &ok(text)[0];
        assert_eq!(p.metadata.annotations.get("app").map(String::as_str), Some("x"));
        assert_eq!(p.spec.termination_grace_period_seconds, Some(5));
        let limits = &p.spec.containers[0].resources.as_ref().unwrap().limits;
        assert_eq!(limits["cpu"], "0.5");
    }

    #[test]
    fn non_mapping_document_is_an_error() {
        let e = &errs("- a\n- b\n")[0];
        assert_eq!(e.to_string(), "document 0: expected a Pod object (a mapping), found a sequence");
        assert!(errs("just text\n")[0].reason.contains("found a string"));
    }

    #[test]
    fn indexed_results_carry_document() {
        let r = pods_from_str_indexed("---\nmetadata: {name: a}\n---\n---\nkind: List\nitems: [{metadata: {name: b}}, {metadata: {name: c}}]\n");
        let idx: Vec<usize> = r.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [0, 2, 2]);
    }

    #[test]
    fn null_members_decode_as_unset() {
        let p = &ok("metadata:\n  name:\nspec:\n  containers:\n  - name: c\n    image:\n    ports: ~\n")[0];
        assert_eq!(p.metadata.name, "");
        assert_eq!(p.spec.containers[0].image, "");
        assert!(p.spec.containers[0].ports.is_empty());
        let e = &errs("spec:\n  containers:\n  - null\n")[0];
        assert_eq!(e.field, "spec.containers[0]");
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let e = &errs("metadata:\n  name: a\u{0}b\n")[0];
        assert_eq!(e.to_string(), "document 0: line 2: NUL byte in YAML text");
    }

    #[test]
    fn integer_keys_are_stringified() {
        let p = &ok("metadata:\n  labels:\n    1: one\n")[0];
        assert_eq!(p.metadata.labels["1"], "one");
    }
}
