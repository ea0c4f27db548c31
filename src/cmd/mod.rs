//! The command line and each subcommand: `run` (`app`), `check`, `doctor`, `demo`,
//! `healthcheck`. The top layer: it may use every module below; none uses it.

pub mod app;
pub mod check;
pub mod cli;
pub mod demo;
pub mod doctor;
pub mod healthcheck;
