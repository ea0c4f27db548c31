//! The audit trail: one record per tools/call and per refused request, as JSON lines on
//! stdout or in a file with size-based rotation.
//!
//! Records go through a bounded queue to one writer thread: the request path never waits
//! for the disk. When the queue is full the record is dropped and counted; the next line
//! the writer manages to write is preceded by an `audit_records_dropped` line saying how
//! many are missing, so a gap in the trail is always visible in the trail itself.
//!
//! ```toml
//! [audit]
//! to = "file"                      # "off" (default), "stdout" or "file"
//! path = "/var/log/mcp-vpce-proxy/audit.jsonl"
//! max_file_bytes = 104857600       # rotate when the file would grow past this
//! max_files = 5                    # rotated files kept: audit.jsonl.1 … audit.jsonl.5
//! queue = 4096                     # records waiting for the writer before drops start
//! queue_bytes = 16777216           # bytes of records waiting, likewise (arguments can be large)
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuditTo {
    #[default]
    Off,
    Stdout,
    File,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub to: AuditTo,
    /// The file, for `to = "file"`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// The bytes of records waiting for the writer (a record with large tool arguments
    /// counts for its size): past it, records are dropped and counted as with `queue`.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
}

fn default_max_file_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_max_files() -> u32 {
    5
}
fn default_queue() -> usize {
    4096
}
fn default_queue_bytes() -> usize {
    16 * 1024 * 1024
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            to: AuditTo::Off,
            path: None,
            max_file_bytes: default_max_file_bytes(),
            max_files: default_max_files(),
            queue: default_queue(),
            queue_bytes: default_queue_bytes(),
        }
    }
}

impl AuditConfig {
    /// Checks the table; the error is the first problem, starting with its key
    /// (`audit.path: …`).
    pub fn validate(&self) -> Result<(), String> {
        match self.problems().into_iter().next() {
            Some((key, problem)) => Err(format!("{key}: {problem}")),
            None => Ok(()),
        }
    }

    /// Every problem of the table as `(key, problem)` (`audit.queue`, `audit.path`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        if self.queue == 0 {
            out.push(("audit.queue".into(), "must be at least 1".into()));
        }
        if self.queue_bytes < 64 * 1024 {
            out.push(("audit.queue_bytes".into(), "must be at least 65536".into()));
        }
        if self.to != AuditTo::File {
            if self.path.is_some() {
                out.push((
                    "audit.path".into(),
                    "is only used with to = \"file\"".into(),
                ));
            }
            return out;
        }
        if self.max_file_bytes == 0 {
            out.push((
                "audit.max_file_bytes".into(),
                "must be greater than 0".into(),
            ));
        }
        match self.path.as_deref() {
            None => out.push(("audit.path".into(), "is required with to = \"file\"".into())),
            Some(path) => {
                if let Err(e) = check_writable(path) {
                    out.push(("audit.path".into(), e));
                }
            }
        }
        out
    }
}

/// The file can be appended to. A FIFO is accepted without opening it (opening would wait
/// for a reader).
fn check_writable(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.file_type().is_fifo() {
                return Ok(());
            }
            if !meta.is_file() {
                return Err(format!("{} is not a regular file", path.display()));
            }
        }
    }
    append(path)
        .map(drop)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// How a tools/call (or a refused request) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The tool ran and answered.
    Ok,
    /// The tool ran and reported an error (`result.isError`).
    ToolError,
    /// The gateway answered with a JSON-RPC error (see `error_code`).
    RpcError,
    /// The proxy refused the request (see `reason`).
    Refused,
    /// No usable answer came from the gateway (connection, timeout, HTTP error, stream cut).
    UpstreamFailure,
}

impl Outcome {
    pub fn metric(self) -> crate::ops::metrics::ToolOutcome {
        use crate::ops::metrics::ToolOutcome;
        match self {
            Outcome::Ok => ToolOutcome::ok,
            Outcome::ToolError => ToolOutcome::tool_error,
            Outcome::RpcError => ToolOutcome::rpc_error,
            Outcome::Refused => ToolOutcome::refused,
            Outcome::UpstreamFailure => ToolOutcome::upstream_failure,
        }
    }
}

/// One line of the trail.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    #[serde(serialize_with = "as_str")]
    pub route: Arc<str>,
    /// The `Mcp-Session-Id` the agent sent.
    pub session: Option<String>,
    /// The JSON-RPC id of the request.
    pub id: Option<Value>,
    /// The JSON-RPC method, or the HTTP method for requests without one.
    pub method: String,
    pub tool: Option<String>,
    pub outcome: Outcome,
    /// The JSON-RPC error code (gateway's or ours) when there was one.
    pub error_code: Option<i64>,
    /// Why the proxy refused or failed it (`tool_refused`, `rate_limited`, …).
    pub reason: Option<String>,
    /// The HTTP status of the answer to the agent.
    pub status: u16,
    pub duration_ms: f64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// The tool arguments, only when the route's `policy.log_arguments` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<RawValue>>,
}

