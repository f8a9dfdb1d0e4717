//! CPU profiling for the operations guide's "Performance Profiling" steps: with
//! `CHRONIK_CPU_PROFILE=true` the process samples its own stacks from start-up (pprof-rs,
//! `SIGPROF`, 99 samples per second of CPU time); `POST /admin/profile/stop` ends sampling ([`stop`]) and
//! `GET /admin/profile/flamegraph` serves the SVG ([`flamegraph_svg`]).
//!
//! There is one profiler per process (pprof's is global): started once by `main`, stopped once;
//! the report of a stopped profile is kept until the process ends.

use std::sync::Mutex;

use pprof::{ProfilerGuard, ProfilerGuardBuilder, Report};

/// Samples per second of CPU time. Not a round number, so sampling does not run in lockstep
/// with timers of the process (the usual choice of perf and pprof).
const FREQUENCY_HZ: i32 = 99;

/// The environment variable that turns profiling on.
const ENV_VAR: &str = "CHRONIK_CPU_PROFILE";

/// Shared objects the unwinder must not walk from a signal handler (pprof-rs' advice: unwinding
/// through them can deadlock or crash).
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("CPU profiling is not enabled: set {ENV_VAR}=true and restart the process")]
    NotEnabled,
    #[error("CPU profiling failed: {0}")]
    Failed(String),
}

/// What [`stop`] reports about the profile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProfileSummary {
    /// Whether sampling is still going on (false once stopped).
    pub running: bool,
    /// Stack samples taken.
    pub samples: u64,
    /// How long sampling ran.
    pub duration_ms: u64,
    pub frequency_hz: i32,
}

enum State {
    Off,
    Running(ProfilerGuard<'static>),
    Stopped(Report),
}

static STATE: Mutex<State> = Mutex::new(State::Off);

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a value of [`ENV_VAR`] turns profiling on (`None`: not a recognised value).
fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Starts sampling when CHRONIK_CPU_PROFILE is true/1/yes; logs what it did. Called once by main.
pub fn start_from_env() {
    let Ok(value) = std::env::var(ENV_VAR) else { return };
    match parse_flag(&value) {
        Some(true) => match start(FREQUENCY_HZ) {
            Ok(()) => tracing::info!(
                target: "chronik_server",
                "CPU profiling started at {FREQUENCY_HZ} Hz ({ENV_VAR}={value}); POST /admin/profile/stop ends it, GET /admin/profile/flamegraph returns the SVG"
            ),
            Err(e) => tracing::error!(target: "chronik_server", "{ENV_VAR}={value}: {e}"),
        },
        Some(false) => tracing::debug!(target: "chronik_server", "{ENV_VAR}={value}: CPU profiling off"),
        None => tracing::warn!(
            target: "chronik_server",
            "{ENV_VAR}={value:?} is not understood (use true or false): CPU profiling off"
        ),
    }
}

/// Starts sampling at `frequency_hz`, unless a profile was already started in this process.
fn start(frequency_hz: i32) -> Result<(), ProfileError> {
    let mut st = state();
    if !matches!(*st, State::Off) {
        return Err(ProfileError::Failed("a CPU profile was already started in this process".into()));
    }
    let guard = ProfilerGuardBuilder::default()
        .frequency(frequency_hz)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| ProfileError::Failed(format!("cannot start the sampler: {e}")))?;
    *st = State::Running(guard);
    Ok(())
}

fn report_of(guard: &ProfilerGuard<'static>) -> Result<Report, ProfileError> {
    guard.report().build().map_err(|e| ProfileError::Failed(format!("cannot build the report: {e}")))
}

fn summary(report: &Report, running: bool) -> ProfileSummary {
    ProfileSummary {
        running,
        samples: report.data.values().map(|n| (*n).max(0) as u64).sum(),
        duration_ms: u64::try_from(report.timing.duration.as_millis()).unwrap_or(u64::MAX),
        frequency_hz: report.timing.frequency,
    }
}

