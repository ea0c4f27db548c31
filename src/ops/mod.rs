//! What operators see: metrics, the audit trail, the access log, log output, the
//! systemd notifications, and OpenTelemetry traces.

pub mod access_log;
pub mod audit;
pub mod logging;
pub mod metrics;
pub mod systemd;
pub mod telemetry;