impl Record {
    /// About what the record takes in memory and on disk, for the queue's byte bound.
    fn size(&self) -> usize {
        let id = self.id.as_ref().map_or(0, |id| match id {
            Value::String(s) => s.len(),
            _ => 24,
        });
        256 + self.route.len()
            + self.session.as_ref().map_or(0, String::len)
            + id
            + self.method.len()
            + self.tool.as_ref().map_or(0, String::len)
            + self.reason.as_ref().map_or(0, String::len)
            + self.arguments.as_ref().map_or(0, |a| a.get().len())
    }
}

/// Tool arguments as the audit line keeps them: the agent's JSON without the whitespace
/// between tokens. JSON text may hold raw line breaks there, which would end the audit
/// line early and let the rest read as a forged record; inside strings JSON has none
/// (control characters must be escaped), so nothing else needs changing.
pub fn compact(raw: &RawValue) -> Box<RawValue> {
    let text = raw.get();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    RawValue::from_string(out).unwrap_or_else(|_| raw.to_owned())
}

fn as_str<S: serde::Serializer>(value: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value)
}

pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Where audit records go; cheap to clone, never blocks the request path.
#[derive(Clone, Default)]
pub struct AuditSink {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: SyncSender<Record>,
    dropped: Arc<AtomicU64>,
    /// Bytes of the records in the queue, and the most there may be.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

impl AuditSink {
    /// Validates the table and starts the writer thread (none when `to = "off"`).
    pub fn start(config: &AuditConfig) -> Result<AuditSink, String> {
        config.validate()?;
        let output = match config.to {
            AuditTo::Off => return Ok(AuditSink::default()),
            AuditTo::Stdout => Output::Stdout,
            AuditTo::File => Output::File(Rotating {
                path: config.path.clone().unwrap_or_default(),
                file: None,
                size: 0,
                max_bytes: config.max_file_bytes,
                max_files: config.max_files,
            }),
        };
        let (tx, rx) = sync_channel(config.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            rx,
            dropped: dropped.clone(),
            queued: queued.clone(),
            reported: 0,
            output,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("audit: cannot start the writer thread: {e}"))?;
        Ok(AuditSink {
            inner: Some(Arc::new(Inner {
                tx,
                dropped,
                queued,
                max_queued: config.queue_bytes,
            })),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether `other` is this very sink (a clone of it), or both are off.
    pub fn same_as(&self, other: &AuditSink) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Queues a record; drops (and counts) it when the writer is behind, by records or
    /// by bytes.
    pub fn record(&self, record: Record) {
        let Some(inner) = &self.inner else { return };
        let size = record.size();
        let before = inner.queued.fetch_add(size, Ordering::Relaxed);
        if before + size > inner.max_queued {
            inner.queued.fetch_sub(size, Ordering::Relaxed);
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match inner.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                inner.queued.fetch_sub(size, Ordering::Relaxed);
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped so far because the writer was behind (or failing).
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }
}

struct Writer {
    rx: Receiver<Record>,
    dropped: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    /// Drops already reported in the trail.
    reported: u64,
    output: Output,
}

impl Writer {
    fn run(mut self) {
        // Blocks until a record comes; ends when every sink handle is gone.
        while let Ok(record) = self.rx.recv() {
            self.write(&record);
            while let Ok(more) = self.rx.try_recv() {
                self.write(&more);
            }
            if let Err(e) = self.output.flush() {
                tracing::warn!("audit: cannot flush: {e}");
            }
        }
        let _ = self.output.flush();
    }

    fn write(&mut self, record: &Record) {
        self.queued.fetch_sub(record.size(), Ordering::Relaxed);
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > self.reported {
            let notice = serde_json::json!({
                "time": now(),
                "event": "audit_records_dropped",
                "dropped": dropped - self.reported,
            });
            tracing::warn!(
                dropped = dropped - self.reported,
                "audit: records dropped because the audit output was too slow"
            );
            self.reported = dropped;
            self.line(notice.to_string());
        }
        match serde_json::to_string(record) {
            Ok(line) => self.line(line),
            Err(e) => tracing::warn!("audit: cannot serialize a record: {e}"),
        }
    }

    fn line(&mut self, mut line: String) {
        line.push('\n');
        if let Err(e) = self.output.write(line.as_bytes()) {
            tracing::warn!("audit: cannot write: {e}");
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.reported += 1;
        }
    }
}

enum Output {
    Stdout,
    File(Rotating),
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().write_all(bytes),
            Output::File(f) => f.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout => std::io::stdout().lock().flush(),
            Output::File(f) => f.file.as_mut().map_or(Ok(()), |f| f.flush()),
        }
    }
}

/// A file that is renamed to `<path>.1` (shifting older ones up to `<path>.<max_files>`)
/// when a line would take it past `max_bytes`.
struct Rotating {
    path: PathBuf,
    file: Option<std::io::BufWriter<File>>,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl Rotating {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() {
            let file = append(&self.path)?;
            self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
            self.file = Some(std::io::BufWriter::new(file));
        }
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.max_files));
            for n in (1..self.max_files).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = Some(std::io::BufWriter::new(append(&self.path)?));
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Record {
        Record {
            time: now(),
            route: Arc::from("mcp"),
            session: None,
            id: Some(Value::from(n)),
            method: "tools/call".into(),
            tool: Some("DemoTarget___echo".into()),
            outcome: Outcome::Ok,
            error_code: None,
            reason: None,
            status: 200,
            duration_ms: 1.0,
            request_bytes: 10,
            response_bytes: 20,
            arguments: None,
        }
    }

    #[test]
    fn arguments_lose_the_line_breaks_that_would_forge_a_record() {
        let forged = "{\"a\":\n1}\n{\"time\":\"x\",\"outcome\":\"ok\"}";
        // Not one JSON value: the body parser would never hand this over. Its first value is
        // what a RawValue can hold; line breaks between tokens are what is left to remove.
        let raw: Box<RawValue> =
            serde_json::from_str("{ \"a\" :\n [1,\r\n\t2], \"s\": \"x \\\" \\n y\" }").unwrap();
        let line = compact(&raw);
        assert_eq!(line.get(), "{\"a\":[1,2],\"s\":\"x \\\" \\n y\"}");
        assert!(serde_json::from_str::<Box<RawValue>>(forged).is_err());
        let mut r = record(1);
        r.arguments = Some(line);
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains('\n'));
    }

    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.fifo");
        // A FIFO nobody reads: the writer blocks on its first open, so records pile up.
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let sink = AuditSink::start(&AuditConfig {
            to: AuditTo::File,
            path: Some(fifo),
            queue: 1_000_000,
            queue_bytes: 1024 * 1024,
            ..AuditConfig::default()
        })
        .unwrap();
        let big: Box<RawValue> =
            serde_json::from_str(&format!("\"{}\"", "x".repeat(100 * 1024))).unwrap();
        for n in 0..100 {
            let mut r = record(n);
            r.arguments = Some(big.clone());
            sink.record(r);
        }
        // 100 KiB each against 1 MiB: at most ten wait, the rest are dropped and counted.
        assert!(sink.dropped() >= 85, "dropped {}", sink.dropped());
    }

