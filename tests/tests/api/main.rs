//! Black-box tests: each spawns the real `palisade` binary against a real Postgres.

mod cli;
mod errors;
mod ingest;
mod resilience;
mod sdk;
mod search;
