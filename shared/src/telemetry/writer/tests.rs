use super::BatchWriter;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A sink that keeps what is written, and can be closed so that a write
/// waits until it is opened (a full pipe).
#[derive(Clone, Default)]
struct Sink(Arc<SinkInner>);

#[derive(Default)]
struct SinkInner {
    /// What was written, and whether a write waits.
    state: Mutex<(Vec<u8>, bool)>,
    opened: Condvar,
}

impl Sink {
    fn closed() -> Self {
        let sink = Sink::default();
        sink.0.state.lock().unwrap().1 = true;
        sink
    }

    fn open(&self) {
        self.0.state.lock().unwrap().1 = false;
        self.0.opened.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.state.lock().unwrap().0.clone()).unwrap()
    }

    /// Waits up to 10 s for `n` lines.
    fn wait_lines(&self, n: usize) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        while self.text().lines().count() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.text()
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.state.lock().unwrap();
        while state.1 {
            state = self.0.opened.wait(state).unwrap();
        }
        state.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const LONG: Duration = Duration::from_secs(600);

#[test]
fn lines_from_many_threads_arrive_whole_and_in_order() {
    let sink = Sink::default();
    let writer = BatchWriter::spawn(sink.clone(), Duration::from_millis(5), 4096).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    writer.push(
                        format!("thread {t} line {i:05} {}\n", "x".repeat(i % 90)).as_bytes(),
                        false,
                    );
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    writer.flush_within(Duration::from_secs(10));
    let text = sink.text();
    let mut next = [0; 4];
    for line in text.lines() {
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("thread"), "{line}");
        let t: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next(), Some("line"));
        let i: usize = words.next().unwrap().parse().unwrap();
        assert_eq!(
            i, next[t],
            "thread {t}'s lines out of order or torn: {line}"
        );
        assert_eq!(words.next(), Some("x".repeat(i % 90).as_str()));
        next[t] += 1;
    }
    assert_eq!(next, [2000; 4]);
}

#[test]
fn info_lines_are_gathered_and_a_warning_ends_the_gathering() {
    let sink = Sink::default();
    let writer = BatchWriter::spawn(sink.clone(), LONG, 1 << 20).unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("First.");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            sink.text(),
            "",
            "an info line was written before the gathering ended"
        );
        tracing::warn!("Second.");
    });
    let text = sink.wait_lines(2);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with("First.") && lines[1].ends_with("Second."),
        "{text}"
    );
}

#[test]
fn flush_writes_what_is_held_at_once() {
    let sink = Sink::default();
    let writer = BatchWriter::spawn(sink.clone(), LONG, 1 << 20).unwrap();
    writer.push(b"one\n", false);
    writer.push(b"two\n", false);
    let started = Instant::now();
    writer.flush_within(Duration::from_secs(10));
    assert_eq!(sink.text(), "one\ntwo\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing held: returns at once.
    writer.flush_within(Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_logger_waits_for_room_rather_than_the_buffer_growing() {
    let sink = Sink::closed();
    let writer = BatchWriter::spawn(sink.clone(), Duration::ZERO, 100).unwrap();
    let line = |c: char| format!("{}\n", c.to_string().repeat(59));
    // The thread takes the first line and waits in the closed sink; the
    // next two are held (120 bytes, over the cap of 100).
    writer.push(line('a').as_bytes(), false);
    let until = Instant::now() + Duration::from_secs(10);
    while !super::lock(&writer.shared.state).writing && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    writer.push(line('b').as_bytes(), false);
    writer.push(line('c').as_bytes(), false);
    let done = Arc::new(AtomicBool::new(false));
    let logger = {
        let (writer, done, d) = (writer.clone(), done.clone(), line('d'));
        std::thread::spawn(move || {
            writer.push(d.as_bytes(), false);
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "a line was taken beyond the cap"
    );
    assert_eq!(super::lock(&writer.shared.state).held.len(), 120);
    sink.open();
    logger.join().unwrap();
    writer.flush_within(Duration::from_secs(10));
    assert_eq!(
        sink.text(),
        [line('a'), line('b'), line('c'), line('d')].concat()
    );
}
