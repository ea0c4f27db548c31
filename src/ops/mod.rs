//! What operators see: metrics, the audit trail, the access log, log output, and the
//! systemd notifications.

pub mod access_log;
pub mod audit;
pub mod logging;
pub mod metrics;
pub mod systemd;
