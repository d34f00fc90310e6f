//! The audit writer: a bounded queue drained by one thread that numbers, chains, hashes and
//! writes records, and keeps the chain's head in an anchor file beside the log (see `chain`
//! for why). Emitting never does I/O on the caller's thread. When the queue is full, what
//! happens is the deployment's choice (`on_full`): by default the record is dropped, counted,
//! and a `records_dropped` record marks the gap; `block` makes the caller wait for room;
//! `refuse` turns new requests away while the queue is nearly full, so that the records of
//! those already admitted always fit. Records reach the output within about 10 ms (a busy
//! writer polls instead of being woken per record, which would cost every request a
//! syscall).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;

use super::chain::{self, Anchor, Hasher, Tail};
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

/// What happens to a record that finds the queue full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Dropped and counted; a `records_dropped` record marks the gap. Requests never wait.
    #[default]
    Drop,
    /// The caller waits for room: requests slow down to the writer's pace.
    Block,
    /// New requests are refused (503) while the queue is nearly full or the output fails;
    /// records of requests already admitted wait for room. No record is lost to a full queue.
    Refuse,
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
    pub on_full: OnFull,
    /// Where the head of a file output is kept (`None` for stdout).
    pub anchor: Option<PathBuf>,
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("output", &self.output)
            .field("keyed", &self.key.is_some())
            .field("capture_arguments", &self.capture_arguments)
            .field("buffer", &self.buffer)
            .field("on_full", &self.on_full)
            .field("anchor", &self.anchor)
            .finish()
    }
}

/// How often a busy writer looks for records (at most this much is buffered unwritten).
const POLL: Duration = Duration::from_millis(10);
/// A writer without records for this long parks until the next one.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// The anchor follows the head at most this often while records flow (and at every stop).
const ANCHOR_EVERY: Duration = Duration::from_secs(1);

enum Msg {
    Event(Box<AuditEvent>),
    Close(mpsc::Sender<()>),
}

/// What the handles and the writer share.
#[derive(Debug)]
struct Shared {
    on_full: OnFull,
    /// Records lost: the queue was full (`drop`), or a write failed.
    dropped: AtomicU64,
    /// Messages in the queue.
    queued: AtomicUsize,
    /// From this many queued records on, `refuse` turns new requests away.
    high_water: usize,
    /// The last write or flush failed.
    failing: AtomicBool,
}

/// A handle to the writer. Cheap to clone; a disabled sink drops everything.
#[derive(Clone)]
pub struct AuditSink {
    tx: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("enabled", &self.tx.is_some())
            .field("on_full", &self.shared.on_full)
            .field("dropped", &self.shared.dropped.load(Ordering::Relaxed))
            .finish()
    }
}

impl AuditSink {
    /// A sink that records nothing.
    pub fn disabled() -> AuditSink {
        AuditSink {
            tx: None,
            shared: Arc::new(Shared {
                on_full: OnFull::Drop,
                dropped: AtomicU64::new(0),
                queued: AtomicUsize::new(0),
                high_water: usize::MAX,
                failing: AtomicBool::new(false),
            }),
        }
    }

    /// Opens the output (continuing an existing chain, and reading the head its anchor
    /// names) and starts the writer thread.
    pub fn start(config: &AuditConfig) -> io::Result<AuditSink> {
        match &config.output {
            Output::Stdout => Self::launch(Box::new(io::stdout()), Tail::empty(), None, config),
            Output::File(path) => {
                let (file, tail) = open_chained(path)?;
                Self::launch(Box::new(file), tail, config.anchor.clone(), config)
            }
        }
    }