    #[test]
    fn config_errors_name_the_key() {
        let c: AuditConfig = toml::from_str("to = \"file\"").unwrap();
        assert!(c.validate().unwrap_err().starts_with("audit.path: "));
        let c: AuditConfig = toml::from_str("to = \"stdout\"\npath = \"/x\"").unwrap();
        assert!(c.validate().unwrap_err().starts_with("audit.path: "));
        let c: AuditConfig =
            toml::from_str("to = \"file\"\npath = \"/nonexistent-dir/audit.jsonl\"").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("audit.path: cannot write"));
        assert!(toml::from_str::<AuditConfig>("to = \"syslog\"").is_err());
        assert!(toml::from_str::<AuditConfig>("pth = \"x\"").is_err());
    }

    #[test]
    fn files_rotate_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = Rotating {
            path: path.clone(),
            file: None,
            size: 0,
            max_bytes: 25,
            max_files: 2,
        };
        for line in [
            "aaaaaaaaaa\n",
            "bbbbbbbbbb\n",
            "cccccccccc\n",
            "dddddddddd\n",
            "eeeeeeeeee\n",
            "ffffffffff\n",
            "gggggggggg\n",
        ] {
            f.write(line.as_bytes()).unwrap();
        }
        f.file.as_mut().unwrap().flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "gggggggggg\n");
        assert_eq!(
            read(&dir.path().join("audit.jsonl.1")),
            "eeeeeeeeee\nffffffffff\n"
        );
        assert_eq!(
            read(&dir.path().join("audit.jsonl.2")),
            "cccccccccc\ndddddddddd\n"
        );
        assert!(!dir.path().join("audit.jsonl.3").exists());
    }

    #[test]
    fn records_reach_the_file_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let sink = AuditSink::start(&AuditConfig {
            to: AuditTo::File,
            path: Some(path.clone()),
            ..AuditConfig::default()
        })
        .unwrap();
        sink.record(record(1));
        sink.record(record(2));
        drop(sink);
        // The writer ends when the last handle is gone; wait for the file in bounded steps.
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = std::fs::read_to_string(&path)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect();
            if lines.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["id"], 2);
        assert_eq!(lines[0]["outcome"], "ok");
        assert!(lines[0].get("arguments").is_none());
    }
}
