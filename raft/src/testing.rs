//! Runs openraft's log-store conformance suite (`openraft::testing::log::Suite`) on
//! [`WalLogStore`], paired with a plane's state machine. Each plane calls [`run_suite`] from
//! its tests, so every log store and entry codec in use passes the same contract.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::StorageError;
use openraft::alias::{LogIdOf, VoteOf};
use openraft::storage::RaftStateMachine;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use serde::{Serialize, de::DeserializeOwned};

use crate::codec::EntryCodec;
use crate::log_store::{PurgeMode, WalLogStore};

pub struct WalStoreBuilder<SM> {
    root: PathBuf,
    next: AtomicU64,
    purge_mode: PurgeMode,
    make_sm: Box<dyn Fn(PathBuf) -> SM + Send + Sync>,
}

impl<C, SM> StoreBuilder<C, WalLogStore<C>, SM, ()> for WalStoreBuilder<SM>
where
    C: EntryCodec,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
    SM: RaftStateMachine<C>,
{
    async fn build(&self) -> Result<((), WalLogStore<C>, SM), StorageError<C>> {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let dir = self.root.join(format!("case-{n}"));
        let log = WalLogStore::<C>::open(&dir.join("log"), 0, Default::default(), self.purge_mode)
            .map_err(|e| StorageError::read(C::err_from_error(&e)))?;
        Ok(((), log, (self.make_sm)(dir.join("sm"))))
    }
}

/// Runs the whole suite with stores under `root`, a fresh directory per case.
pub async fn run_suite<C, SM>(
    root: PathBuf,
    purge_mode: PurgeMode,
    make_sm: impl Fn(PathBuf) -> SM + Send + Sync + 'static,
) -> Result<(), StorageError<C>>
where
    C: EntryCodec<Term = u64, NodeId = u64>,
    C::D: std::fmt::Debug,
    C::R: std::fmt::Debug,
    C::Node: Default,
    VoteOf<C>: Serialize + DeserializeOwned,
    LogIdOf<C>: Serialize + DeserializeOwned,
    SM: RaftStateMachine<C>,
{
    let builder = WalStoreBuilder { root, next: AtomicU64::new(0), purge_mode, make_sm: Box::new(make_sm) };
    Suite::test_all(builder).await
}
