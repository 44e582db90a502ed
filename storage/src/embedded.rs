//! A private PostgreSQL cluster owned by a Palisade data directory.
//!
//! Used when no database URL is configured. The cluster:
//! * lives in `<data-dir>/postgres` (or, when the `postgres` OS user cannot reach the
//!   data dir, in `/var/lib/palisade/clusters/<hash>`; the chosen path is reported);
//! * listens only on a Unix socket in a private (0700) directory, never on TCP;
//! * is initialised on first use with the machine's PostgreSQL server binaries;
//! * runs as the `postgres` OS user when Palisade runs as root (Postgres refuses root);
//! * is started in its own process group so a terminal's Ctrl-C reaches Palisade,
//!   which then stops the cluster cleanly after its own shutdown;
//! * survives a kill -9 of Palisade: the next start finds the orphaned postmaster,
//!   stops it and starts it again (Postgres' crash recovery does the rest).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sqlx::postgres::PgConnectOptions;

use crate::{Result, StorageError};

const DATABASE: &str = "palisade";
const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;
const FALLBACK_ROOT: &str = "/var/lib/palisade/clusters";

/// A running (or startable) private cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    /// The cluster directory (holds `data/`, `server.log`).
    pub cluster_dir: PathBuf,
    socket_dir: PathBuf,
    /// Some((uid, gid)) when commands must run as the `postgres` OS user.
    run_as: Option<(u32, u32)>,
    /// Why the cluster is not under the data dir, if it is not.
    pub relocated_reason: Option<String>,
}

fn invalid(msg: impl Into<String>) -> StorageError {
    StorageError::Internal(msg.into())
}

/// Find the PostgreSQL server binaries: `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).ok_or_else(|| {
        invalid(
            "no PostgreSQL server binaries found (looked at `pg_config --bindir` and \
             /usr/lib/postgresql/*/bin). Install them, e.g. `apt-get install postgresql` \
             on Debian/Ubuntu or `dnf install postgresql-server` on Fedora/RHEL, or pass \
             --database-url to use an existing server",
        )
    })
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut parts = line.split(':');
        (parts.next()? == name).then_some(())?;
        let _password = parts.next()?;
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn is_root() -> bool {
    effective_uid() == 0
}

