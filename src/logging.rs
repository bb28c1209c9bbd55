//! picolet's own log output (not container logs): env_logger on stderr, with klog-like
//! verbosity and a journald-friendly form.
//!
//! `-v` picks picolet's level as klog does: 0 and 1 show info, 2 and 3 debug, 4 and up trace.
//! Other crates stay at info so `-v 4` does not drown in reactor chatter. `RUST_LOG`, when set,
//! replaces all of this. Under systemd (`JOURNAL_STREAM` set) lines are `<N>message` with the
//! syslog priority and no timestamp, since the journal adds its own; otherwise
//! `2026-11-28T00:00:00.000Z INFO picolet::pod: message`.

use std::io::Write;
use std::time::SystemTime;

use log::{Level, LevelFilter};

use crate::api::time::rfc3339_nano;

/// Installs the global logger. Calling it twice keeps the first one.
pub fn init_logging(verbosity: u8) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            b.parse_filters(&spec);
        }
        _ => {
            b.filter_level(LevelFilter::Info);
            b.filter_module("picolet", level_for(verbosity));
        }
    }
    b.format(move |buf, rec| {
        let line = format_record(
            rec.level(),
            rec.target(),
            &rec.args().to_string(),
            journald,
            SystemTime::now(),
        );
        writeln!(buf, "{line}")
    });
    let _ = b.try_init();
}

/// picolet's level for a `-v` value.
pub fn level_for(verbosity: u8) -> LevelFilter {
    match verbosity {
        0 | 1 => LevelFilter::Info,
        2 | 3 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// One log line, without the newline.
pub fn format_record(
    level: Level,
    target: &str,
    message: &str,
    journald: bool,
    now: SystemTime,
) -> String {
    if journald {
        let prio = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        // journald takes each line as its own entry: every line needs the priority.
        let lines: Vec<String> = message.split('\n').map(|l| format!("<{prio}>{l}")).collect();
        return lines.join("\n");
    }
    let ts = rfc3339_nano(now); // 2026-11-28T00:00:00.123456789Z → milliseconds
    format!("{}Z {level} {target}: {message}", &ts[..23])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_plain_and_journald() {
        let t = UNIX_EPOCH + Duration::new(1_795_824_000, 987_654_321); // 2026-11-28
        assert_eq!(
            format_record(Level::Info, "picolet::pod", "started", false, t),
            "2026-11-28T00:00:00.987Z INFO picolet::pod: started"
        );
        assert_eq!(
            format_record(Level::Warn, "picolet", "x", false, UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z WARN picolet: x"
        );
        assert_eq!(format_record(Level::Error, "a", "boom", true, t), "<3>boom");
        assert_eq!(format_record(Level::Warn, "a", "hm", true, t), "<4>hm");
        assert_eq!(format_record(Level::Info, "a", "two\nlines", true, t), "<6>two\n<6>lines");
        assert_eq!(format_record(Level::Debug, "a", "d", true, t), "<7>d");
        assert_eq!(format_record(Level::Trace, "a", "t", true, t), "<7>t");
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(level_for(0), LevelFilter::Info);
        assert_eq!(level_for(1), LevelFilter::Info);
        assert_eq!(level_for(2), LevelFilter::Debug);
        assert_eq!(level_for(4), LevelFilter::Trace);
        assert_eq!(level_for(255), LevelFilter::Trace);
    }
}
