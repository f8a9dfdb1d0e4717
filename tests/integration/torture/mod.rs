//! A Jepsen-style fault campaign against real processes (`t90_torture`): a workload of real
//! Kafka clients records a history, a seeded nemesis injects faults, and a checker proves
//! from the history that nothing acknowledged was lost, duplicated or misread.

pub mod checker;
pub mod history;
pub mod nemesis;
pub mod workload;