    /// Starts the writer on `out`, whose chain ends at `tail`, with the head kept in
    /// `anchor`.
    fn launch(
        out: Box<dyn Write + Send>,
        tail: Tail,
        anchor: Option<PathBuf>,
        config: &AuditConfig,
    ) -> io::Result<AuditSink> {
        let told = match &anchor {
            Some(path) => {
                let told = read_anchor(path)?;
                // Fail now rather than run with an anchor that never moves.
                let probe = temp_path(path);
                File::create(&probe)
                    .and_then(|_| std::fs::remove_file(&probe))
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("cannot write the audit anchor {}: {e}", path.display()),
                        )
                    })?;
                told
            }
            None => None,
        };
        if !tail.closed {
            tracing::warn!(
                seq = tail.seq,
                "the audit log's last run did not close it (killed or crashed): records it had queued are lost; `mcp-warden audit verify` reports the gap"
            );
        }
        if let Some(a) = &told
            && (a.seq > tail.seq || (a.seq == tail.seq && a.hash != tail.hash))
        {
            tracing::error!(
                anchor = a.seq,
                head = tail.seq,
                "the audit log was cut: its anchor names a record it does not end with; the new run records the head it was told of, and `mcp-warden audit verify` reports the cut"
            );
        }
        let anchored = anchor.is_some();
        let buffer = config.buffer.max(1);
        let (tx, rx) = mpsc::sync_channel(buffer);
        let shared = Arc::new(Shared {
            on_full: config.on_full,
            dropped: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            // A quarter of the queue stays free for the records of admitted requests.
            high_water: (buffer - buffer / 4).max(1),
            failing: AtomicBool::new(false),
        });
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, out),
            hasher: Hasher::new(config.key.clone()),
            seq: tail.seq,
            prev: tail.hash,
            capture: config
                .capture_arguments
                .then(|| Scanner::new(&Detector::ALL, &[]).ok())
                .flatten(),
            shared: shared.clone(),
            anchor: anchor.map(|path| AnchorFile {
                path,
                written: None,
                at: Instant::now(),
            }),
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer.run(rx))?;
        let sink = AuditSink {
            tx: Some(tx),
            shared,
        };
        let mut opened = AuditEvent::new(EventKind::AuditOpened, SystemTime::now());
        // The head as the anchor knew it, inside the chain: a cut made before this run
        // stays visible after the anchor has moved on.
        opened.anchor = told;
        opened.anchored = anchored.then_some(true);
        sink.emit(opened);
        Ok(sink)
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a record. With `on_full = "drop"` this never waits; otherwise it waits for
    /// room in the queue.
    pub fn emit(&self, event: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        let shared = &self.shared;
        // Counted before it is sent: the writer may take it at once.
        shared.queued.fetch_add(1, Ordering::AcqRel);
        let sent = match shared.on_full {
            OnFull::Drop => match tx.try_send(Msg::Event(Box::new(event))) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
            OnFull::Block | OnFull::Refuse => tx.send(Msg::Event(Box::new(event))).is_ok(),
        };
        if !sent {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether new requests may be admitted: with `on_full = "refuse"`, not while the queue
    /// is nearly full or the output is failing. Always with the other modes.
    pub fn accepting(&self) -> bool {
        let shared = &self.shared;
        self.tx.is_none()
            || shared.on_full != OnFull::Refuse
            || (shared.queued.load(Ordering::Acquire) < shared.high_water
                && !shared.failing.load(Ordering::Acquire))
    }

    /// Records lost so far (queue full with `drop`, or a failed write).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Writes `audit_closed`, flushes, updates the anchor, and waits (at most `timeout`)
    /// for the writer.
    pub fn close(&self, timeout: Duration) {
        let Some(tx) = &self.tx else { return };
        let closing = AuditEvent::new(EventKind::AuditClosed, SystemTime::now());
        // Blocking here is fine: this runs once, at shutdown.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if tx.send(Msg::Event(Box::new(closing))).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        let (ack, done) = mpsc::channel();
        if tx.send(Msg::Close(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }
}

/// Reads the head an anchor file names; none when there is no file yet.
fn read_anchor(path: &Path) -> io::Result<Option<Anchor>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Anchor::parse(&text).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "audit anchor {} is not an anchor; check the log with `mcp-warden audit verify` and move both away",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("audit anchor {}: {e}", path.display()),
        )),
    }
}

/// Opens `path` for appending and reads where its chain ends.
fn open_chained(path: &Path) -> io::Result<(File, Tail)> {
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
    let tail = chain::tail(last).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit file {}: {e}; check it with `mcp-warden audit verify` and move it away",
                path.display()
            ),
        )
    })?;
    Ok((file, tail))
}

/// The anchor file and what it last said.
struct AnchorFile {
    path: PathBuf,
    /// The seq it names, once written by this run.
    written: Option<u64>,
    at: Instant,
}

struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    hasher: Hasher,
    seq: u64,
    prev: String,
    capture: Option<Scanner>,
    shared: Arc<Shared>,
    anchor: Option<AnchorFile>,
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
        let mut last_busy = Instant::now();
        loop {
            let msg = match rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    self.flush(false);
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
            last_busy = Instant::now();
            let dropped = self.shared.dropped.load(Ordering::Relaxed);
            if dropped > reported {
                let mut e = AuditEvent::new(EventKind::RecordsDropped, SystemTime::now());
                e.count = Some(dropped - reported);
                reported = dropped;
                self.write(&e);
            }
            match msg {
                Msg::Event(e) => {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    self.write(&e);
                }
                Msg::Close(ack) => {
                    self.flush(true);
                    let _ = ack.send(());
                    return;
                }
            }
        }
        self.flush(true);
    }

    /// Hands what is buffered to the output, then moves the anchor to the head (at most
    /// every [`ANCHOR_EVERY`], unless `stopping`): never ahead of what was written.
    fn flush(&mut self, stopping: bool) {
        if let Err(e) = self.out.flush() {
            self.shared.failing.store(true, Ordering::Release);
            tracing::error!(error = %e, "cannot write the audit log");
            return;
        }
        self.shared.failing.store(false, Ordering::Release);
        let Some(anchor) = &mut self.anchor else {
            return;
        };
        if anchor.written == Some(self.seq)
            || (!stopping && anchor.written.is_some() && anchor.at.elapsed() < ANCHOR_EVERY)
        {
            return;
        }
        let head = Anchor {
            seq: self.seq,
            hash: self.prev.clone(),
        };
        match write_anchor(&anchor.path, &head, stopping) {
            Ok(()) => {
                anchor.written = Some(self.seq);
                anchor.at = Instant::now();
            }
            Err(e) => {
                tracing::error!(path = %anchor.path.display(), error = %e, "cannot write the audit anchor");
            }
        }
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
            // Lost: the next record that can be written says how many.
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.failing.store(true, Ordering::Release);
            tracing::error!(error = %err, "cannot write the audit log");
            return;
        }
        self.seq += 1;
        self.prev = hash;
    }
}

