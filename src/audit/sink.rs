//! The audit writer: a bounded queue drained by one thread that numbers, chains, hashes and
//! writes records. Emitting never blocks and never does I/O on the caller's thread; when the
//! queue is full the record is counted as dropped and a `records_dropped` record says so.
//! Records reach the output within about 10 ms (a busy writer polls instead of being woken
//! per record, which would cost every request a syscall).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;

use super::chain::{self, Hasher};
use super::event::{AuditEvent, EventKind};
use crate::policy::detect::{Detector, Scanner};
use crate::policy::redact;

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    /// Appended to; an existing chain is continued.
    File(PathBuf),
}

/// The audit settings, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditConfig {
    pub output: Output,
    /// HMAC key for record and argument hashes.
    pub key: Option<Vec<u8>>,
    /// Write arguments (redacted) instead of their hash.
    pub capture_arguments: bool,
    /// Records queued at most.
    pub buffer: usize,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("output", &self.output)
            .field("keyed", &self.key.is_some())
            .field("capture_arguments", &self.capture_arguments)
            .field("buffer", &self.buffer)
            .finish()
    }
}

/// How often a busy writer looks for records (at most this much is buffered unwritten).
const POLL: Duration = Duration::from_millis(10);
/// A writer without records for this long parks until the next one.
const IDLE_AFTER: Duration = Duration::from_secs(1);

enum Msg {
    Event(Box<AuditEvent>),
    Close(mpsc::Sender<()>),
}

