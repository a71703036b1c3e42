//! Slow clients: every connection must send a request head within
//! `HTTP_HEADER_READ_TIMEOUT_MS` (from its first byte, or from connecting)
//! and may sit idle between requests at most `HTTP_IDLE_TIMEOUT_MS`; a
//! client that misses either is cut. The body has its own deadline in the
//! middleware (`HTTP_BODY_READ_TIMEOUT_MS`). hyper, as poem runs it, has
//! no header timer of its own.

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The two deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// From connecting, or from a request's first byte, to the end of its head.
    pub header_read: Duration,
    /// From the last byte written to the next request's first byte.
    pub idle: Duration,
}

/// Wraps an acceptor so that each connection keeps [`ConnLimits`].
pub struct GuardedAcceptor<A> {
    inner: A,
    limits: ConnLimits,
}

impl<A> GuardedAcceptor<A> {
    /// Guards every connection `inner` accepts.
    pub fn new(inner: A, limits: ConnLimits) -> Self {
        GuardedAcceptor { inner, limits }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = Guarded<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((Guarded::new(io, self.limits), local, remote, scheme))
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for (the rest of) a request head: header deadline.
    Head,
    /// Head read; the handler and the response run (their own timeouts).
    Busy,
    /// Response written; waiting for the next request: idle deadline.
    Idle,
    /// HTTP/2 with prior knowledge: only the idle deadline, on any traffic.
    Http2,
}

/// A connection with deadlines.
pub struct Guarded<T> {
    io: T,
    limits: ConnLimits,
    phase: Phase,
    /// The last two bytes read, to find the head's empty line across reads.
    tail: [u8; 2],
    /// Bytes seen since the connection opened (to spot the HTTP/2 preface).
    seen: usize,
    deadline: Pin<Box<Sleep>>,
    /// The reader waiting while the connection was busy: woken when the
    /// idle deadline starts, so that it waits on that deadline too.
    parked_reader: Option<Waker>,
}

impl<T> Guarded<T> {
    fn new(io: T, limits: ConnLimits) -> Self {
        Guarded {
            io,
            limits,
            phase: Phase::Head,
            tail: [0; 2],
            seen: 0,
            deadline: Box::pin(tokio::time::sleep(limits.header_read)),
            parked_reader: None,
        }
    }

    fn arm(&mut self, after: Duration) {
        self.deadline.as_mut().reset(Instant::now() + after);
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if self.seen == 0 && bytes.starts_with(b"PRI ") {
            self.phase = Phase::Http2;
        }
        self.seen += bytes.len();
        match self.phase {
            Phase::Http2 => return self.arm(self.limits.idle),
            Phase::Idle => {
                self.phase = Phase::Head;
                self.tail = [0; 2];
                self.arm(self.limits.header_read);
            }
            Phase::Head | Phase::Busy => {}
        }
        if self.phase != Phase::Head {
            return;
        }
        // The head ends at its first empty line. A line ends with "\r\n"
        // or, as hyper's parser also reads it, a bare "\n": so at a line
        // feed right after a line feed, or after "\n\r". Look only where
        // a line ends (memchr; a head has a dozen), with the last bytes of
        // the previous read before this one's first.
        let tail = self.tail;
        let before = |i: usize, back: usize| match i.checked_sub(back) {
            Some(j) => bytes[j],
            None => tail[2 + i - back],
        };
        if memchr::memchr_iter(b'\n', bytes).any(|i| match before(i, 1) {
            b'\n' => true,
            b'\r' => before(i, 2) == b'\n',
            _ => false,
        }) {
            self.phase = Phase::Busy;
            return;
        }
        let n = bytes.len();
        self.tail = [before(n, 2), before(n, 1)];
    }

    fn on_write(&mut self) {
        if self.phase == Phase::Head {
            return;
        }
        let reader = if self.phase == Phase::Busy {
            self.phase = Phase::Idle;
            self.parked_reader.take()
        } else {
            None
        };
        self.arm(self.limits.idle);
        // The reader parked while busy, without a deadline: put the idle
        // one on its waker. Waking it instead would poll the connection's
        // task once more per request; it is woken only if that deadline
        // has already passed.
        if let Some(reader) = reader
            && self
                .deadline
                .as_mut()
                .poll(&mut Context::from_waker(&reader))
                .is_ready()
        {
            reader.wake();
        }
    }