/// Where a new anchor is written before it replaces the old one.
fn temp_path(anchor: &Path) -> PathBuf {
    let mut tmp = anchor.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Replaces the anchor file (a new file renamed over it: never half written), synced to
/// disk when the log stops.
fn write_anchor(path: &Path, head: &Anchor, sync: bool) -> io::Result<()> {
    let tmp = temp_path(path);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(head.to_line().as_bytes())?;
    if sync {
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Expect, Gap, Report};
    use crate::audit::event::Arguments;
    use crate::policy::Secrets;
    use parking_lot::{Condvar, Mutex};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let _ = std::fs::remove_file(chain_anchor(&dir));
        dir
    }

    fn chain_anchor(path: &Path) -> PathBuf {
        crate::config::file::default_anchor(path)
    }

    fn config(path: &Path, capture: bool) -> AuditConfig {
        AuditConfig {
            output: Output::File(path.to_path_buf()),
            key: None,
            capture_arguments: capture,
            buffer: 64,
            on_full: OnFull::Drop,
            anchor: Some(chain_anchor(path)),
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

    /// Verifies `text` against the anchor at `path`'s default place, if any.
    fn verify_text(text: &str, anchor: Option<&Path>) -> Report {
        let anchor = anchor
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| Anchor::parse(&t));
        chain::verify(
            std::io::Cursor::new(text.as_bytes().to_vec()),
            &Hasher::new(None),
            &Expect {
                anchor,
                live: false,
            },
        )
        .unwrap()
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
        let report = verify_text(&text, Some(&chain_anchor(&path)));
        assert_eq!(report.gaps, vec![]);
        assert_eq!(report.head.seq, 6);
        assert!(report.head.closed);
        // The anchor names the head; the second run was told of the first run's.
        let anchor = Anchor::parse(&std::fs::read_to_string(chain_anchor(&path)).unwrap());
        assert_eq!(anchor.map(|a| a.seq), Some(6));
        let second_open: serde_json::Value =
            serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
        assert_eq!(second_open["anchor"]["seq"], 3, "{second_open}");
        assert_eq!(second_open["anchored"], true);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(chain_anchor(&path));
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
        assert_eq!(verify_text(&text, Some(&chain_anchor(&path))).gaps, vec![]);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(chain_anchor(&path));
    }

    #[test]
    fn a_corrupt_tail_or_anchor_is_refused() {
        let path = temp("corrupt");
        std::fs::write(&path, "garbage\n").unwrap();
        let err = AuditSink::start(&config(&path, false)).unwrap_err();
        assert!(err.to_string().contains("audit verify"), "{err}");
        std::fs::write(&path, "").unwrap();
        std::fs::write(chain_anchor(&path), "not an anchor").unwrap();
        let err = AuditSink::start(&config(&path, false)).unwrap_err();
        assert!(err.to_string().contains("not an anchor"), "{err}");
        let mut nowhere = config(&path, false);
        nowhere.anchor = Some(PathBuf::from("/nonexistent-dir/audit.anchor"));
        let err = AuditSink::start(&nowhere).unwrap_err();
        assert!(
            err.to_string().contains("cannot write the audit anchor"),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(chain_anchor(&path));
    }

    /// An output that takes nothing until it is opened, like a pipe nobody reads.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<GateState>, Condvar)>);

    #[derive(Default)]
    struct GateState {
        open: bool,
        /// A write is waiting for the gate.
        stuck: bool,
        written: Vec<u8>,
    }

    impl Gate {
        fn open(&self) {
            self.0.0.lock().open = true;
            self.0.1.notify_all();
        }

        /// Waits (a failsafe bound only) until the writer is stuck at the gate.
        fn wait_stuck(&self) {
            let mut st = self.0.0.lock();
            while !st.stuck {
                let timed_out = self
                    .0
                    .1
                    .wait_for(&mut st, Duration::from_secs(10))
                    .timed_out();
                assert!(!timed_out, "the writer never reached the gate");
            }
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.0.lock().written.clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut st = self.0.0.lock();
            while !st.open {
                st.stuck = true;
                self.0.1.notify_all();
                self.0.1.wait(&mut st);
            }
            st.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink writing to a closed gate, with a queue of 4, in `mode`; returned once its
    /// writer is stuck at the gate with its first record (`audit_opened`), so that every
    /// record emitted from then on stays in the queue.
    fn gated(mode: OnFull) -> (AuditSink, Gate) {
        let gate = Gate::default();
        let mut c = config(Path::new("unused"), false);
        c.output = Output::Stdout;
        c.anchor = None;
        c.buffer = 4;
        c.on_full = mode;
        let sink = AuditSink::launch(Box::new(gate.clone()), Tail::empty(), None, &c).unwrap();
        gate.wait_stuck();
        (sink, gate)
    }

    const N: usize = 50;

    #[test]
    fn by_default_a_stalled_writer_costs_records_and_verify_reports_the_gap() {
        let (sink, gate) = gated(OnFull::Drop);
        for _ in 0..N {
            sink.emit(call("{}", Secrets::none()));
        }
        assert_eq!(sink.dropped(), N as u64 - 4, "the queue holds 4");
        assert!(sink.accepting(), "drop never turns requests away");
        gate.open();
        sink.close(Duration::from_secs(5));
        let report = verify_text(&gate.text(), None);
        let dropped: u64 = report
            .gaps
            .iter()
            .map(|g| match g {
                Gap::Dropped { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(dropped, sink.dropped(), "{:?}", report.gaps);
        assert_eq!(
            gate.text().matches("\"event\":\"call\"").count() as u64 + dropped,
            N as u64
        );
    }

    #[test]
    fn block_makes_the_caller_wait_and_loses_nothing() {
        let (sink, gate) = gated(OnFull::Block);
        let emitted = Arc::new(AtomicUsize::new(0));
        let caller = {
            let (sink, emitted) = (sink.clone(), emitted.clone());
            std::thread::spawn(move || {
                for _ in 0..N {
                    sink.emit(call("{}", Secrets::none()));
                    emitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // The caller fills the queue and waits at the fifth record.
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.shared.queued.load(Ordering::Acquire) < 5 {
            assert!(
                Instant::now() < deadline,
                "the caller never reached the full queue"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(emitted.load(Ordering::SeqCst), 4, "the caller did not wait");
        assert!(!caller.is_finished());
        assert!(sink.accepting(), "block waits rather than refuses");
        gate.open();
        caller.join().unwrap();
        sink.close(Duration::from_secs(5));
        assert_eq!(sink.dropped(), 0);
        let text = gate.text();
        assert_eq!(text.matches("\"event\":\"call\"").count(), N);
        assert_eq!(verify_text(&text, None).gaps, vec![]);
    }

    #[test]
    fn refuse_turns_new_requests_away_while_full_and_loses_nothing() {
        let (sink, gate) = gated(OnFull::Refuse);
        assert!(sink.accepting());
        // What admitted requests emit waits for room; a caller that checks first stops.
        let emitted = Arc::new(AtomicUsize::new(0));
        let caller = {
            let (sink, emitted) = (sink.clone(), emitted.clone());
            std::thread::spawn(move || {
                while sink.accepting() {
                    sink.emit(call("{}", Secrets::none()));
                    emitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        caller.join().unwrap();
        assert!(!sink.accepting(), "nearly full: new requests are refused");
        // Three of the queue's four places: one stays for a record already due.
        assert_eq!(emitted.load(Ordering::SeqCst), 3);
        sink.emit(call("{}", Secrets::none()));
        emitted.fetch_add(1, Ordering::SeqCst);
        gate.open();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sink.accepting() {
            assert!(Instant::now() < deadline, "never accepting again");
            std::thread::sleep(Duration::from_millis(5));
        }
        sink.close(Duration::from_secs(5));
        assert_eq!(sink.dropped(), 0);
        let text = gate.text();
        assert_eq!(
            text.matches("\"event\":\"call\"").count(),
            emitted.load(Ordering::SeqCst)
        );
        assert_eq!(verify_text(&text, None).gaps, vec![]);
    }
}
