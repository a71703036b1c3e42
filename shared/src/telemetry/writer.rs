//! Log lines written to stderr by a thread of their own, a batch at a time.
//!
//! At `info` the API writes a line per create and the consumer a line per
//! event. Written by the logging thread, each line was a `write` system
//! call: about 14 µs of the API's CPU per create, user time included (a
//! write to `/dev/null` instead of a file cost 14.4 µs less per create;
//! `docs/benchmarks.md`, twenty-fifth pass). Here a line is appended to a
//! buffer under a lock; a writer thread woken by the first line of a batch
//! gathers for [`GATHER`] and writes the batch in one call.
//!
//! What an operator can rely on:
//! - **Order:** lines are written in the order they were logged.
//! - **Warnings and errors are not held:** a line at `WARN` or above ends
//!   the gathering, so it is written as soon as the thread runs.
//! - **Memory is bounded:** a line logged while [`HELD_MAX`] bytes wait
//!   waits for the thread to write them, as a write to a full pipe waits.
//! - **Exit and panics:** the services call [`flush_logs`] before they
//!   exit, and the panic hook calls it before the panic's message. Only a
//!   process killed (SIGKILL) or aborted loses the lines of its last few
//!   milliseconds.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread gathers lines after the first of a batch.
pub const GATHER: Duration = Duration::from_millis(5);

/// Bytes of lines held for the writer thread at most.
pub const HELD_MAX: usize = 1 << 20;

/// How long [`flush_logs`] waits for the thread at most.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    held: Vec<u8>,
    /// Write without gathering: a warning, a flush, or the buffer full.
    urgent: bool,
    /// The thread waits for a first line (only then does a line wake it).
    idle: bool,
    /// The thread is writing a batch it took.
    writing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The thread waits on it: for a first line, or for the gathering to
    /// end early.
    work: Condvar,
    /// Loggers and flushes wait on it: for room, or for a batch written.
    written: Condvar,
    gather: Duration,
    cap: usize,
}

/// The writer of the services' log lines ([`MakeWriter`] for the
/// subscriber); clones share one thread.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("held", &lock(&self.shared.state).held.len())
            .finish()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits on `cv` for a notification, or for `limit` at most.
fn wait<'a>(
    cv: &Condvar,
    state: MutexGuard<'a, State>,
    limit: Option<Duration>,
) -> MutexGuard<'a, State> {
    match limit {
        None => cv.wait(state).unwrap_or_else(|e| e.into_inner()),
        Some(limit) => match cv.wait_timeout(state, limit) {
            Ok((state, _)) => state,
            Err(e) => e.into_inner().0,
        },
    }
}

impl BatchWriter {
    /// Starts the thread that writes to `sink`, gathering for `gather` and
    /// holding at most `cap` bytes.
    pub fn spawn(
        sink: impl Write + Send + 'static,
        gather: Duration,
        cap: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            written: Condvar::new(),
            gather,
            cap: cap.max(1),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || write_batches(&thread, sink))?;
        Ok(BatchWriter { shared })
    }

    /// Hands one line over; wakes the thread only when it is idle or the
    /// line is urgent.
    fn push(&self, line: &[u8], urgent: bool) {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        while state.held.len() >= shared.cap {
            state.urgent = true;
            shared.work.notify_one();
            state = wait(&shared.written, state, None);
        }
        state.held.extend_from_slice(line);
        state.urgent |= urgent;
        if state.idle || urgent {
            // One notification per batch: the next lines find it awake.
            state.idle = false;
            shared.work.notify_one();
        }
    }

    /// Writes every line handed over so far; waits `limit` at most.
    pub fn flush_within(&self, limit: Duration) {
        let shared = &self.shared;
        let deadline = Instant::now() + limit;
        let mut state = lock(&shared.state);
        if !state.held.is_empty() {
            state.urgent = true;
            shared.work.notify_one();
        }
        while !state.held.is_empty() || state.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = wait(&shared.written, state, Some(left));
        }
    }
}

/// The thread: waits for a first line, gathers, takes the batch, writes it.
fn write_batches(shared: &Shared, mut sink: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut state = lock(&shared.state);
        while state.held.is_empty() {
            state.idle = true;
            state = wait(&shared.work, state, None);
        }
        state.idle = false;
        let until = Instant::now() + shared.gather;
        while !state.urgent {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = wait(&shared.work, state, Some(left));
        }
        state.urgent = false;
        state.writing = true;
        std::mem::swap(&mut state.held, &mut batch);
        drop(state);
        // Room again for a logger at the cap.
        shared.written.notify_all();
        // As the stock writer does, a line that cannot be written is dropped.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if batch.capacity() > shared.cap {
            // A burst's buffer is not kept for good.
            batch = Vec::new();
        }
        lock(&shared.state).writing = false;
        shared.written.notify_all();
    }
}

/// One line on its way to the [`BatchWriter`].
#[derive(Debug)]
pub struct Line<'a> {
    to: &'a BatchWriter,
    urgent: bool,
}

impl Write for Line<'_> {
    /// The formatter writes a whole line in one call: it is handed over whole.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.to.push(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            to: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            to: self,
            // More verbose levels compare greater: WARN and ERROR.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

static WRITER: OnceLock<Option<BatchWriter>> = OnceLock::new();

/// The process's writer to stderr, started at the first call; `None` when
/// its thread could not be started (the caller then writes to stderr
/// itself).
pub fn stderr_writer() -> Option<BatchWriter> {
    WRITER
        .get_or_init(|| BatchWriter::spawn(io::stderr(), GATHER, HELD_MAX).ok())
        .clone()
}

/// Writes the log lines still held; the services call it before they exit.
pub fn flush_logs() {
    if let Some(Some(writer)) = WRITER.get() {
        writer.flush_within(FLUSH_WAIT);
    }
}

#[cfg(test)]
mod tests;
