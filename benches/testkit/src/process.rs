//! Child processes that cannot outlive their test, and test binaries that are their own children.
//!
//! A multi-process test (`harness = false` in its `[[test]]`) runs its binary again as a child of itself:
//! [`self_command`] sets a mode variable the child finds with [`child_mode`]; the parent collects each child's
//! end with [`output`] or, for children that run side by side, [`Spawned`]; [`aborted`] tells a process that
//! died by `std::process::abort` from one that failed. [`harness_less`] answers what `cargo test` asks of
//! such a binary (`--list`, filters) as libtest would.

use std::ffi::OsStr;
use std::io::Read as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process, killed and reaped when the guard drops (also when the test panics).
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mode this test binary runs in as a child of itself: the value of `var`, which [`self_command`] sets.
/// `None` in the parent.
pub fn child_mode(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// The running test binary as a command, to run again as a child in the mode `var` = `value`.
pub fn self_command(var: &str, value: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.env(var, value);
    command
}

/// Runs `command` to its end: its exit status, stdout and stderr.
pub fn output(command: &mut Command) -> (ExitStatus, String, String) {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (out.status, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Whether a process died by `std::process::abort` (`SIGABRT`), not by failing or by another signal.
#[cfg(unix)]
pub fn aborted(status: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.signal() == Some(6)
}

/// Whether a process died by `std::process::abort` (elsewhere: whether it failed at all).
#[cfg(not(unix))]
pub fn aborted(status: ExitStatus) -> bool {
    !status.success()
}

/// A child running beside others, its stdout and stderr read on a thread of their own (so that no pipe
/// fills up and blocks it), killed when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: ChildGuard,
    reader: Option<JoinHandle<(String, String)>>,
}

impl Spawned {
    /// Starts `command` with its stdout and stderr captured.
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?}: {e}"));
        let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let reader = std::thread::spawn(move || {
            let (mut out, mut err) = (String::new(), String::new());
            let _ = stdout.read_to_string(&mut out);
            let _ = stderr.read_to_string(&mut err);
            (out, err)
        });
        Spawned { child: ChildGuard(child), reader: Some(reader) }
    }

    /// Waits for its end, until `deadline` at most (then it is killed and this panics, naming `what`), and
    /// returns its exit status, stdout and stderr.
    pub fn wait(mut self, deadline: Instant, what: &str) -> (ExitStatus, String, String) {
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("the child's status") {
                break status;
            }
            assert!(Instant::now() < deadline, "{what} did not end in time");
            std::thread::sleep(Duration::from_millis(20));
        };
        let (out, err) = self.reader.take().expect("read once").join().expect("the output reader");
        (status, out, err)
    }
}

/// For a harness-less test binary named `name`: answers libtest's `--list`, and a run that filters the test
/// out (a filter it does not match, `--exact` and not equal, a `--skip` it matches, `--ignored`: it is not
/// an ignored test), printing what libtest would. Returns whether the test is to run.
pub fn harness_less(name: &str) -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--list") {
        println!("{name}: test");
        return false;
    }
    if skipped(&args, name) {
        println!("\ntest result: ok. 0 passed; 0 failed; 1 filtered out");
        return false;
    }
    true
}

fn skipped(args: &[String], name: &str) -> bool {
    const WITH_VALUE: [&str; 7] =
        ["--test-threads", "--skip", "--format", "--color", "--logfile", "--shuffle-seed", "-Z"];
    let exact = args.iter().any(|arg| arg == "--exact");
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--skip" {
            skips.extend(rest.next());
        } else if WITH_VALUE.contains(&arg.as_str()) {
            rest.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    let matches = |pattern: &String| if exact { name == pattern } else { name.contains(pattern.as_str()) };
    (!filters.is_empty() && !filters.iter().any(|f| matches(f)))
        || skips.iter().any(|s| name.contains(s.as_str()))
        || args.iter().any(|arg| arg == "--ignored")
}
