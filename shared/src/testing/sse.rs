//! A minimal Server-Sent Events client for the integration tests, over a
//! plain TCP connection. It speaks HTTP/1.0, so the server streams the body
//! as is (no chunked encoding) and closes the connection when it ends.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One SSE message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field.
    pub event: Option<String>,
    /// The `id:` field.
    pub id: Option<String>,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

impl SseEvent {
    /// `data` as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_default()
    }
}

/// An open (or refused) stream.
pub struct SseStream {
    reader: BufReader<TcpStream>,
    /// The response status.
    pub status: u16,
    /// The response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Comment lines (heartbeats) seen so far.
    pub comments: usize,
}

impl SseStream {
    /// `GET path` on `addr` (`127.0.0.1:port`) with `headers`; reads the
    /// response head.
    pub async fn connect(
        addr: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        let mut request =
            format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut response = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                response.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        Ok(SseStream {
            reader,
            status,
            headers: response,
            comments: 0,
        })
    }

    /// The value of response header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The rest of the body (for a refused stream's problem document).
    pub async fn body(mut self) -> String {
        let mut body = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut line = String::new();
            while self.reader.read_line(&mut line).await.unwrap_or(0) > 0 {
                body.push_str(&line);
                line.clear();
            }
        })
        .await;
        body
    }

    /// The next message within `wait`; `None` on timeout or when the
    /// stream ended. Comment lines are counted on the way.
    pub async fn next_event(&mut self, wait: Duration) -> Option<SseEvent> {
        tokio::time::timeout(wait, self.read_event())
            .await
            .ok()
            .flatten()
    }

    /// Waits up to `wait` for a comment line (a heartbeat); true if one came.
    pub async fn heartbeat(&mut self, wait: Duration) -> bool {
        let before = self.comments;
        let deadline = tokio::time::Instant::now() + wait;
        while self.comments == before {
            let mut line = String::new();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {
                    if line.starts_with(':') {
                        self.comments += 1;
                    }
                }
                _ => return false,
            }
        }
        true
    }

    /// True if the server ends the stream within `wait`.
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async {
            let mut line = String::new();
            loop {
                line.clear();
                match self.reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    async fn read_event(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent::default();
        let mut has_data = false;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let text = line.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                if has_data {
                    return Some(event);
                }
                continue;
            }
            if text.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = Some(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }
}