/// The effective uid, read from `/proc/self/status` so no unsafe libc call is needed
/// (the workspace forbids unsafe code).
fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn short_hash(path: &Path) -> String {
    // FNV-1a: stable across releases, enough to tell data dirs apart.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

impl EmbeddedPostgres {
    /// Choose the cluster location for `data_dir` and find binaries. Does not start
    /// anything.
    pub fn for_data_dir(data_dir: &Path) -> Result<EmbeddedPostgres> {
        let bin_dir = find_bin_dir()?;
        fs::create_dir_all(data_dir)?;
        let data_dir = data_dir.canonicalize()?;
        let run_as = if is_root() {
            Some(lookup_user(SUPERUSER).ok_or_else(|| {
                invalid(
                    "running as root, but there is no `postgres` OS user to run the embedded \
                     PostgreSQL as (PostgreSQL refuses to run as root); install the postgresql \
                     package or pass --database-url",
                )
            })?)
        } else {
            None
        };

        let preferred = data_dir.join("postgres");
        let (cluster_dir, relocated_reason) = match run_as {
            Some(_) if !postgres_user_can_reach(&data_dir) => {
                let dir = PathBuf::from(FALLBACK_ROOT).join(short_hash(&data_dir));
                let reason = format!(
                    "the postgres OS user cannot reach {} (a parent directory is private); \
                     the embedded cluster lives in {} instead",
                    data_dir.display(),
                    dir.display()
                );
                (dir, Some(reason))
            }
            _ => (preferred, None),
        };

        // Unix socket paths are limited to ~107 bytes; fall back to a short private
        // directory under /tmp when the cluster path is long.
        let in_cluster = cluster_dir.join("run");
        let socket_dir = if in_cluster.as_os_str().len() + "/.s.PGSQL.5432".len() < 100 {
            in_cluster
        } else {
            // Unpredictable and created exclusively (see `private_dir`): a name another
            // local user could guess would let them plant a symlink there first.
            PathBuf::from(format!(
                "/tmp/palisade-pg-{}-{}",
                short_hash(&cluster_dir),
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ))
        };

        Ok(EmbeddedPostgres {
            bin_dir,
            cluster_dir,
            socket_dir,
            run_as,
            relocated_reason,
        })
    }

    fn pgdata(&self) -> PathBuf {
        self.cluster_dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", &self.cluster_dir);
        }
        cmd.env_remove("PGDATA");
        cmd.current_dir(&self.cluster_dir);
        cmd
    }

    /// Make `dir` exist, owned by the cluster's OS user, mode 0700.
    ///
    /// Never through a link: an existing path must be a real directory (not a
    /// symlink), a new one is created with mode 0700 from the start, and ownership
    /// is changed with `lchown`, so nothing planted at the path is followed.
    fn private_dir(&self, dir: &Path) -> Result<()> {
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent)?;
        }
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err.into()),
        }
        let meta = fs::symlink_metadata(dir)?;
        if !meta.file_type().is_dir() {
            return Err(invalid(format!(
                "{} is not a directory (a symlink?); refusing to use it",
                dir.display()
            )));
        }
        if let Some((uid, gid)) = self.run_as {
            if meta.uid() != uid {
                std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
            }
        } else if meta.uid() != effective_uid() {
            return Err(invalid(format!(
                "{} belongs to another user; refusing to use it",
                dir.display()
            )));
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(())
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output> {
        let output = cmd
            .output()
            .map_err(|err| invalid(format!("{what}: could not run: {err}")))?;
        if !output.status.success() {
            return Err(invalid(format!(
                "{what} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            )));
        }
        Ok(output)
    }

    /// Initialise the cluster if needed and start it. Returns connection options.
    pub fn start(&self) -> Result<PgConnectOptions> {
        if self.relocated_reason.is_some() {
            // Root-owned and traversable (the process umask is 077): /var/lib/palisade
            // and its clusters/ folder; each cluster below is private to postgres.
            let root = Path::new(FALLBACK_ROOT);
            fs::create_dir_all(root)?;
            for dir in [root.parent().unwrap_or(root), root] {
                let meta = fs::symlink_metadata(dir)?;
                if !meta.file_type().is_dir() || meta.uid() != effective_uid() {
                    return Err(invalid(format!(
                        "{} must be a directory owned by this user, not a link",
                        dir.display()
                    )));
                }
                fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
            }
        }
        self.private_dir(&self.cluster_dir)?;
        self.private_dir(&self.socket_dir)?;

        if !self.pgdata().join("PG_VERSION").is_file() {
            let mut initdb = self.command("initdb");
            initdb
                .arg("-D")
                .arg(self.pgdata())
                .args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale"])
                .args(["--auth-local=trust", "--auth-host=reject"]);
            self.run(initdb, "initdb")?;
        }

        // A postmaster orphaned by a kill -9 of Palisade is still running: stop it so
        // this start applies our options (crash recovery happens on the next start).
        if self.is_running() {
            self.stop()?;
        }

        let options = format!(
            "-c listen_addresses='' -k {} -p {PORT} -c unix_socket_permissions=0700 \
             -c shared_buffers=256MB -c max_wal_size=2GB -c max_connections=100",
            self.socket_dir.display()
        );
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.pgdata())
            .arg("-l")
            .arg(self.cluster_dir.join("server.log"))
            .args(["-w", "-t", "120", "-o", &options, "start"])
            .process_group(0);
        self.run(pg_ctl, "pg_ctl start")?;
        Ok(self.connect_options(SUPERUSER_DB))
    }

    fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// Options for the Palisade database (after [`Self::ensure_database`]).
    pub fn palisade_options(&self) -> PgConnectOptions {
        self.connect_options(DATABASE)
    }

    /// Create the `palisade` database when missing.
    pub async fn ensure_database(&self) -> Result<()> {
        use sqlx::Connection;
        let mut conn =
            sqlx::PgConnection::connect_with(&self.connect_options(SUPERUSER_DB)).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(DATABASE)
                .fetch_optional(&mut conn)
                .await?;
        if exists.is_none() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
                .execute(&mut conn)
                .await?;
        }
        conn.close().await?;
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        if !self.pgdata().join("PG_VERSION").is_file() {
            return false;
        }
        let mut status = self.command("pg_ctl");
        status.arg("-D").arg(self.pgdata()).arg("status");
        status.output().map(|o| o.status.success()).unwrap_or(false)
    }

    /// Stop the cluster (fast shutdown: disconnect clients, checkpoint, exit).
    pub fn stop(&self) -> Result<()> {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(self.pgdata())
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        self.run(pg_ctl, "pg_ctl stop")?;
        Ok(())
    }
}

const SUPERUSER_DB: &str = "postgres";

/// Whether the `postgres` OS user can traverse to `dir` (every parent executable).
fn postgres_user_can_reach(dir: &Path) -> bool {
    let Some((uid, gid)) = lookup_user(SUPERUSER) else {
        return false;
    };
    Command::new("test")
        .arg("-x")
        .arg(dir)
        .uid(uid)
        .gid(gid)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable() {
        assert_eq!(short_hash(Path::new("/a")), short_hash(Path::new("/a")));
        assert_ne!(short_hash(Path::new("/a")), short_hash(Path::new("/b")));
    }
}
