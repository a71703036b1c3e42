//! A relay run as a process with its JSON log in a file, for tests that
//! read what it logs.

use std::collections::HashMap;
use std::path::PathBuf;

/// Starts `order-relay serve` with `env`, `RUST_LOG=info` and JSON logs
/// written to a file named after its `RELAY_INSTANCE_ID`; returns the
/// process and the file.
pub fn spawn_logged_relay(env: &HashMap<String, String>) -> (tokio::process::Child, PathBuf) {
    let path = std::env::temp_dir().join(format!("{}.log", env["RELAY_INSTANCE_ID"]));
    let log = std::fs::File::create(&path).expect("relay log file");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-relay"))
        .arg("serve")
        .envs(env)
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json")
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start order-relay");
    (child, path)
}
