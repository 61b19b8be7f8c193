//! The third-party sigstore toolchain of this directory, driven from Rust tests: the loopback mock
//! Fulcio/Rekor/TSA, the sigstore-js and sigstore-python signers, `@sigstore/oci` attach, and the two judges.
//! Installed by `scripts/sigstore-fixtures.sh`; a test skips with the reason when it is missing, and fails
//! when `CI` is set.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The directory of the tools.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigstore")
}

/// Whether the toolchain is installed; outside CI a missing part skips the test with a printed reason.
pub fn available() -> bool {
    let mut missing = Vec::new();
    for binary in ["node", "docker-registry", "skopeo"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {binary}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("`{binary}`"));
        }
    }
    if !dir().join("node_modules/@sigstore/verify").is_dir() {
        missing.push("tests/sigstore/node_modules".into());
    }
    if !python().is_file() {
        missing.push("tests/sigstore/.venv".into());
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{} missing: run scripts/sigstore-fixtures.sh", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    false
}

/// The venv's Python.
pub fn python() -> PathBuf {
    dir().join(".venv/bin/python")
}

/// Runs `program args…` and parses its one JSON line; panics with its stderr when it fails.
pub fn json_of(mut command: Command) -> Value {
    let output = command.output().expect("run a sigstore tool");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `node <dir>/<script> args…`.
pub fn node(script: &str, args: &[&str]) -> Value {
    let mut command = Command::new("node");
    command.arg(dir().join(script)).args(args);
    json_of(command)
}

/// `<venv python> <dir>/<script> args…`.
pub fn py(script: &str, args: &[&str]) -> Value {
    let mut command = Command::new(python());
    command.arg(dir().join(script)).args(args);
    json_of(command)
}

/// The mock Fulcio + Rekor + TSA on 127.0.0.1, killed on drop (and stopped when its stdin closes).
pub struct Mock {
    child: Child,
    _stdin: ChildStdin,
    pub info: Value,
    pub dir: tempfile::TempDir,
}

impl Mock {
    pub fn start() -> Mock {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("node")
            .arg(self::dir().join("mock-sigstore.mjs"))
            .arg("--dir")
            .arg(dir.path())
            .arg("--watch-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the mock sigstore services");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = match receiver.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the mock sigstore services did not start within 60 s");
            }
        };
        let info: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        Mock { child, _stdin: stdin, info, dir }
    }

    pub fn url(&self) -> &str {
        self.info["url"].as_str().unwrap()
    }

    pub fn trusted_root(&self) -> PathBuf {
        PathBuf::from(self.info["trusted_root"].as_str().unwrap())
    }

    pub fn trust_config(&self) -> PathBuf {
        PathBuf::from(self.info["trust_config"].as_str().unwrap())
    }

    /// An unrelated trust root with fresh keys (the "another trust root" case).
    pub fn other_root(&self) -> PathBuf {
        let out = self.dir.path().join("other-root");
        let info = node("mock-sigstore.mjs", &["--root-only", "--dir", out.to_str().unwrap()]);
        PathBuf::from(info["trusted_root"].as_str().unwrap())
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A P-256 key pair written with node's crypto: `(private PKCS#8 PEM path, public SPKI PEM path)`.
pub fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let base = dir.join(name);
    let status = Command::new("node")
        .arg("-e")
        .arg(
            r#"const c = require("crypto"); const fs = require("fs");
               const { privateKey, publicKey } = c.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
               fs.writeFileSync(process.argv[1] + ".pem", privateKey.export({ format: "pem", type: "pkcs8" }));
               fs.writeFileSync(process.argv[1] + ".pub", publicKey.export({ format: "pem", type: "spki" }));"#,
        )
        .arg(&base)
        .status()
        .unwrap();
    assert!(status.success());
    (base.with_extension("pem"), base.with_extension("pub"))
}

/// Runs one judge over many cases in one process (`--batch`): one verdict per case, `true` = valid.
pub fn judge_batch(judge: Judge, cases: &[Vec<String>]) -> Vec<Value> {
    let mut command = match judge {
        Judge::SigstoreJs => {
            let mut c = Command::new("node");
            c.arg(dir().join("verify.mjs"));
            c
        }
        Judge::SigstorePython => {
            let mut c = Command::new(python());
            c.arg(dir().join("verify_py.py"));
            c
        }
    };
    let mut child = command
        .arg("--batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start a judge");
    {
        let mut stdin = child.stdin.take().unwrap();
        for case in cases {
            writeln!(stdin, "{}", serde_json::to_string(case).unwrap()).unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    let verdicts: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "{judge:?} answered every case");
    verdicts
}

/// The independent verifiers.
#[derive(Debug, Clone, Copy)]
pub enum Judge {
    /// `@sigstore/verify` (verify.mjs).
    SigstoreJs,
    /// sigstore-python / securesystemslib (verify_py.py).
    SigstorePython,
}
