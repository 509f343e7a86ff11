//! A PostgreSQL server started by a test: `initdb` and `pg_ctl` on a free loopback port in a
//! temporary directory, stopped on drop.

use std::path::PathBuf;
use std::process::Command;

/// A PostgreSQL server in a temporary directory on a free loopback port, stopped on drop.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

pub const PG_ADMIN_PASS: &str = "admin-pass-for-tests";

impl Postgres {
    pub fn bin_dir() -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .filter(|p| p.join("initdb").exists())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
            .pop()
            .expect("PostgreSQL server binaries (Debian package postgresql; .ci/run installs it)")
    }

    pub fn cmd(&self, program: &str) -> Command {
        // initdb and postgres refuse to run as root: use the postgres account then.
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        }
    }

    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = nix_is_root();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            bin: Self::bin_dir(),
            dir,
            port,
            as_postgres,
        };
        let pwfile = pg.dir.path().join("pw");
        #[allow(clippy::disallowed_methods)] // the test server's own password file
        std::fs::write(&pwfile, PG_ADMIN_PASS).unwrap();
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let data = pg.dir.path().join("data");
        let out = pg
            .cmd("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "admin", "--auth=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.run();
        pg
    }

    /// A streaming-replication standby of this server on a port of its own, cloned with
    /// `pg_basebackup` and started; it calls itself `name` to the primary (for
    /// `synchronous_standby_names`).
    pub fn standby(&self, name: &str) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        if self.as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let standby = Postgres {
            bin: self.bin.clone(),
            dir,
            port,
            as_postgres: self.as_postgres,
        };
        let conninfo = format!(
            "host=127.0.0.1 port={} user=admin password={PG_ADMIN_PASS} application_name={name}",
            self.port
        );
        let out = standby
            .cmd("pg_basebackup")
            .args(["-d", &conninfo, "-X", "stream", "-R", "-D"])
            .arg(standby.dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        standby.run();
        standby
    }

    /// Makes a standby the primary (`pg_ctl promote`), waiting until it is.
    pub fn promote(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-w", "promote"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again, after `stop`) and waits until it accepts connections.
    pub fn run(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &opts, "-w", "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (connections are cut, as when a database host goes away).
    pub fn stop(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The admin's connection string to `db`, password included.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://admin:{PG_ADMIN_PASS}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// One value a query of `db` answers, as psql prints it.
    pub fn scalar(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-d",
                db,
                "-tAc",
                sql,
            ])
            .env("PGPASSWORD", PG_ADMIN_PASS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pg_dump` of `db`: everything the database holds, as text.
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                db,
            ])
            .env("PGPASSWORD", PG_ADMIN_PASS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `user`/`password` can log in over TCP.
    pub fn login(&self, user: &str, password: &str) -> bool {
        Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1",
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn admin_sql(&self, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "admin",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PG_ADMIN_PASS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

pub fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
