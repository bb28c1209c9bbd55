//! Node-pressure eviction, the pure part: hard thresholds with upstream's
//! signal names (`memory.available<100Mi`, `nodefs.available<10%`, ...),
//! which of them the node's readings meet, the MemoryPressure/DiskPressure
//! conditions with their transition period, the ranking of pods to evict
//! and the eviction message (rank.rs). Readings come in as plain numbers
//! (read.rs gathers them from /proc, statvfs and the stats collector), the
//! clock is a parameter, so everything here is tested without root.
//!
//! Flow per monitoring interval (upstream's `synchronize`): observe →
//! thresholds met → conditions → for the starved signal, reclaim node-level
//! resources first (dead containers and unused images, disk signals only),
//! observe again, then evict at most one pod (the driver is in
//! `pod::worker::evict`).
//!
//! Not here: soft thresholds and grace periods, `evictionMinimumReclaim`,
//! `pid.available`, allocatable-memory signals, per-pod ephemeral-storage
//! limits, admission of new pods under pressure.

pub mod rank;
pub mod read;

use std::fmt;
use std::time::{Duration, Instant};

/// Upstream's housekeeping interval: one pass (and at most one eviction) this often.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(10);
/// `evictionPressureTransitionPeriod` default.
pub const PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// Priority at and above which a pod is critical (upstream's system-critical floor).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The status reason of an evicted pod.
pub const REASON: &str = "Evicted";

/// An eviction signal, named as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
}

impl Signal {
    pub const ALL: [Signal; 5] =
        [Signal::MemoryAvailable, Signal::NodeFsAvailable, Signal::NodeFsInodesFree, Signal::ImageFsAvailable, Signal::ImageFsInodesFree];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The resource a signal starves, as eviction messages name it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
        }
    }

    /// Memory pressure, else disk pressure.
    pub fn is_memory(self) -> bool {
        self == Signal::MemoryAvailable
    }

    /// Counted in inodes rather than bytes.
    pub fn is_inodes(self) -> bool {
        matches!(self, Signal::NodeFsInodesFree | Signal::ImageFsInodesFree)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's value: an absolute quantity (bytes or inodes) or a
/// fraction of capacity. The fraction is an f32 as upstream's, so the
/// computed quantities (and messages) come out the same.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Quantity(i64),
    Percentage(f32),
}

/// `signal < value`: the signal's available amount below value is met.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
}

impl Threshold {
    /// The threshold in units of the signal for a resource of `capacity`.
    pub fn quantity(&self, capacity: i64) -> i64 {
        match self.value {
            Value::Quantity(q) => q,
            Value::Percentage(p) => (capacity as f64 * f64::from(p)) as i64,
        }
    }
}

/// A bad `--eviction-hard` entry or `evictionHard` key/value.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdError {
    Syntax { entry: String },
    UnknownSignal { signal: String },
    BadValue { signal: String, value: String, reason: &'static str },
}

impl fmt::Display for ThresholdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdError::Syntax { entry } => write!(f, "{entry:?} is not signal<quantity or signal<percent%"),
            ThresholdError::UnknownSignal { signal } => write!(
                f,
                "unknown eviction signal {signal:?} (known: {})",
                Signal::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
            ),
            ThresholdError::BadValue { signal, value, reason } => write!(f, "{signal}: {value:?} {reason}"),
        }
    }
}

/// Upstream signals picolet does not evaluate: accepted (configs written
/// for a full kubelet keep working) and ignored with a warning.
const IGNORED_SIGNALS: [&str; 4] = ["pid.available", "allocatableMemory.available", "containerfs.available", "containerfs.inodesFree"];

/// The hard thresholds in force, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

impl Default for Thresholds {
    /// Upstream's defaults (Linux).
    fn default() -> Thresholds {
        Thresholds(vec![
            Threshold { signal: Signal::MemoryAvailable, value: Value::Quantity(100 << 20) },
            Threshold { signal: Signal::NodeFsAvailable, value: Value::Percentage(0.10) },
            Threshold { signal: Signal::NodeFsInodesFree, value: Value::Percentage(0.05) },
            Threshold { signal: Signal::ImageFsAvailable, value: Value::Percentage(0.15) },
        ])
    }
}

impl Thresholds {
    /// `--eviction-hard`: `signal<value` entries separated by commas. As
    /// upstream, a given list replaces the defaults; an empty one turns
    /// eviction off.
    pub fn parse_flag(v: &str) -> Result<Thresholds, ThresholdError> {
        let mut pairs = Vec::new();
        for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (s, q) = entry.split_once('<').ok_or_else(|| ThresholdError::Syntax { entry: entry.to_string() })?;
            pairs.push((s.trim().to_string(), q.trim().to_string()));
        }
        Thresholds::from_pairs(&pairs)
    }

    /// KubeletConfiguration `evictionHard` (signal → value).
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Thresholds, ThresholdError> {
        let mut out: Vec<Threshold> = Vec::new();
        for (s, v) in pairs {
            if IGNORED_SIGNALS.contains(&s.as_str()) {
                log::warn!("eviction signal {s} is not evaluated by picolet; ignoring {s}<{v}");
                continue;
            }
            let signal = Signal::parse(s).ok_or_else(|| ThresholdError::UnknownSignal { signal: s.clone() })?;
            let bad = |reason| ThresholdError::BadValue { signal: s.clone(), value: v.clone(), reason };
            let value = if let Some(p) = v.strip_suffix('%') {
                // As upstream: 0% and 100% mean "no threshold".
                if v == "0%" || v == "100%" {
                    continue;
                }
                let p: f32 = p.trim().parse().map_err(|_| bad("is not a percentage"))?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(bad("must be between 0% and 100%"));
                }
                Value::Percentage(p / 100.0)
            } else {
                match crate::api::quantity::parse_int(v) {
                    Some(q) if q > 0 => Value::Quantity(q),
                    Some(_) => return Err(bad("must be positive")),
                    None => return Err(bad("is not a quantity (like 100Mi) or a percentage (like 10%)")),
                }
            };
            out.retain(|t| t.signal != signal);
            out.push(Threshold { signal, value });
        }
        Ok(Thresholds(out))
    }

    pub fn get(&self, s: Signal) -> Option<&Threshold> {
        self.0.iter().find(|t| t.signal == s)
    }

    /// (signal, value) as KubeletConfiguration's `evictionHard` writes them.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let show = |t: &Threshold| match t.value {
            Value::Quantity(q) => format_binary(q),
            Value::Percentage(p) => format!("{}%", (f64::from(p) * 1e4).round() / 100.0),
        };
        self.0.iter().map(|t| (t.signal.name(), show(t))).collect()
    }

    /// `signal<value,...` as `--eviction-hard` takes it (for logs).
    pub fn flag_value(&self) -> String {
        self.entries().iter().map(|(s, v)| format!("{s}<{v}")).collect::<Vec<_>>().join(",")
    }
}