/// A handle to the writer. Cheap to clone; a disabled sink drops everything.
#[derive(Clone)]
pub struct AuditSink {
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.tx.is_some())
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl AuditSink {
    /// A sink that records nothing.
    pub fn disabled() -> AuditSink {
        AuditSink {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Opens the output (continuing an existing chain) and starts the writer thread.
    pub fn start(config: &AuditConfig) -> io::Result<AuditSink> {
        let hasher = Hasher::new(config.key.clone());
        let (out, seq, prev): (Box<dyn Write + Send>, u64, String) = match &config.output {
            Output::Stdout => (Box::new(io::stdout()), 0, chain::GENESIS.to_owned()),
            Output::File(path) => {
                let (file, seq, prev) = open_chained(path)?;
                (Box::new(file), seq, prev)
            }
        };
        let (tx, rx) = mpsc::sync_channel(config.buffer.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            hasher,
            seq,
            prev,
            capture: config
                .capture_arguments
                .then(|| Scanner::new(&Detector::ALL, &[]).ok())
                .flatten(),
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer.run(rx))?;
        let sink = AuditSink {
            tx: Some(tx),
            dropped,
        };
        sink.emit(AuditEvent::new(EventKind::AuditOpened, SystemTime::now()));
        Ok(sink)
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record; never blocks.
    pub fn emit(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Records dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes `audit_closed`, flushes, and waits (at most `timeout`) for the writer.
    pub fn close(&self, timeout: Duration) {
        let Some(tx) = &self.tx else { return };
        let closing = AuditEvent::new(EventKind::AuditClosed, SystemTime::now());
        // Blocking here is fine: this runs once, at shutdown.
        let _ = tx.send(Msg::Event(Box::new(closing)));
        let (ack, done) = mpsc::channel();
        if tx.send(Msg::Close(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

/// Opens `path` for appending and reads where its chain ends.
fn open_chained(path: &Path) -> io::Result<(File, u64, String)> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    let len = file.metadata()?.len();
    let from = len.saturating_sub(1 << 20);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = String::new();
    (&mut file)
        .take(len - from)
        .read_to_string(&mut tail)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let last = tail.lines().rev().find(|l| !l.trim().is_empty());
    let (seq, prev) = chain::tail(last).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit file {}: {e}; check it with `mcp-warden audit verify` and move it away",
                path.display()
            ),
        )
    })?;
    Ok((file, seq, prev))
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    hasher: Hasher,
    seq: u64,
    prev: String,
    capture: Option<Scanner>,
    dropped: Arc<AtomicU64>,
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    prev: &'a str,
    time: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a RawValue>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut reported = 0u64;
        let mut last_busy = std::time::Instant::now();
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    if let Err(e) = self.out.flush() {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                    // While records flow, poll: a sender then never has to wake this thread
                    // (a syscall on the request path). After a quiet second, park until the
                    // next record.
                    if last_busy.elapsed() < IDLE_AFTER {
                        std::thread::sleep(POLL);
                        continue;
                    }
                    match rx.recv() {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                }
            };
            last_busy = std::time::Instant::now();
            let dropped = self.dropped.load(Ordering::Relaxed);
            if dropped > reported {
                let mut e = AuditEvent::new(EventKind::RecordsDropped, SystemTime::now());
                e.count = Some(dropped - reported);
                reported = dropped;
                self.write(&e);
            }
            match msg {
                Msg::Event(e) => self.write(&e),
                Msg::Close(ack) => {
                    let _ = self.out.flush();
                    let _ = ack.send(());
                    return;
                }
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, e: &AuditEvent) {
        let time = chrono::DateTime::<chrono::Utc>::from(e.time)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut captured: Option<Box<RawValue>> = None;
        let mut args_hash = None;
        if let Some(args) = &e.arguments {
            match &self.capture {
                Some(scanner) => {
                    let redacted = redact::redact_value(&args.raw, scanner, &args.secrets);
                    let bytes = match redacted {
                        Ok(Some(b)) => b,
                        Ok(None) => args.raw.to_vec(),
                        Err(_) => b"null".to_vec(),
                    };
                    captured = String::from_utf8(bytes)
                        .ok()
                        .and_then(|s| RawValue::from_string(s).ok());
                }
                None => args_hash = Some(self.hasher.hex(&[&args.raw])),
            }
        }
        let line = Line {
            seq: self.seq + 1,
            prev: &self.prev,
            time,
            event: e,
            args_hash,
            arguments: captured.as_deref(),
        };
        let Ok(body) = serde_json::to_string(&line) else {
            return;
        };
        let (sealed, hash) = chain::seal(&self.hasher, &body);
        if let Err(err) = self
            .out
            .write_all(sealed.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"))
        {
            tracing::error!(error = %err, "cannot write the audit log");
            return;
        }
        self.seq += 1;
        self.prev = hash;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::Arguments;
    use crate::policy::Secrets;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    fn config(path: &Path, capture: bool) -> AuditConfig {
        AuditConfig {
            output: Output::File(path.to_path_buf()),
            key: None,
            capture_arguments: capture,
            buffer: 64,
        }
    }

    fn call(args: &str, secrets: Secrets) -> AuditEvent {
        let mut e = AuditEvent::new(EventKind::Call, SystemTime::now());
        e.name = Some("echo".into());
        e.arguments = Some(Arguments {
            raw: bytes::Bytes::from(args.to_owned()),
            secrets,
        });
        e
    }

    #[test]
    fn records_chain_across_restarts_and_verify() {
        let path = temp("restart");
        for _ in 0..2 {
            let sink = AuditSink::start(&config(&path, false)).unwrap();
            sink.emit(call(r#"{"message":"tok-123"}"#, Secrets::none()));
            sink.close(Duration::from_secs(5));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}");
        assert!(
            !text.contains("tok-123"),
            "raw arguments are hashed: {text}"
        );
        assert!(text.contains("\"args_hash\":\""));
        let head = chain::verify(text.as_bytes(), &Hasher::new(None)).unwrap();
        assert_eq!(head.seq, 6);
        assert!(head.closed);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn captured_arguments_are_redacted() {
        let path = temp("capture");
        let sink = AuditSink::start(&config(&path, true)).unwrap();
        let args = r#"{"message":"key AKIAIOSFODNN7EXAMPLE and injected-v4lue","n":1}"#;
        sink.emit(call(args, Secrets::new(["injected-v4lue"])));
        sink.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("AKIAIOSFODNN7EXAMPLE") && !text.contains("injected-v4lue"),
            "{text}"
        );
        assert!(
            text.contains("[REDACTED:aws_access_key]")
                && text.contains("[REDACTED:injected_secret]")
        );
        assert!(chain::verify(text.as_bytes(), &Hasher::new(None)).is_ok());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn dropped_records_are_reported_in_the_chain() {
        let path = temp("full");
        let sink = AuditSink::start(&config(&path, false)).unwrap();
        // What a full queue does to the records that do not fit.
        sink.dropped.fetch_add(3, Ordering::Relaxed);
        sink.emit(AuditEvent::new(EventKind::Call, SystemTime::now()));
        sink.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"event\":\"records_dropped\"") && text.contains("\"count\":3"),
            "{text}"
        );
        assert!(chain::verify(text.as_bytes(), &Hasher::new(None)).is_ok());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_corrupt_tail_is_refused() {
        let path = temp("corrupt");
        std::fs::write(&path, "garbage\n").unwrap();
        let err = AuditSink::start(&config(&path, false)).unwrap_err();
        assert!(err.to_string().contains("audit verify"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
