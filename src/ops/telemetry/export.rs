//! Export in the background: finished spans go through a bounded queue to one export
//! thread, which sends them in batches to the collector on a runtime of its own. A slow
//! or absent collector therefore never delays a request: when the queue is full a span
//! is dropped and counted (`mcp_vpce_proxy_trace_spans_dropped_total{reason="queue_full"}`),
//! and a batch the collector did not take is counted too (`reason="export_failed"`). Drops
//! and failures are logged at most once a minute, never per span.
//!
//! Modelled on the SDK's batch span processor (which keeps its drop count to itself):
//! spans wait in a bounded channel the thread drains without being woken per span; the
//! producer signals the thread only when a full batch is waiting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;

use crate::ops::metrics::{metrics, SpanDropReason};

/// How often a problem with export may be logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

enum Control {
    /// A full batch is waiting.
    ExportNow,
    /// Export everything queued, then answer.
    Flush(SyncSender<()>),
    /// Export everything queued, answer, and stop.
    Shutdown(SyncSender<()>),
}

/// The processor the tracer provider calls when a span ends.
#[derive(Debug)]
pub struct QueueProcessor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    spans: SyncSender<SpanData>,
    control: SyncSender<Control>,
    queued: AtomicUsize,
    signalled: AtomicBool,
    stopped: AtomicBool,
    max_batch: usize,
    dropped_queue_full: Counter,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::ExportNow => "ExportNow",
            Control::Flush(_) => "Flush",
            Control::Shutdown(_) => "Shutdown",
        })
    }
}

/// What the export thread needs besides the queue.
pub struct Exporter<E> {
    pub exporter: E,
    /// The collector's URL, for log lines.
    pub url: String,
    pub max_batch: usize,
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
    /// Runs first on the thread's runtime: sets the exporter's resource (reading the
    /// ECS task metadata when there is some to read).
    pub prepare: Prepare<E>,
}

/// Work the export thread does first, on its own runtime.
pub type Prepare<E> = Box<dyn FnOnce(&mut E, &tokio::runtime::Runtime) + Send>;