/// The hard memory threshold in bytes for a node with `capacity` bytes of
/// memory (0 without one): node allocatable memory subtracts it.
#[allow(dead_code)] // for node allocatable (kubepods memory.max, node status)
pub fn memory_threshold_bytes(t: &Thresholds, capacity: i64) -> i64 {
    t.get(Signal::MemoryAvailable).map_or(0, |t| t.quantity(capacity).max(0))
}

/// One signal's reading: what is available of how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub available: i64,
    pub capacity: i64,
}

/// A filesystem's figures (from statvfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsReading {
    pub available_bytes: i64,
    pub capacity_bytes: i64,
    pub inodes_free: i64,
    pub inodes: i64,
}

/// What the node looks like now; a part that could not be read is None
/// and its signals are not evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Observations {
    /// (capacity, working set) in bytes.
    pub memory: Option<(i64, i64)>,
    pub nodefs: Option<FsReading>,
    pub imagefs: Option<FsReading>,
}

impl Observations {
    /// The reading of `s`. memory.available is capacity minus working set.
    pub fn get(&self, s: Signal) -> Option<Reading> {
        let fs = |f: Option<FsReading>, inodes: bool| {
            f.map(|f| if inodes { Reading { available: f.inodes_free, capacity: f.inodes } } else { Reading { available: f.available_bytes, capacity: f.capacity_bytes } })
        };
        match s {
            Signal::MemoryAvailable => self.memory.map(|(cap, ws)| Reading { available: cap - ws, capacity: cap }),
            Signal::NodeFsAvailable => fs(self.nodefs, false),
            Signal::NodeFsInodesFree => fs(self.nodefs, true),
            Signal::ImageFsAvailable => fs(self.imagefs, false),
            Signal::ImageFsInodesFree => fs(self.imagefs, true),
        }
    }
}

/// The thresholds whose signal reads below them, in the order given.
pub fn thresholds_met(t: &Thresholds, obs: &Observations) -> Vec<Threshold> {
    t.0.iter()
        .filter(|t| obs.get(t.signal).is_some_and(|r| t.quantity(r.capacity) > r.available))
        .copied()
        .collect()
}

/// The threshold to act on: memory before disk (upstream's eviction priority).
pub fn starved(met: &[Threshold]) -> Option<Threshold> {
    met.iter().find(|t| t.signal.is_memory()).or_else(|| met.first()).copied()
}

/// The node conditions other than Ready, as eviction sets them and the
/// node status reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// MemoryPressure and DiskPressure: on while a threshold of their kind is
/// met and for the transition period after it was last met, so a node at
/// the edge does not flap.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    memory_seen: Option<Instant>,
    disk_seen: Option<Instant>,
    period: Duration,
}

impl Conditions {
    pub fn new(period: Duration) -> Conditions {
        Conditions { memory_seen: None, disk_seen: None, period }
    }

    /// Records the thresholds met at `now`; returns the conditions.
    pub fn update(&mut self, met: &[Threshold], now: Instant) -> Pressure {
        if met.iter().any(|t| t.signal.is_memory()) {
            self.memory_seen = Some(now);
        }
        if met.iter().any(|t| !t.signal.is_memory()) {
            self.disk_seen = Some(now);
        }
        let on = |seen: Option<Instant>| seen.is_some_and(|at| at == now || now.duration_since(at) < self.period);
        Pressure { memory: on(self.memory_seen), disk: on(self.disk_seen), pid: false }
    }
}

/// A byte count as a Kubernetes binary quantity prints it: the largest
/// binary suffix that keeps it whole ("100Mi", "1536Mi", "94371841"),
/// and values below 1024 in decimal form ("0", "512", "1k").
pub fn format_binary(v: i64) -> String {
    if v.unsigned_abs() < 1024 {
        return format_decimal(v);
    }
    format_suffixed(v, 1024, &["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
}

/// A count as a Kubernetes decimal quantity prints it ("5k", "12345", "2M").
pub fn format_decimal(v: i64) -> String {
    format_suffixed(v, 1000, &["", "k", "M", "G", "T", "P", "E"])
}

fn format_suffixed(v: i64, base: u64, suffixes: &[&str]) -> String {
    let mut n = v.unsigned_abs();
    let mut i = 0;
    while n != 0 && n % base == 0 && i + 1 < suffixes.len() {
        n /= base;
        i += 1;
    }
    format!("{}{n}{}", if v < 0 { "-" } else { "" }, suffixes[i])
}

#[cfg(test)]
mod tests;
