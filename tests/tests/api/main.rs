//! Black-box tests: each spawns the real `palisade` binary against a real Postgres.

mod access;
mod alerting;
mod cli;
mod errors;
mod hostile;
mod incidents;
mod ingest;
mod isolation;
mod k8s_audit;
mod k8s_falco;
mod k8s_generator;
mod metrics;
mod paging;
mod resilience;
mod sdk;
mod search;
mod ui;
