//! systemd integration for `Type=notify` units: READY=1 once the listeners are bound
//! and the routes resolved, RELOADING=1/READY=1 around a reload, STOPPING=1 on drain,
//! and watchdog pings when the unit sets `WatchdogSec=`. Outside systemd (no
//! NOTIFY_SOCKET) every call does nothing.

use sd_notify::NotifyState;

pub fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("systemd notification failed: {e}");
    }
}

/// Pings the watchdog at half the interval systemd asked for, from the runtime itself,
/// so that a wedged runtime stops the pings and systemd restarts the service.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}
