//! A throw-away PostgreSQL cluster for tests (BuildGrid's scheduler needs one): Debian's
//! `postgresql` binaries, a cluster initialised in a temporary directory, listening on
//! 127.0.0.1 on a free port with its socket in that directory, stopped and removed on drop.
//!
//! Included by test crates with `#[path = ".../test-support/postgres.rs"] mod postgres;`.
//! As root (CI), the cluster runs as the `postgres` user, since `initdb` refuses root.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    detached: bool,
}

/// The directory holding `initdb` and `pg_ctl` (the newest installed version), if any.
pub fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl TempPostgres {
    /// Initialises and starts a cluster with a database `db`; panics with the tools' output
    /// when it cannot.
    pub fn start(bin: &Path, db: &str) -> TempPostgres {
        let dir = tempfile::Builder::new()
            .prefix("xbundle-pg-")
            .tempdir()
            .expect("a temporary directory");
        let as_postgres = is_root();
        if as_postgres {
            chown_postgres(dir.path());
        }
        let postgres = TempPostgres {
            port: free_port(),
            bin: bin.to_path_buf(),
            dir,
            as_postgres,
            detached: false,
        };
        let data = postgres.data();
        postgres.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "-D",
                data.to_str().unwrap(),
            ],
        );
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
            postgres.port,
            postgres.dir.path().display()
        );
        let log = postgres.dir.path().join("server.log");
        postgres.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        postgres.run(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &postgres.port.to_string(),
                "-U",
                "postgres",
                db,
            ],
        );
        postgres
    }

    /// A connection string for SQLAlchemy's psycopg2 driver (BuildGrid's).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql+psycopg2://postgres@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Gives up stopping the cluster on drop: returns a shell line that stops it and removes
    /// its directory, for a supervisor that outlives a `static` (statics are never dropped).
    pub fn detach(mut self) -> String {
        let data = self.data();
        let stop = format!(
            "{} -D {} -m immediate stop >/dev/null 2>&1",
            shell_quote(self.bin.join("pg_ctl").to_str().unwrap()),
            shell_quote(data.to_str().unwrap())
        );
        let stop = if self.as_postgres {
            format!("su postgres -s /bin/sh -c {}", shell_quote(&stop))
        } else {
            stop
        };
        // The cluster's directory outlives this value; an empty stand-in is removed instead.
        let dir = std::mem::replace(
            &mut self.dir,
            tempfile::tempdir().expect("a temporary directory"),
        )
        .keep();
        self.detached = true;
        format!("{stop}; rm -rf -- {}", shell_quote(dir.to_str().unwrap()))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let output = if self.as_postgres {
            let mut line = shell_quote(program.to_str().unwrap());
            for arg in args {
                line.push(' ');
                line.push_str(&shell_quote(arg));
            }
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .current_dir(self.dir.path())
                .output()
        } else {
            Command::new(&program)
                .args(args)
                .current_dir(self.dir.path())
                .output()
        }
        .unwrap_or_else(|err| panic!("running {}: {err}", program.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed ({}):\n{}{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default(),
        );
        output
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            let mut line = shell_quote(program.to_str().unwrap());
            for arg in args {
                line.push(' ');
                line.push_str(&shell_quote(arg));
            }
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

fn chown_postgres(dir: &Path) {
    let status = Command::new("chown")
        .args(["postgres:postgres", dir.to_str().unwrap()])
        .status()
        .expect("chown");
    assert!(status.success(), "chown postgres {}", dir.display());
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
