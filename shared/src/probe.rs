//! `healthcheck` subcommand support: asks a local health endpoint over plain
//! HTTP/1.0, so container images need no curl.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// True when `GET http://127.0.0.1:{port}{path}` answers 200 within `timeout`.
pub async fn http_ok(port: u16, path: &str, timeout: Duration) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0_u8; 32];
        let n = stream.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        Some(line.starts_with("HTTP/1.0 200") || line.starts_with("HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}
