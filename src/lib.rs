//! workshop-cli: a hands-on caching workshop runner.
//!
//! Data flows one way: `config` → services (`db`, `cache`) → `patterns` →
//! `measure` → `report`. `exercises` wires them together per subcommand.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod exercises;
pub mod fixtures;
pub mod grade;
pub mod measure;
pub mod patterns;
pub mod protocol;
pub mod report;
pub mod rng;
pub mod serve;
pub mod workshop;
