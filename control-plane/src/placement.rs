//! Where new partition replicas go: spread over live data nodes, each partition starting on
//! the next node so leadership (the first replica is the preferred leader) is balanced too.

use chronik_shared::error::{ChronikError, ErrorCode};

/// Replica lists for partitions `first..first+count` over `nodes` (sorted ids).
pub fn place(nodes: &[u64], first: u32, count: u32, replication_factor: u32) -> Result<Vec<Vec<u64>>, ChronikError> {
    if replication_factor == 0 {
        return Err(ChronikError::new(ErrorCode::InvalidReplicationFactor, "replication factor must be at least 1"));
    }
    if nodes.len() < replication_factor as usize {
        return Err(ChronikError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is larger than the {} live data node(s); add data nodes or lower the replication factor",
                nodes.len()
            ),
        ));
    }
    Ok((first..first + count)
        .map(|p| (0..replication_factor as usize).map(|r| nodes[(p as usize + r) % nodes.len()]).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_leaders_and_replicas() {
        let a = place(&[4, 5, 6], 0, 6, 3).unwrap();
        assert_eq!(a[0], vec![4, 5, 6]);
        assert_eq!(a[1], vec![5, 6, 4]);
        let leaders: Vec<u64> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![4, 5, 6, 4, 5, 6]);
    }

    #[test]
    fn refuses_more_replicas_than_nodes() {
        let e = place(&[4], 0, 1, 3).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidReplicationFactor);
    }
}