    /// The deadline of the current phase has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.phase != Phase::Busy && self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn timed_out(phase: Phase) -> io::Error {
    let what = match phase {
        Phase::Head => "request head not received in time (HTTP_HEADER_READ_TIMEOUT_MS)",
        _ => "connection idle too long (HTTP_IDLE_TIMEOUT_MS)",
    };
    io::Error::new(io::ErrorKind::TimedOut, what)
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.on_read(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => {
                let phase = self.phase;
                if phase == Phase::Head {
                    metrics::counter!("http_slow_clients_cut_total", "phase" => "header")
                        .increment(1);
                }
                Poll::Ready(Err(timed_out(phase)))
            }
            Poll::Pending => {
                if self.phase == Phase::Busy {
                    self.parked_reader = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.on_write();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.on_write();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guarded<()> {
        Guarded {
            io: (),
            limits: ConnLimits {
                header_read: Duration::from_secs(5),
                idle: Duration::from_secs(60),
            },
            phase: Phase::Head,
            tail: [0; 2],
            seen: 0,
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(5))),
            parked_reader: None,
        }
    }

    #[tokio::test]
    async fn the_head_ends_at_the_blank_line_even_across_reads() {
        let mut g = guard();
        g.on_read(b"POST / HTTP/1.1\r\nHost: x\r");
        assert_eq!(g.phase, Phase::Head);
        g.on_read(b"\n\r");
        assert_eq!(g.phase, Phase::Head);
        g.on_read(b"\n{\"a\":1}");
        assert_eq!(g.phase, Phase::Busy);
        g.on_write();
        assert_eq!(g.phase, Phase::Idle);
        g.on_read(b"GET");
        assert_eq!(g.phase, Phase::Head, "the next request starts a new head");
    }

    /// Feeds `request` in reads cut at `cuts` and returns after how many
    /// bytes the head was seen to end.
    fn head_end(request: &[u8], cuts: &[usize]) -> Option<usize> {
        let mut g = guard();
        let mut from = 0;
        for &to in cuts.iter().chain([&request.len()]) {
            g.on_read(&request[from..to]);
            if g.phase == Phase::Busy {
                return Some(to);
            }
            from = to;
        }
        None
    }

    #[tokio::test]
    async fn the_head_ends_at_its_blank_line_wherever_the_reads_cut_it() {
        let request = b"POST /api/orders HTTP/1.1\r\nHost: x\r\n\r\n{\"a\":\"\\r\\n\\r\\n\"}";
        let end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        // The read that brings the head's last byte is the one that ends it.
        let first_read_past = |cuts: &[usize]| {
            cuts.iter()
                .copied()
                .find(|&c| c >= end)
                .unwrap_or(request.len())
        };
        for a in 0..=request.len() {
            for b in a..=request.len() {
                let cuts = [a, b];
                assert_eq!(
                    head_end(request, &cuts),
                    Some(first_read_past(&cuts)),
                    "cut at {cuts:?}"
                );
            }
        }
        let bytes: Vec<usize> = (1..request.len()).collect();
        assert_eq!(head_end(request, &bytes), Some(end), "a byte at a time");
        // Line ends that do not make an empty line do not end it.
        for head in [
            &b"GET / HTTP/1.1\r\nA: b\r\n\r"[..],
            b"GET / HTTP/1.1\r\nA: \r\r\n",
            b"GET / HTTP/1.1\r\nA: \rb\r\n",
            b"GET / HTTP/1.1\r\nA\nB: c\r\n",
        ] {
            for cut in 0..=head.len() {
                assert_eq!(head_end(head, &[cut]), None, "{head:?} cut at {cut}");
            }
        }
        // Bare line feeds end lines too, as hyper reads a head.
        for head in [
            &b"GET / HTTP/1.1\nHost: x\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\n\r\n",
            b"GET / HTTP/1.1\nHost: x\r\n\n",
        ] {
            for cut in 0..=head.len() {
                let end = head_end(head, &[cut]);
                assert_eq!(end, Some(head.len()), "{head:?} cut at {cut}");
            }
        }
    }

    #[tokio::test]
    async fn http2_prior_knowledge_is_only_idle_timed() {
        let mut g = guard();
        g.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(g.phase, Phase::Http2);
        g.on_write();
        g.on_read(b"\x00\x00");
        assert_eq!(g.phase, Phase::Http2);
    }
}
