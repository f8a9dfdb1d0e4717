//! Process limits a node needs raised before it opens its logs.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard one and returns the limit in force (None:
/// unlimited or unreadable). Every partition replica keeps its log's segments open (one, while
/// it holds less than `wal.segment_bytes`), so the usual soft limit of 1,024 would stop a data
/// node near 1,000 replicas
/// with "Too many open files" while the hard limit (often 500,000+) allows far more.
pub fn raise_open_files() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let current = current?;
    match maximum {
        Some(max) if max > current => {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) }) {
                Ok(()) => Some(max),
                Err(_) => Some(current),
            }
        }
        _ => Some(current),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let limit = super::raise_open_files().expect("a finite limit");
        let after = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(after.current, Some(limit));
        if let Some(max) = after.maximum {
            assert_eq!(limit, max);
        }
    }
}