/// Stops sampling, keeping the report for flamegraph(); NotEnabled when profiling was never started.
/// Stopping again answers the kept report's summary. Symbolises every sampled stack the first
/// time (CPU-bound for a long profile): call it off the async runtime (`spawn_blocking`).
pub fn stop() -> Result<ProfileSummary, ProfileError> {
    let mut st = state();
    match &*st {
        State::Off => Err(ProfileError::NotEnabled),
        State::Stopped(report) => Ok(summary(report, false)),
        State::Running(guard) => {
            // The report is read from the sampler before the guard's drop stops it.
            let report = report_of(guard)?;
            let out = summary(&report, false);
            let previous = std::mem::replace(&mut *st, State::Stopped(report));
            drop(previous);
            tracing::info!(
                target: "chronik_server",
                "CPU profiling stopped: {} samples over {} ms",
                out.samples,
                out.duration_ms
            );
            Ok(out)
        }
    }
}

/// SVG of the kept report (or of the running profile so far, without stopping it).
/// Symbolises and renders every sampled stack: CPU-bound, so call it off the async runtime
/// (`spawn_blocking`).
pub fn flamegraph_svg() -> Result<Vec<u8>, ProfileError> {
    let st = state();
    let running;
    let report = match &*st {
        State::Off => return Err(ProfileError::NotEnabled),
        State::Stopped(report) => report,
        State::Running(guard) => {
            running = report_of(guard)?;
            &running
        }
    };
    if report.data.is_empty() {
        return Err(ProfileError::Failed(
            "no samples yet: the process has used almost no CPU since profiling began".into(),
        ));
    }
    let mut svg = Vec::new();
    report.flamegraph(&mut svg).map_err(|e| ProfileError::Failed(format!("cannot render the flamegraph: {e}")))?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The profile's summary, without stopping it (`None` when never started).
    fn status() -> Option<ProfileSummary> {
        match &*state() {
            State::Off => None,
            State::Stopped(report) => Some(summary(report, false)),
            State::Running(guard) => report_of(guard).ok().map(|r| summary(&r, true)),
        }
    }

    #[test]
    fn flag_values() {
        for v in ["true", "1", "yes", "TRUE", " on "] {
            assert_eq!(parse_flag(v), Some(true), "{v}");
        }
        for v in ["false", "0", "no", ""] {
            assert_eq!(parse_flag(v), Some(false), "{v}");
        }
        assert_eq!(parse_flag("maybe"), None);
        assert!(ProfileError::NotEnabled.to_string().contains("set CHRONIK_CPU_PROFILE=true and restart"));
    }

    /// Burns CPU on this thread for `ms` milliseconds of wall time.
    fn burn(ms: u64) -> u64 {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        let mut x: u64 = 1;
        while std::time::Instant::now() < until {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        x
    }

    /// The whole life of the one profiler a process has: never started, running, stopped.
    #[test]
    fn start_burn_stop_flamegraph() {
        assert!(matches!(stop(), Err(ProfileError::NotEnabled)));
        assert!(matches!(flamegraph_svg(), Err(ProfileError::NotEnabled)));
        assert!(status().is_none());

        start(FREQUENCY_HZ).expect("sampler starts");
        assert!(start(FREQUENCY_HZ).is_err(), "a second start is refused");
        // Sample until there is something to draw (bounded: 20 s of burning at most).
        for _ in 0..100 {
            burn(200);
            if status().is_some_and(|s| s.samples >= 5) {
                break;
            }
        }
        let running = status().expect("running");
        assert!(running.running);
        assert!(running.samples > 0, "no samples after burning CPU: {running:?}");
        // A flamegraph of the running profile does not stop it.
        let svg = flamegraph_svg().expect("svg while running");
        assert!(!svg.is_empty());
        assert!(status().expect("still there").running);

        let s = stop().expect("stops");
        assert!(!s.running);
        assert!(s.samples > 0, "{s:?}");
        assert_eq!(s.frequency_hz, FREQUENCY_HZ);
        assert!(s.duration_ms > 0, "{s:?}");
        // Stopping again reports the same kept profile.
        assert_eq!(stop().expect("stopped").samples, s.samples);

        let svg = flamegraph_svg().expect("svg of the kept report");
        let text = String::from_utf8_lossy(&svg);
        let head = text.trim_start();
        assert!(head.starts_with("<?xml") || head.starts_with("<svg"), "not an SVG: {}", &head[..head.len().min(80)]);
        assert!(text.contains("</svg>"));
        // The burning function is in the picture.
        assert!(text.contains("burn"), "the hot function is missing from the flamegraph");
        serde_json::to_string(&s).expect("summary serialises");
    }
}
