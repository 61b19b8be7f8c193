//! Child processes that cannot outlive their test.

use std::process::Child;

/// A child process, killed and reaped when the guard drops (also when the test panics).
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
