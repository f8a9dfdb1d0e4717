//! ListGroups, DescribeGroups and DeleteGroups. Groups known only from the state machine
//! (e.g. created by commits of assign()ed consumers) are listed as `Empty`.

use std::collections::BTreeMap;

use chronik_proto::control::*;
use chronik_shared::error::{ChronikError, ErrorCode};
use chronik_shared::metrics::CONSUMER_LAG;

use super::coordinator::GroupCoordinator;
use super::offsets::coordinator_error;
use super::state::GroupState;
use crate::types::ControlCommand;

fn internal(e: std::io::Error) -> ChronikError {
    ChronikError::new(ErrorCode::Internal, e.to_string())
}

impl GroupCoordinator {
    pub async fn list_groups(&self, req: ListGroupsRequest) -> Result<ListGroupsResponse, ChronikError> {
        self.activate().await?;
        let mut all: BTreeMap<String, GroupListing> = self
            .sm
            .groups()
            .map_err(internal)?
            .into_iter()
            .map(|g| {
                let listing = GroupListing {
                    group_id: g.group_id.clone(),
                    protocol_type: g.protocol_type,
                    state: GroupState::Empty.name().to_string(),
                };
                (g.group_id, listing)
            })
            .collect();
        for g in self.lock().groups.values() {
            let listing = GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone(),
                state: g.state.name().into(),
            };
            all.insert(g.id.clone(), listing);
        }
        let wanted = |state: &str| req.states.is_empty() || req.states.iter().any(|s| s.eq_ignore_ascii_case(state));
        Ok(ListGroupsResponse { groups: all.into_values().filter(|g| wanted(&g.state)).collect() })
    }

    pub async fn describe_groups(&self, req: DescribeGroupsRequest) -> Result<DescribeGroupsResponse, ChronikError> {
        self.activate().await?;
        let mut groups = Vec::with_capacity(req.group_ids.len());
        for id in req.group_ids {
            let live = {
                let inner = self.lock();
                inner.groups.get(&id).map(|g| GroupDescription {
                    group_id: id.clone(),
                    error: ErrorCode::None.id(),
                    state: g.state.name().into(),
                    protocol_type: g.protocol_type.clone(),
                    protocol: g.protocol.clone().unwrap_or_default(),
                    members: g
                        .members
                        .values()
                        .map(|m| GroupMember {
                            member_id: m.rec.member_id.clone(),
                            group_instance_id: m.rec.group_instance_id.clone(),
                            metadata: m
                                .rec
                                .protocols
                                .iter()
                                .find(|(n, _)| Some(n) == g.protocol.as_ref())
                                .map(|(_, md)| md.clone().into())
                                .unwrap_or_default(),
                            assignment: m.rec.assignment.clone().into(),
                            client_id: m.rec.client_id.clone(),
                            client_host: m.rec.client_host.clone(),
                        })
                        .collect(),
                })
            };
            let d = match live {
                Some(d) => d,
                None => match self.sm.group(&id).map_err(internal)? {
                    Some(g) => GroupDescription {
                        group_id: id,
                        error: ErrorCode::None.id(),
                        state: GroupState::Empty.name().into(),
                        protocol_type: g.protocol_type,
                        ..Default::default()
                    },
                    None => GroupDescription {
                        group_id: id,
                        error: ErrorCode::GroupIdNotFound.id(),
                        state: GroupState::Dead.name().into(),
                        ..Default::default()
                    },
                },
            };
            groups.push(d);
        }
        Ok(DescribeGroupsResponse { groups })
    }

    pub async fn delete_groups(&self, req: DeleteGroupsRequest) -> Result<DeleteGroupsResponse, ChronikError> {
        self.activate().await?;
        let mut results = Vec::with_capacity(req.group_ids.len());
        for id in req.group_ids {
            let non_empty = self.lock().groups.get(&id).is_some_and(|g| !g.members.is_empty());
            let code = if non_empty {
                ErrorCode::NonEmptyGroup
            } else {
                match self.writer.write(ControlCommand::DeleteGroup { group_id: id.clone() }).await {
                    Ok(_) => {
                        let mut inner = self.lock();
                        // A member may have joined while the delete was in flight; it keeps
                        // its (now fresh) group.
                        if inner.groups.get(&id).is_some_and(|g| g.members.is_empty()) {
                            inner.groups.remove(&id);
                        }
                        drop(inner);
                        self.forget_lag(&id);
                        ErrorCode::None
                    }
                    Err(e) => coordinator_error(e.code),
                }
            };
            results.push(GroupResult { group_id: id, error: code.id() });
        }
        Ok(DeleteGroupsResponse { results })
    }

    fn forget_lag(&self, group: &str) {
        let Ok(all) = self.sm.all_offsets() else { return };
        // The group's offsets are gone from the state machine; drop the gauge series by
        // rebuilding the gauge from what remains.
        CONSUMER_LAG.reset();
        self.update_lag(&all);
        tracing::info!(target: "chronik_cluster", "Deleted group {group}");
    }
}
