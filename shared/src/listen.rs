//! Binding the HTTP port of a binary: one helper for the api (3003) and the
//! relay's health and metrics port (3004).

use poem::listener::TcpAcceptor;

/// The port cannot be bound; names the variables that set it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({vars}): {source}")]
pub struct BindError {
    addr: String,
    vars: &'static str,
    #[source]
    source: std::io::Error,
}

/// Binds `host:port` (port 0: any free port) and returns the acceptor and
/// the port it got. `vars` names the settings, e.g. `API_HOST/API_PORT`.
pub async fn bind(
    host: &str,
    port: u16,
    vars: &'static str,
) -> Result<(TcpAcceptor, u16), BindError> {
    let addr = format!("{host}:{port}");
    let fail = |source| BindError {
        addr: addr.clone(),
        vars,
        source,
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?.port();
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(fail)?;
    Ok((acceptor, bound))
}
