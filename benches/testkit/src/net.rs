//! Loopback ports.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 a moment ago (the OS picks it; a server started next binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a loopback port").port()
}

/// Waits until something accepts connections on `addr`, at most `timeout`. Panics, naming `what`, when
/// `child` exits first or the time runs out.
pub fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before it listened on {addr}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {addr} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