/// Starts the export thread; returns the processor to give the tracer provider.
pub fn start<E: SpanExporter + 'static>(
    queue: usize,
    exporter: Exporter<E>,
) -> Result<QueueProcessor, String> {
    let (spans, span_rx) = sync_channel(queue);
    let (control, control_rx) = sync_channel(16);
    let shared = Arc::new(Shared {
        spans,
        control,
        queued: AtomicUsize::new(0),
        signalled: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        max_batch: exporter.max_batch,
        dropped_queue_full: metrics()
            .trace_spans_dropped
            .get_or_create(&SpanDropReason::queue_full.into())
            .clone(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("telemetry: cannot start the export runtime: {e}"))?;
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("otel-export".into())
        .spawn(move || run(runtime, exporter, span_rx, control_rx, thread_shared))
        .map_err(|e| format!("telemetry: cannot start the export thread: {e}"))?;
    Ok(QueueProcessor { shared })
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let shared = &self.shared;
        match shared.spans.try_send(span) {
            Ok(()) => {
                let queued = shared.queued.fetch_add(1, Ordering::Relaxed) + 1;
                if queued >= shared.max_batch && !shared.signalled.swap(true, Ordering::AcqRel) {
                    // A full control channel means the thread has work signalled already.
                    let _ = shared.control.try_send(Control::ExportNow);
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                shared.dropped_queue_full.inc();
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        if self.shared.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.ask(Control::Shutdown, timeout)
    }
}

impl QueueProcessor {
    /// Sends a control message and waits for the thread's answer, at most `timeout`.
    fn ask(&self, make: fn(SyncSender<()>) -> Control, timeout: Duration) -> OTelSdkResult {
        let (done, done_rx) = sync_channel(1);
        let deadline = Instant::now() + timeout;
        let mut message = make(done);
        // The control channel is tiny and drained quickly; retry a full one until the
        // deadline rather than block.
        loop {
            match self.shared.control.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

/// The export thread.
fn run<E: SpanExporter>(
    runtime: tokio::runtime::Runtime,
    mut exporter: Exporter<E>,
    spans: Receiver<SpanData>,
    control: Receiver<Control>,
    shared: Arc<Shared>,
) {
    let prepare = std::mem::replace(&mut exporter.prepare, Box::new(|_, _| {}));
    prepare(&mut exporter.exporter, &runtime);
    let mut state = ExportState::new(&exporter.url);
    let mut next = Instant::now() + exporter.schedule_delay;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        let message = control.recv_timeout(wait);
        match message {
            Ok(Control::ExportNow) => {
                shared.signalled.store(false, Ordering::Release);
                export_queued(&runtime, &exporter, &spans, &shared, &mut state, true);
            }
            Ok(Control::Flush(done)) => {
                export_queued(&runtime, &exporter, &spans, &shared, &mut state, false);
                let _ = done.try_send(());
            }
            Ok(Control::Shutdown(done)) => {
                export_queued(&runtime, &exporter, &spans, &shared, &mut state, false);
                state.report(&shared, true);
                let _ = exporter.exporter.shutdown();
                let _ = done.try_send(());
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                export_queued(&runtime, &exporter, &spans, &shared, &mut state, false);
                next = Instant::now() + exporter.schedule_delay;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
        state.report(&shared, false);
    }
}

/// Sends what is queued in batches of `max_batch` (only full batches when `full_only`).
fn export_queued<E: SpanExporter>(
    runtime: &tokio::runtime::Runtime,
    exporter: &Exporter<E>,
    spans: &Receiver<SpanData>,
    shared: &Shared,
    state: &mut ExportState,
    full_only: bool,
) {
    loop {
        let waiting = shared.queued.load(Ordering::Relaxed);
        if waiting == 0 || (full_only && waiting < exporter.max_batch) {
            return;
        }
        let mut batch = Vec::with_capacity(waiting.min(exporter.max_batch));
        while batch.len() < exporter.max_batch {
            match spans.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return;
        }
        shared.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let count = batch.len() as u64;
        // The exporter bounds its own request; this bounds retries and anything else.
        let guard = exporter.export_timeout + Duration::from_secs(1);
        let result = runtime
            .block_on(async { tokio::time::timeout(guard, exporter.exporter.export(batch)).await });
        match result {
            Ok(Ok(())) => state.exported(count),
            Ok(Err(e)) => state.failed(count, e.to_string()),
            Err(_) => state.failed(count, format!("no answer within {guard:?}")),
        }
    }
}

/// Counts and the throttled log of export problems.
struct ExportState {
    url: String,
    exported: Counter,
    export_failed: Counter,
    /// Counter values at the last report.
    reported_queue_full: u64,
    reported_failed: u64,
    last_error: Option<String>,
    last_report: Option<Instant>,
    failing: bool,
}

impl ExportState {
    fn new(url: &str) -> Self {
        let m = metrics();
        let export_failed = m
            .trace_spans_dropped
            .get_or_create(&SpanDropReason::export_failed.into())
            .clone();
        ExportState {
            url: url.to_string(),
            exported: m.trace_spans_exported.clone(),
            reported_failed: export_failed.get(),
            export_failed,
            reported_queue_full: 0,
            last_error: None,
            last_report: None,
            failing: false,
        }
    }

    fn exported(&mut self, count: u64) {
        self.exported.inc_by(count);
        if self.failing {
            self.failing = false;
            tracing::info!(collector = %self.url, "telemetry: the collector takes spans again");
        }
    }

    fn failed(&mut self, count: u64, error: String) {
        self.export_failed.inc_by(count);
        self.failing = true;
        self.last_error = Some(error);
    }

    /// Logs the spans lost since the last report, at most once every `LOG_EVERY` (the
    /// first loss at once), or now when `last`.
    fn report(&mut self, shared: &Shared, last: bool) {
        let queue_full = shared.dropped_queue_full.get();
        let failed = self.export_failed.get();
        let new_full = queue_full.saturating_sub(self.reported_queue_full);
        let new_failed = failed.saturating_sub(self.reported_failed);
        if new_full == 0 && new_failed == 0 {
            return;
        }
        let due = last || self.last_report.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if !due {
            return;
        }
        self.last_report = Some(Instant::now());
        self.reported_queue_full = queue_full;
        self.reported_failed = failed;
        tracing::warn!(
            collector = %self.url,
            dropped_queue_full = new_full,
            dropped_export_failed = new_failed,
            error = self.last_error.take().unwrap_or_default(),
            "telemetry: spans dropped (the collector is slow or unreachable; requests are not affected)"
        );
    }
}
