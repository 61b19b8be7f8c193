//! Real git for the git deployer's tests: an isolated git configuration (its own `HOME`, no system config, a
//! test user), bare repositories on disk, and `git daemon` on a loopback port, killed on drop.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use promote_core::deploy::{GitDeployer, GitDeployerBuilder};

/// Whether git can be run. Outside CI a test without it is skipped with a printed reason; under `CI` it fails.
pub(crate) fn available(test: &str) -> bool {
    let found = Command::new("git").arg("version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    match found {
        Ok(status) if status.success() => true,
        _ if std::env::var_os("CI").is_some() => panic!("{test}: git is not installed, and CI is set: failing"),
        _ => {
            eprintln!("skipping {test}: git is not installed (apt-get install -y git)");
            false
        }
    }
}

/// A temporary directory with a git configuration of its own. Every git this test runs, and every git the
/// deployers it builds run, sees only this configuration: never the developer's.
pub(crate) struct GitWorld {
    dir: tempfile::TempDir,
}

impl GitWorld {
    pub(crate) fn new() -> Self {
        let world = GitWorld { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(world.home().join(".config")).unwrap();
        world.git(world.path(), &["config", "--global", "user.name", "Promote Test"]);
        world.git(world.path(), &["config", "--global", "user.email", "test@promote.invalid"]);
        world.git(world.path(), &["config", "--global", "init.defaultBranch", "main"]);
        world
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The variables that isolate git's configuration.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let home = self.home();
        vec![
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", home.join(".config").display().to_string()),
            ("GIT_CONFIG_GLOBAL", home.join(".gitconfig").display().to_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".to_owned()),
        ]
    }

    /// A git command in `dir` under this configuration.
    pub(crate) fn command(&self, dir: &Path) -> Command {
        self.program(Path::new("git"), dir)
    }

    /// `program` (git or one of its own programs) in `dir` under this configuration.
    fn program(&self, program: &Path, dir: &Path) -> Command {
        std::fs::create_dir_all(self.home()).unwrap();
        let mut command = Command::new(program);
        command.current_dir(dir).envs(self.env()).env("LC_ALL", "C").stdin(Stdio::null());
        for variable in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"] {
            command.env_remove(variable);
        }
        command
    }

    /// Runs git in `dir` and returns its standard output; panics when it fails.
    pub(crate) fn git(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.command(dir).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A new bare repository `name` (its `HEAD` on `main`).
    pub(crate) fn bare(&self, name: &str) -> PathBuf {
        let path = self.path().join("served").join(name);
        std::fs::create_dir_all(&path).unwrap();
        self.git(&path, &["init", "--quiet", "--bare", "--initial-branch=main"]);
        path
    }

    /// A deployer builder for `repository` and `branch` with a cache of its own (`cache`) and this
    /// configuration.
    pub(crate) fn deployer(&self, repository: &str, branch: &str, cache: &str) -> GitDeployerBuilder {
        let mut builder = GitDeployer::builder(repository, branch, self.path().join("caches").join(cache));
        for (name, value) in self.env() {
            builder = builder.env(name, value);
        }
        builder
    }

    /// The branch's commits in `repository`, newest first: (id, parents, author name, full message).
    pub(crate) fn log(&self, repository: &Path, branch: &str) -> Vec<Commit> {
        let found = self
            .command(repository)
            .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
            .output()
            .unwrap();
        if !found.status.success() {
            return Vec::new();
        }
        let text = self
            .git(repository, &["log", "--format=%H%x00%P%x00%an%x00%ae%x00%B%x1e", &format!("refs/heads/{branch}")]);
        text.split('\x1e')
            .filter(|record| !record.trim().is_empty())
            .map(|record| {
                let mut fields = record.trim_start_matches('\n').splitn(5, '\0');
                Commit {
                    id: fields.next().unwrap().to_owned(),
                    parents: fields.next().unwrap().split_whitespace().map(str::to_owned).collect(),
                    author: fields.next().unwrap().to_owned(),
                    email: fields.next().unwrap().to_owned(),
                    message: fields.next().unwrap().to_owned(),
                }
            })
            .collect()
    }

    /// The files of `rev`'s tree under `path` (all of them for an empty path), relative to it, sorted.
    pub(crate) fn files(&self, repository: &Path, rev: &str, path: &str) -> Vec<String> {
        let mut args = vec!["ls-tree", "-r", "--name-only", rev];
        if !path.is_empty() {
            args.extend(["--", path]);
        }
        let mut files: Vec<String> = self
            .git(repository, &args)
            .lines()
            .map(|line| line.strip_prefix(&format!("{path}/")).unwrap_or(line).to_owned())
            .collect();
        files.sort();
        files
    }

    /// A file's content at `rev`.
    pub(crate) fn show(&self, repository: &Path, rev: &str, file: &str) -> String {
        self.git(repository, &["show", &format!("{rev}:{file}")])
    }

    /// The id of the tree at `rev:path`.
    pub(crate) fn tree(&self, repository: &Path, rev: &str, path: &str) -> String {
        self.git(repository, &["rev-parse", &format!("{rev}:{path}")]).trim().to_owned()
    }

    /// Writes an executable hook `name` into the repository at `git_dir`.
    pub(crate) fn hook(&self, git_dir: &Path, name: &str, script: &str) {
        let hooks = git_dir.join("hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        let path = hooks.join(name);
        std::fs::write(&path, script).unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }

    /// The working clone a deployer keeps under `caches/<cache>` (there is one per repository).
    pub(crate) fn cache_clone(&self, cache: &str) -> PathBuf {
        let dir = self.path().join("caches").join(cache);
        let clones: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join(".git").is_dir())
            .collect();
        assert_eq!(clones.len(), 1, "one clone per repository in {}", dir.display());
        clones.into_iter().next().unwrap()
    }

    /// `git daemon` serving every repository under `served/`, pushes allowed, on a free loopback port.
    pub(crate) fn daemon(&self) -> Daemon {
        let base = self.path().join("served");
        std::fs::create_dir_all(&base).unwrap();
        let port = free_port();
        // The daemon itself, not `git daemon`: git would run it as a child, which killing git leaves behind.
        let program = Path::new(self.git(&base, &["--exec-path"]).trim()).join("git-daemon");
        let child = self
            .program(&program, &base)
            .args([
                "--reuseaddr",
                &format!("--base-path={}", base.display()),
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, port };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("git daemon did not listen on 127.0.0.1:{port} within 5 s");
    }
}

/// One commit of a branch.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub id: String,
    pub parents: Vec<String>,
    pub author: String,
    pub email: String,
    pub message: String,
}

impl Commit {
    /// The values of trailer `key`.
    pub(crate) fn trailer(&self, key: &str) -> Vec<String> {
        self.message.lines().filter_map(|line| line.strip_prefix(&format!("{key}: "))).map(str::to_owned).collect()
    }
}

/// A running `git daemon`, killed on drop.
pub(crate) struct Daemon {
    child: Child,
    pub port: u16,
}

impl Daemon {
    /// The `git://` URL of a repository under `served/`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) use promote_testkit::free_port;
