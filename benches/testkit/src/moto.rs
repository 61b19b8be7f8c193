//! moto, the AWS service emulator, as a real HTTP server.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, find_binary, free_port, require, wait_for_port};

/// How to install moto, for the messages of a missing binary.
pub const INSTALL: &str = "pip install 'moto[server]'";

/// A `moto_server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Moto {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`: the SDK's endpoint.
    pub endpoint: String,
}

impl Moto {
    /// Starts moto, or returns `None` (after printing why) when it is not installed and CI is unset.
    pub fn start() -> Option<Moto> {
        if !require("moto_server", INSTALL) {
            return None;
        }
        let binary = find_binary("moto_server")?;
        let dir = tempfile::tempdir().expect("a scratch directory");
        let port = free_port();
        let child = Command::new(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let mut child = ChildGuard(child);
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), &mut child.0, "moto_server", Duration::from_secs(60));
        Some(Moto { _child: child, _dir: dir, endpoint: format!("http://127.0.0.1:{port}") })
    }
}
