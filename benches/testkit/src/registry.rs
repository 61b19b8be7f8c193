//! CNCF distribution (`docker-registry`) as a real OCI registry, and skopeo as the independent client that
//! seeds it and reads it back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, free_port, require, wait_for_port};

/// How to install the registry and its companions, for the messages of a missing binary.
pub const INSTALL: &str = "apt-get install -y docker-registry skopeo apache2-utils";

/// A `docker-registry serve` on 127.0.0.1, with its storage in a scratch directory; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: ChildGuard,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The scratch directory: `storage/`, `config.yml`, `registry.log`.
    pub dir: tempfile::TempDir,
    /// The user and password the registry requires, if it requires one.
    pub credentials: Option<(String, String)>,
}

impl Registry {
    /// Whether `docker-registry` and `skopeo` are installed (see [`crate::require`]).
    pub fn available() -> bool {
        require("docker-registry", INSTALL) & require("skopeo", INSTALL)
    }

    /// A registry without authentication.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// A registry that requires `username` and `password` (htpasswd, bcrypt).
    pub fn start_with_auth(username: &str, password: &str) -> Registry {
        Self::start_with(Some((username.to_owned(), password.to_owned())))
    }

    fn start_with(credentials: Option<(String, String)>) -> Registry {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let mut auth = String::new();
        if let Some((user, password)) = &credentials {
            let htpasswd = dir.path().join("htpasswd");
            let status = Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(&htpasswd)
                .args([user, password])
                .stderr(Stdio::null())
                .status()
                .expect("run htpasswd");
            assert!(status.success(), "htpasswd failed");
            auth = format!("auth:\n  htpasswd:\n    realm: promote-test\n    path: {}\n", htpasswd.display());
        }
        Self::spawn(dir, free_port(), &auth, credentials)
    }

    /// Starts the registry in `dir` on `port` with `auth` (a YAML `auth:` section, or empty). `credentials`
    /// are what the skopeo helpers send.
    pub fn spawn(dir: tempfile::TempDir, port: u16, auth: &str, credentials: Option<(String, String)>) -> Registry {
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("create the registry's storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .expect("write the registry's config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("create the registry's log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("share the log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut child = ChildGuard(child);
        let host = format!("127.0.0.1:{port}");
        let addr = host.parse().expect("a socket address");
        wait_for_port(addr, &mut child.0, "docker-registry", Duration::from_secs(15));
        Registry { child, host, dir, credentials }
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn creds_args(&self, flag: &str) -> Vec<String> {
        match &self.credentials {
            Some((user, password)) => vec![flag.to_owned(), format!("{user}:{password}")],
            None => vec![],
        }
    }

    /// Pushes `oci:layout:tag` to `repo:tag` with skopeo, keeping every digest.
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_as(layout, tag, repo, tag)
    }

    /// Pushes `oci:layout:tag` to `repo:target_tag` with skopeo, keeping every digest.
    pub fn push_as(&self, layout: &Path, tag: &str, repo: &str, target_tag: &str) {
        let mut command = Command::new("skopeo");
        command.args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false"]);
        command.args(self.creds_args("--dest-creds"));
        command.arg(format!("oci:{}:{tag}", layout.display()));
        command.arg(format!("docker://{}/{repo}:{target_tag}", self.host));
        run(command);
    }

    /// `skopeo inspect --raw` of `repo:tag` or `repo@digest`: the exact bytes the registry serves.
    pub fn raw(&self, reference: &str) -> Vec<u8> {
        let mut command = Command::new("skopeo");
        command.args(["inspect", "--raw", "--tls-verify=false"]);
        command.args(self.creds_args("--creds"));
        command.arg(format!("docker://{}/{reference}", self.host));
        run(command)
    }
}

/// Runs `command` to success and returns its stdout; panics with its stderr otherwise.
pub fn run(mut command: Command) -> Vec<u8> {
    let output = command.output().expect("run a command");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// `skopeo inspect --raw oci:DIR:TAG`: the exact bytes of a layout's manifest, read by a third party.
pub fn raw_from_layout(layout: &Path, tag: &str) -> Vec<u8> {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--raw"]).arg(format!("oci:{}:{tag}", layout.display()));
    run(command)
}
