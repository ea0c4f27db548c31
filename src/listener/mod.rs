//! Where agents (and operators) connect: the accept loop and the thread-per-core workers,
//! the unix socket, the inbound guard, the admin listener and configuration reload.

pub mod admin;
pub mod reload;
pub mod server;
pub mod unix;
pub mod watchdog;
pub mod workers;
