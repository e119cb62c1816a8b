#![allow(dead_code)]
//! A throwaway PostgreSQL cluster for tests and benchmarks: initialised in a temporary folder, run on a
//! free port as the `postgres` user (the tests run as root, which PostgreSQL refuses), stopped and
//! removed when dropped. Needs the Debian packages (`apt-get install -y postgresql`): without them,
//! [`Cluster::start`] says why and returns `None`, and the tests that need one skip.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running (or stopped, between [`Cluster::stop`] and [`Cluster::start_again`]) cluster.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
pub fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Cluster {
    /// Start a cluster, or say why there is none (no PostgreSQL installed, no `postgres` user) and
    /// return `None`. A PostgreSQL that is installed but does not start is an error.
    pub fn start() -> Result<Option<Cluster>> {
        let Some(bin) = binaries() else {
            eprintln!("skipped: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; `apt-get install -y postgresql`)");
            return Ok(None);
        };
        let Some((uid, gid)) = postgres_user() else {
            eprintln!("skipped: there is no `postgres` user to run PostgreSQL as");
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("cinevec-pg-").tempdir()?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        let data = dir.path().join("data");
        run(
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(bin.join("initdb")).args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]),
            "initdb",
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cluster = Cluster { bin, dir, port };
        cluster.start_again()?;
        Ok(Some(cluster))
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl")).arg("-D").arg(self.data());
        cmd.args(args);
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder holding the data directory and the server's log.
    pub fn folder(&self) -> &Path {
        self.dir.path()
    }

    /// Start the (stopped) server and wait until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        run(&mut self.pg_ctl(&["-o", &options, "-l", log.to_str().unwrap(), "-w", "-t", "60", "start"]), "pg_ctl start")
    }

    /// Stop the server (fast: open connections are closed), and wait until it has.
    pub fn stop(&self) -> Result<()> {
        run(&mut self.pg_ctl(&["-m", "fast", "-w", "-t", "60", "stop"]), "pg_ctl stop")
    }

    /// The pids of the server's processes: the postmaster (the first line of `postmaster.pid`) and
    /// every process whose parent it is (backends, checkpointer, WAL writer, ...).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let file = std::fs::read_to_string(self.data().join("postmaster.pid")).context("no postmaster.pid")?;
        let postmaster: i32 = file.lines().next().unwrap_or("").trim().parse().context("a bad postmaster.pid")?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc")?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid ...`: the command may hold spaces and parentheses, so after the last ')'.
            let Some(after) = stat.rfind(')').map(|at| &stat[at + 1..]) else { continue };
            if after.split_whitespace().nth(1).and_then(|p| p.parse::<i32>().ok()) == Some(postmaster) {
                pids.push(pid);
            }
        }
        Ok(pids)
    }

    /// Send `signal` to every process of the server (see [`Cluster::pids`]); how many.
    fn signal_all(&self, signal: i32) -> Result<usize> {
        let pids = self.pids()?;
        for &pid in &pids {
            // SAFETY: kill(2) with a pid this cluster started; no memory is involved.
            if unsafe { libc::kill(pid, signal) } != 0 {
                bail!("kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
            }
        }
        Ok(pids.len())
    }

    /// Pause every process of the server (SIGSTOP): a hung store, not a dead one. Connections stay
    /// open and new ones are accepted by the kernel, but nothing answers until [`Cluster::resume`].
    pub fn pause(&self) -> Result<usize> {
        self.signal_all(libc::SIGSTOP)
    }

    /// Let the paused server run again (SIGCONT).
    pub fn resume(&self) -> Result<usize> {
        self.signal_all(libc::SIGCONT)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` (the `postgres` superuser; no password: local trust).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create database `name` and return its URL.
    pub fn create_db(&self, name: &str) -> Result<String> {
        run(
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(self.bin.join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ]),
            "createdb",
        )?;
        Ok(self.url(name))
    }
}

/// One cluster for a whole test binary (its tests each create their own database in it), stopped and
/// removed when the binary exits (a static is never dropped: an exit handler does it).
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: std::sync::OnceLock<Option<Cluster>> = std::sync::OnceLock::new();
    extern "C" fn stop_shared() {
        if let Some(Some(cluster)) = SHARED.get() {
            cluster.stop_now();
            let _ = std::fs::remove_dir_all(cluster.folder());
        }
    }
    SHARED
        .get_or_init(|| {
            let cluster = Cluster::start().expect("PostgreSQL is installed but did not start");
            if cluster.is_some() {
                // SAFETY: registers a plain function to run at exit; it only runs pg_ctl and removes files.
                unsafe { libc::atexit(stop_shared) };
            }
            cluster
        })
        .as_ref()
}

impl Cluster {
    /// Stop at once (nothing in a throwaway cluster needs a clean shutdown).
    fn stop_now(&self) {
        // A paused server would not stop.
        let _ = self.resume();
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg("postgres").output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}
