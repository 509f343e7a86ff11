//! The PostgreSQL backend: the same sealed records as the file, in one PostgreSQL table, for
//! a vault that lives on a database with its own replication and failover (issue #21).
//!
//! PostgreSQL sees what the file shows and nothing more: a table id, a blinded key and a
//! sealed value per record, and the plaintext header (KDF parameters, salt, wrapped keys).
//!
//! The [`Backend`] trait is synchronous (redb is); tokio-postgres is asynchronous. The backend
//! runs its connections on a small runtime of its own and each call waits for its answer on a
//! channel, so it can be called from any thread — the writer thread, or a request handler on
//! the server's runtime — without nesting runtimes.
//!
//! Several nodes at once: each batch takes its turn under a row lock (so batches from all
//! nodes are serialized, each reading the latest commit), and bumps a commit sequence per
//! table, which every node follows (see `follow`). One node leads — runs the once-per-vault
//! work — by holding a session advisory lock; when its session ends, another takes it.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::backend::{Backend, Commits, Mutation, Snapshot, Turn};
use crate::error::StoreError;
use crate::table::Table;

/// The schema, one step per version; a database is brought to the last in one transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE scaivault_records (
             tbl smallint NOT NULL,
             key bytea NOT NULL,
             value bytea NOT NULL,
             PRIMARY KEY (tbl, key)
         )",
    ),
    (
        2,
        // The commit sequence: the one row every batch locks for its turn, and the commit
        // that last changed each table (what other nodes follow).
        "CREATE TABLE scaivault_commits (
             id smallint PRIMARY KEY CHECK (id = 1),
             head bigint NOT NULL
         );
         INSERT INTO scaivault_commits VALUES (1, 0);
         CREATE TABLE scaivault_table_commits (
             tbl smallint PRIMARY KEY,
             seq bigint NOT NULL
         )",
    ),
];

/// The advisory lock the leading node holds (any fixed number: the database is the vault's
/// own); the one above it serializes migrations.
const LEADER_LOCK: i64 = 0x5343_4149_5641_554c; // "SCAIVAUL"

/// How often a node that does not lead tries to (and the leader shows it is alive).
const LEAD_RETRY: Duration = Duration::from_secs(1);

/// How long the leader's session may stay silent before PostgreSQL ends it (and the lead
/// goes to another node). The leader's loops ask at least every two seconds.
const LEADER_SILENCE: Duration = Duration::from_secs(30);

/// The longest a call waits for PostgreSQL (statements time out at 15 s on the server; a
/// connect at 10 s).
const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// A record as a scan returns it: key, value.
type Pair = (Vec<u8>, Vec<u8>);

/// Rows fetched per round trip by scans.
const PAGE: i64 = 1000;

/// Connections for reads and snapshots at most (the writer and the node lock have their own):
/// every request may need one, and PostgreSQL's own limit (100 by default) is shared by every
/// node and client. A call that waits longer than [`CONNECTION_WAIT`] for one answers 503.
const POOL: usize = 16;
const CONNECTION_WAIT: Duration = Duration::from_secs(10);

fn table_id(t: Table) -> i16 {
    t.index() as i16
}

/// A connection failure is the database being unreachable: retryable, and readiness says so.
/// So are the errors of a database that is starting, stopping, failing over, out of
/// connections, or holding a lock or a statement past its timeout: the same request can
/// succeed once it is past (SQLSTATE classes 08, 53, 57; 55P03; 40001 and 40P01).
fn unavailable(e: tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error().filter(|_| !e.is_closed()) else {
        return StoreError::Unavailable(format!("the PostgreSQL server is unreachable: {e}"));
    };
    let code = db.code().code();
    let what = format!("PostgreSQL: {} ({code})", db.message());
    if retryable(code) {
        StoreError::Unavailable(what)
    } else {
        StoreError::Io(what)
    }
}

fn retryable(sqlstate: &str) -> bool {
    ["08", "53", "57"].iter().any(|c| sqlstate.starts_with(c))
        || ["55P03", "40001", "40P01"].contains(&sqlstate)
}

/// Where a vault on PostgreSQL lives, as the operator wrote it, without its password.
pub fn redacted(url: &str) -> String {
    match tokio_postgres::Config::from_str(url) {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .zip(c.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(h, p)| match h {
                    tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                    tokio_postgres::config::Host::Unix(d) => d.display().to_string(),
                })
                .collect();
            format!(
                "postgresql://{}@{}/{}",
                c.get_user().unwrap_or(""),
                hosts.join(","),
                c.get_dbname().unwrap_or("")
            )
        }
        Err(_) => "postgresql://(unparsable)".to_owned(),
    }
}

/// The backend's own runtime, shut down without waiting when the backend goes (it may go on
/// a thread of another runtime, where a blocking shutdown would panic).
struct Rt(Option<tokio::runtime::Runtime>);

impl Rt {
    fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Some(rt) = &self.0 {
            rt.spawn(f);
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on `rt` and waits for it on this thread: callable from any thread, a thread of
/// another runtime included.
fn wait_on<T: Send + 'static>(
    rt: &Rt,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    // Past the statement timeout: the server did not even answer that.
    rx.recv_timeout(CALL_DEADLINE).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {} s",
            CALL_DEADLINE.as_secs()
        )),
        std::sync::mpsc::RecvTimeoutError::Disconnected => {
            StoreError::Unavailable("the PostgreSQL task ended".into())
        }
    })
}

/// A connection and the statements prepared on it. tokio-postgres prepares a statement
/// given as text before every query — a round trip of its own — so each statement is
/// prepared once per connection and kept: a query is then one round trip, and PostgreSQL
/// plans it once.
struct Conn {
    client: Client,
    prepared: std::collections::HashMap<&'static str, Statement>,
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            prepared: Default::default(),
        }
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.query(&s, params).await
    }
}

pub struct PgBackend {
    rt: Rt,
    config: tokio_postgres::Config,
    /// The writer's connection (the pipeline commits one batch at a time).
    writer: Mutex<Option<Conn>>,
    idle: Mutex<Vec<Conn>>,
    /// Pooled connections checked out now (at most [`POOL`]), and their return.
    out: Mutex<usize>,
    returned: std::sync::Condvar,
    /// The session that holds (or tries for) the leader lock, whether it holds it, and when
    /// it last tried. The lock ends with the session: the node gone, or its connection lost.
    leader: Mutex<Leader>,
    /// Set while the database cannot be reached: readiness reports it.
    down: Mutex<Option<String>>,
    /// Calls waited for, and the microseconds spent waiting (metrics).
    calls: std::sync::atomic::AtomicU64,
    call_micros: std::sync::atomic::AtomicU64,
    /// What the next turn reads with its lock.
    warm: Mutex<Warm>,
}

#[derive(Default)]
struct Leader {
    session: Option<Client>,
    leads: bool,
    tried: Option<std::time::Instant>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend").finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Connects and brings the schema up to date. `create` insists on an
    /// empty vault (no records); otherwise the vault must exist.
    pub fn connect(url: &str, create: bool) -> Result<PgBackend, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Refused(format!("not a PostgreSQL connection string: {e}")))?;
        // libpq's convention, so that a password need not be in the connection string (and
        // with it on a command line).
        if config.get_password().is_none()
            && let Some(pw) = std::env::var_os("PGPASSWORD")
        {
            config.password(pw.into_encoded_bytes());
        }
        let rt = Rt(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("scaivault-pg")
                .enable_all()
                .build()
                .map_err(|e| StoreError::Io(e.to_string()))?,
        ));
        let backend = PgBackend {
            rt,
            config,
            writer: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            out: Mutex::new(0),
            returned: std::sync::Condvar::new(),
            leader: Mutex::new(Leader::default()),
            down: Mutex::new(None),
            calls: Default::default(),
            call_micros: Default::default(),
            warm: Default::default(),
        };
        backend.migrate()?;
        let empty = backend.block(|c| async move {
            let r = c
                .client
                .query_opt("SELECT 1 FROM scaivault_records LIMIT 1", &[])
                .await;
            (c, r)
        })?;
        match (create, empty.map_err(unavailable)?.is_none()) {
            (true, false) => Err(StoreError::AlreadyExists(redacted(url))),
            (false, true) => Err(StoreError::NotFound(redacted(url))),
            _ => Ok(backend),
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let config = self.config.clone();
        let at = self.wait(async move {
            let mut c = open(&config).await?;
            let run = async {
                let tx = c.transaction().await?;
                // One node migrates at a time.
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(LEADER_LOCK + 1)])
                    .await?;
                tx.batch_execute(
                    "CREATE TABLE IF NOT EXISTS scaivault_schema (version integer NOT NULL)",
                )
                .await?;
                let at: i32 = tx
                    .query_one("SELECT max(version) FROM scaivault_schema", &[])
                    .await?
                    .get::<_, Option<i32>>(0)
                    .unwrap_or(0);
                for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > at) {
                    tx.batch_execute(sql).await?;
                    tx.execute("INSERT INTO scaivault_schema VALUES ($1)", &[v])
                        .await?;
                }
                tx.commit().await?;
                Ok::<i32, tokio_postgres::Error>(at)
            };
            run.await.map_err(unavailable)
        })??;
        let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        if at > newest {
            // A newer binary's schema: this one does not know what it holds.
            return Err(StoreError::Refused(format!(
                "the database's ScaiVault schema is version {at}; this binary knows versions up to {newest}: use a newer binary"
            )));
        }
        Ok(())
    }

    /// Removes every record (a copy into this database that failed part-way).
    pub fn clear(&self) -> Result<(), StoreError> {
        self.block(|c| async move {
            let r = c.client.batch_execute("TRUNCATE scaivault_records").await;
            (c, r)
        })?
        .map_err(unavailable)
    }

    /// A pooled connection: an idle one, or a new one if none is idle (or the idle one was
    /// lost), once fewer than [`POOL`] are out. Every checkout is matched by a `release`.
    fn checkout(&self) -> Result<Conn, StoreError> {
        {
            let deadline = std::time::Instant::now() + CONNECTION_WAIT;
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            while *out >= POOL {
                let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                    return Err(StoreError::Unavailable(format!(
                        "all {POOL} connections to PostgreSQL are busy"
                    )));
                };
                out = self
                    .returned
                    .wait_timeout(out, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            *out += 1;
        }
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let got = match idle {
            Some(c) if !c.is_closed() => Ok(c),
            _ => {
                let config = self.config.clone();
                self.wait(async move { open(&config).await.map(Conn::new) })
                    .and_then(|r| r)
            }
        };
        if got.is_err() {
            self.release(None);
        }
        got
    }

    /// Gives a checked-out connection back (`None`: it was lost), keeping it if it works.
    fn release(&self, c: Option<Conn>) {
        if let Some(c) = c.filter(|c| !c.is_closed()) {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        *out = out.saturating_sub(1);
        self.returned.notify_one();
    }

    /// Gives the writer's connection back (`None`: it was lost; the next turn opens one).
    fn give_writer(&self, c: Option<Conn>) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = c.filter(|c| !c.is_closed());
    }

    fn wait<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let r = wait_on(&self.rt, f);
        let micros = started.elapsed().as_micros() as u64;
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.call_micros
            .fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Runs `f` with a pooled connection and waits for it.
    fn block<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = (Conn, T)> + Send,
    {
        let client = self.checkout().inspect_err(|e| self.mark_err(e))?;
        let (client, out) = match self.wait(async move { f(client).await }) {
            Ok(done) => done,
            Err(e) => {
                self.release(None);
                return Err(e);
            }
        };
        // A connection that failed during the call was closed by the failure.
        if client.is_closed() {
            self.mark_err(&StoreError::Unavailable(
                "a PostgreSQL connection was lost".into(),
            ));
        }
        self.release(Some(client));
        Ok(out)
    }

    fn mark_err(&self, e: &StoreError) {
        if let StoreError::Unavailable(why) = e {
            *self.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        }
    }

    fn mark(&self, r: &Result<(), StoreError>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        *down = match r {
            Err(StoreError::Unavailable(why)) => Some(why.clone()),
            _ => None,
        };
    }

    /// Every record of `table` with a key after `after` (or from the start), a page at a time,
    /// ascending or (`rev`, keys below `after`) descending.
    fn page(
        &self,
        table: Table,
        after: Option<Vec<u8>>,
        rev: bool,
    ) -> Result<Vec<Pair>, StoreError> {
        let t = table_id(table);
        let sql = match (rev, after.is_some()) {
            (false, false) => {
                "SELECT key, value FROM scaivault_records WHERE tbl = $1 ORDER BY key LIMIT $2"
            }
            (false, true) => {
                "SELECT key, value FROM scaivault_records WHERE tbl = $1 AND key > $3 ORDER BY key LIMIT $2"
            }
            (true, false) => {
                "SELECT key, value FROM scaivault_records WHERE tbl = $1 ORDER BY key DESC LIMIT $2"
            }
            (true, true) => {
                "SELECT key, value FROM scaivault_records WHERE tbl = $1 AND key < $3 ORDER BY key DESC LIMIT $2"
            }
        };
        self.block(move |mut c| async move {
            let rows = match &after {
                Some(k) => c.query(sql, &[&t, &PAGE, k]).await,
                None => c.query(sql, &[&t, &PAGE]).await,
            };
            (c, rows)
        })?
        .map_err(unavailable)
        .and_then(pairs)
    }

    fn walk(
        &self,
        table: Table,
        start: Option<Vec<u8>>,
        rev: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        paged(start, |after| self.page(table, after, rev), visit)
    }
}

/// Visits the records `fetch` returns a page at a time (each page after the last key of the
/// one before) until a short page or `visit` says stop.
fn paged(
    start: Option<Vec<u8>>,
    mut fetch: impl FnMut(Option<Vec<u8>>) -> Result<Vec<Pair>, StoreError>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StoreError> {
    let mut after = start;
    loop {
        let rows = fetch(after.take())?;
        let full = rows.len() as i64 == PAGE;
        for (k, v) in &rows {
            if !visit(k, v) {
                return Ok(());
            }
        }
        match rows.into_iter().last() {
            Some((k, _)) if full => after = Some(k),
            _ => return Ok(()),
        }
    }
}

async fn open(config: &tokio_postgres::Config) -> Result<Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    // A database that stalls (a table lock, a network that drops packets) must not hold a
    // request, and the thread serving it, for ever.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    // A node that stops mid-transaction (frozen, or its process stopped) would hold the
    // commit row's lock, and with it every node's writes, for as long as its session lives:
    // PostgreSQL ends such a transaction after 5 s — sooner than the others wait for the
    // lock (10 s), so their turns come. No turn of a live node sits idle that long.
    if config.get_options().is_none() {
        config.options(
            "-c statement_timeout=15000 -c lock_timeout=10000 -c idle_in_transaction_session_timeout=5000",
        );
    }
    let (client, conn) = config.connect(NoTls).await.map_err(unavailable)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!("a PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// A transaction on a connection of its own: a snapshot (repeatable read, read only: every
/// read sees the same commit) or a batch's turn (holding the commit row's lock). Ended when
/// dropped: a snapshot's connection goes back to the pool, a turn's to the writer.
struct Session<'a> {
    backend: &'a PgBackend,
    client: Mutex<Option<Conn>>,
    /// A turn's session: its connection is the writer's, not the pool's.
    writer: bool,
    /// A snapshot's BEGIN, not sent yet: it goes with the first query (one round trip
    /// less), and a snapshot never read from needs neither it nor a ROLLBACK.
    begin: std::sync::atomic::AtomicBool,
}

impl Session<'_> {
    fn run<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn tokio_postgres::types::ToSql + Send + Sync>>,
        read: impl FnOnce(Vec<Row>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut client = self.take().ok_or_else(|| {
            StoreError::Unavailable("the transaction's connection was lost".into())
        })?;
        let begin = self.begin.swap(false, std::sync::atomic::Ordering::Relaxed);
        let (client, r) = self.backend.wait(async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| &**p as _).collect();
            let r = match client.statement(sql).await {
                Ok(s) if begin => {
                    let c = &client.client;
                    let (begun, rows) =
                        futures_util::future::join(c.batch_execute(SNAPSHOT), c.query(&s, &refs))
                            .await;
                    begun.and(rows)
                }
                Ok(s) => client.client.query(&s, &refs).await,
                Err(e) => Err(e),
            };
            (client, r)
        })?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client);
        r.map_err(unavailable).and_then(read)
    }

    fn take(&self) -> Option<Conn> {
        self.client.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Snapshot for Session<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(
            GET,
            vec![Box::new(table_id(table)), Box::new(key.to_vec())],
            first_value,
        )
    }

    fn get_many(&self, keys: &[(Table, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.len() < 2 {
            return keys.iter().map(|(t, k)| self.get(*t, k)).collect();
        }
        let tables: Vec<i16> = keys.iter().map(|(t, _)| table_id(*t)).collect();
        let wanted: Vec<Vec<u8>> = keys.iter().map(|(_, k)| k.to_vec()).collect();
        let n = keys.len();
        self.run(GET_MANY, vec![Box::new(tables), Box::new(wanted)], |rows| {
            in_order(rows, n)
        })
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let t = table_id(table);
        paged(
            None,
            |after| {
                match after {
                None => self.run(
                    "SELECT key, value FROM scaivault_records WHERE tbl = $1 ORDER BY key LIMIT 1000",
                    vec![Box::new(t)],
                    pairs,
                ),
                Some(k) => self.run(
                    "SELECT key, value FROM scaivault_records WHERE tbl = $1 AND key > $2 ORDER BY key LIMIT 1000",
                    vec![Box::new(t), Box::new(k)],
                    pairs,
                ),
            }
            },
            visit,
        )
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let Some(client) = self.take() else {
            // Lost during a read, or a turn's, committed: a pooled one is still counted out.
            if !self.writer {
                self.backend.release(None);
            }
            return;
        };
        if self.begin.load(std::sync::atomic::Ordering::Relaxed) {
            // A snapshot never read from: nothing was begun.
            self.backend.release(Some(client));
            return;
        }
        // Nothing of a snapshot or an uncommitted turn is kept (a failed end drops it).
        let ended = self.backend.wait(async move {
            let ok = client.client.batch_execute("ROLLBACK").await.is_ok();
            (client, ok)
        });
        let back = match ended {
            Ok((client, true)) => Some(client),
            _ => None,
        };
        if self.writer {
            self.backend.give_writer(back);
        } else {
            self.backend.release(back);
        }
    }
}

/// A batch's turn: a transaction holding the lock on the commit row, so that no other node
/// commits until it ends, and every read sees the latest commit.
struct PgTurn<'a> {
    session: Session<'a>,
    commits: Commits,
    /// The records read by every batch lately (the ledger, the audit chain's head), read
    /// with the turn's lock in the same round trip: while a turn holds the lock, every
    /// other node's writes wait, so each round trip in it costs all of them.
    warmed: std::collections::HashMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    /// Every record this turn was asked for (what the next turn warms: see [`Warm`]).
    asked: Mutex<Vec<(Table, Vec<u8>)>>,
}

/// The records the last two turns both read: a turn reads them with its lock.
#[derive(Default)]
struct Warm {
    last: std::collections::HashSet<(Table, Vec<u8>)>,
    both: Vec<(Table, Vec<u8>)>,
}

/// The most records a turn warms (a batch reads the ledger and the audit chain's head; a
/// batch that reads many records reads most of them once).
const WARM_MAX: usize = 16;

impl Warm {
    fn update(&mut self, asked: Vec<(Table, Vec<u8>)>) {
        let asked: std::collections::HashSet<_> = asked.into_iter().collect();
        self.both = asked
            .intersection(&self.last)
            .take(WARM_MAX)
            .cloned()
            .collect();
        self.last = asked;
    }
}

impl PgTurn<'_> {
    fn ask(&self, table: Table, key: &[u8]) {
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        if asked.len() < 4 * WARM_MAX {
            asked.push((table, key.to_vec()));
        }
    }
}

impl Drop for PgTurn<'_> {
    fn drop(&mut self) {
        let asked = std::mem::take(&mut *self.asked.lock().unwrap_or_else(|p| p.into_inner()));
        self.session
            .backend
            .warm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(asked);
    }
}

impl Snapshot for PgTurn<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.ask(table, key);
        match self.warmed.get(&(table, key.to_vec())) {
            Some(v) => Ok(v.clone()),
            None => self.session.get(table, key),
        }
    }

    fn get_many(&self, keys: &[(Table, &[u8])]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = vec![None; keys.len()];
        let mut cold = Vec::new();
        for (i, (t, k)) in keys.iter().enumerate() {
            self.ask(*t, k);
            match self.warmed.get(&(*t, k.to_vec())) {
                Some(v) => out[i].clone_from(v),
                None => cold.push(i),
            }
        }
        if !cold.is_empty() {
            let wanted: Vec<(Table, &[u8])> = cold.iter().map(|&i| keys[i]).collect();
            for (i, v) in cold.into_iter().zip(self.session.get_many(&wanted)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.session.scan(table, visit)
    }
}

impl Turn for PgTurn<'_> {
    fn commits(&self) -> Option<&Commits> {
        Some(&self.commits)
    }

    /// The batch, the next commit number and the tables it changed, in the turn's
    /// transaction; durable when PostgreSQL says it committed (its `synchronous_commit`
    /// decides what that means: on by default).
    fn commit(self: Box<Self>, batch: &[Mutation]) -> Result<(), StoreError> {
        let backend = self.session.backend;
        let Some(client) = self.session.take() else {
            return Err(StoreError::Unavailable(
                "the transaction's connection was lost".into(),
            ));
        };
        // The batch's net effect per key, in order: the last mutation of a key wins.
        let mut last: std::collections::BTreeMap<(i16, Vec<u8>), Option<Vec<u8>>> =
            Default::default();
        for m in batch {
            match m {
                Mutation::Put { table, key, value } => {
                    last.insert((table_id(*table), key.clone()), Some(value.clone()));
                }
                Mutation::Delete { table, key } => {
                    last.insert((table_id(*table), key.clone()), None);
                }
            }
        }
        let (mut pt, mut pk, mut pv, mut dt, mut dk) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut tables: Vec<i16> = Vec::new();
        for ((t, k), v) in last {
            tables.push(t);
            match v {
                Some(v) => {
                    pt.push(t);
                    pk.push(k);
                    pv.push(v);
                }
                None => {
                    dt.push(t);
                    dk.push(k);
                }
            }
        }
        tables.dedup();
        let head = self.commits.head as i64 + 1;
        let (client, r) = backend.wait(async move {
            let mut client = client;
            let r = async {
                let upsert = client.statement(UPSERT).await?;
                let delete = client.statement(DELETE).await?;
                let bump = client.statement(BUMP).await?;
                let mark = client.statement(MARK_TABLES).await?;
                // Sent at once (tokio-postgres pipelines what is polled together): one round
                // trip for the batch, not five. A statement that fails aborts the
                // transaction, and the COMMIT after it then rolls back: every answer is
                // checked, so a failure is never taken for a commit.
                let c = &client.client;
                let (written, deleted, bumped, marked, committed) = futures_util::future::join5(
                    async {
                        match pt.is_empty() {
                            true => Ok(0),
                            false => c.execute(&upsert, &[&pt, &pk, &pv]).await,
                        }
                    },
                    async {
                        match dt.is_empty() {
                            true => Ok(0),
                            false => c.execute(&delete, &[&dt, &dk]).await,
                        }
                    },
                    c.execute(&bump, &[&head]),
                    c.execute(&mark, &[&tables, &head]),
                    c.batch_execute("COMMIT"),
                )
                .await;
                written?;
                deleted?;
                bumped?;
                marked?;
                committed
            }
            .await
            .map_err(unavailable);
            (client, r)
        })?;
        // A failed statement leaves the transaction aborted: the session's drop rolls it
        // back. A lost COMMIT reply leaves the outcome unknown: the writer reads its tally
        // again at the next turn, and this node's indexes follow whatever did commit.
        if r.is_ok() {
            backend.give_writer(Some(client));
        } else {
            *self
                .session
                .client
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(client);
        }
        backend.mark(&r);
        r
    }
}

/// A snapshot: every read in it sees the same commit.
const SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// One record.
const GET: &str = "SELECT value FROM scaivault_records WHERE tbl = $1 AND key = $2";

/// Several records, numbered in the order asked.
const GET_MANY: &str = "SELECT w.i, r.value
     FROM unnest($1::smallint[], $2::bytea[]) WITH ORDINALITY AS w(tbl, key, i)
     LEFT JOIN scaivault_records r ON r.tbl = w.tbl AND r.key = w.key";

/// The values of a [`GET_MANY`] of `n` records, in the order asked.
fn in_order(rows: Vec<Row>, n: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let mut out = vec![None; n];
    for r in rows {
        let i: i64 = r.try_get(0).map_err(shape)?;
        let v: Option<Vec<u8>> = r.try_get(1).map_err(shape)?;
        if let Some(slot) = usize::try_from(i - 1).ok().and_then(|i| out.get_mut(i)) {
            *slot = v;
        }
    }
    Ok(out)
}

/// A batch's records written, and deleted.
const UPSERT: &str = "INSERT INTO scaivault_records (tbl, key, value)
     SELECT * FROM unnest($1::smallint[], $2::bytea[], $3::bytea[])
     ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM scaivault_records r
     USING unnest($1::smallint[], $2::bytea[]) AS d(tbl, key)
     WHERE r.tbl = d.tbl AND r.key = d.key";

/// A turn's lock (held to its transaction's end), and its commit's new head and tables.
const LOCK_COMMITS: &str = "SELECT head FROM scaivault_commits WHERE id = 1 FOR UPDATE";
const BUMP: &str = "UPDATE scaivault_commits SET head = $1 WHERE id = 1";
const MARK_TABLES: &str = "INSERT INTO scaivault_table_commits (tbl, seq)
     SELECT unnest($1::smallint[]), $2
     ON CONFLICT (tbl) DO UPDATE SET seq = EXCLUDED.seq";

/// Where the commit sequence stands: the head, then each table's last commit.
const COMMITS: &str = "SELECT NULL::smallint, head FROM scaivault_commits WHERE id = 1
     UNION ALL SELECT tbl, seq FROM scaivault_table_commits";

fn read_commits(rows: &[tokio_postgres::Row]) -> Result<Commits, StoreError> {
    let mut c = Commits {
        head: 0,
        tables: vec![0; Table::ALL.len()],
    };
    for r in rows {
        let tbl: Option<i16> = r.try_get(0).map_err(shape)?;
        let seq = r.try_get::<_, i64>(1).map_err(shape)?.max(0) as u64;
        match tbl {
            None => c.head = seq,
            Some(t) => {
                if let Some(slot) = usize::try_from(t).ok().and_then(|i| c.tables.get_mut(i)) {
                    *slot = seq;
                }
            }
        }
    }
    Ok(c)
}

fn pairs(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Pair>, StoreError> {
    rows.into_iter()
        .map(|r| Ok((r.try_get(0).map_err(shape)?, r.try_get(1).map_err(shape)?)))
        .collect()
}

fn first_value(rows: Vec<tokio_postgres::Row>) -> Result<Option<Vec<u8>>, StoreError> {
    rows.into_iter()
        .next()
        .map(|r| r.try_get(0).map_err(shape))
        .transpose()
}

/// A row that is not what the schema says (a column changed by hand).
fn shape(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "the table scaivault_records is not as this binary made it: {e}"
    ))
}

impl Backend for PgBackend {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (t, k) = (table_id(table), key.to_vec());
        self.block(move |mut c| async move {
            let r = c.query(GET, &[&t, &k]).await;
            (c, r)
        })?
        .map_err(unavailable)
        .and_then(first_value)
    }

    /// A repeatable-read transaction, begun with its first query.
    fn snapshot(&self) -> Result<Box<dyn Snapshot + '_>, StoreError> {
        let client = self.checkout()?;
        Ok(Box::new(Session {
            backend: self,
            client: Mutex::new(Some(client)),
            writer: false,
            begin: true.into(),
        }))
    }

    /// Begins a transaction on the writer's connection and locks the commit row: batches
    /// from every node take their turns one at a time.
    fn turn(&self) -> Result<Box<dyn Turn + '_>, StoreError> {
        let taken = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let config = self.config.clone();
        let warm = self
            .warm
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .both
            .clone();
        let tables: Vec<i16> = warm.iter().map(|(t, _)| table_id(*t)).collect();
        let wanted: Vec<Vec<u8>> = warm.iter().map(|(_, k)| k.clone()).collect();
        let (client, r) = self.wait(async move {
            let client = match taken {
                Some(c) if !c.is_closed() => c,
                _ => match open(&config).await {
                    Ok(c) => Conn::new(c),
                    Err(e) => return (None, Err(e)),
                },
            };
            let mut client = client;
            let r = async {
                let lock = client.statement(LOCK_COMMITS).await?;
                let commits = client.statement(COMMITS).await?;
                let get_many = client.statement(GET_MANY).await?;
                // One round trip: begin, wait for the commit row, read where commits stand
                // and the warm records. Each statement after the lock sees every commit
                // made before it was granted (read committed: a snapshot per statement).
                let c = &client.client;
                let (begun, locked, rows, warmed) = futures_util::future::join4(
                    c.batch_execute("BEGIN"),
                    c.query_one(&lock, &[]),
                    c.query(&commits, &[]),
                    async {
                        match tables.is_empty() {
                            true => Ok(Vec::new()),
                            false => c.query(&get_many, &[&tables, &wanted]).await,
                        }
                    },
                )
                .await;
                begun?;
                locked?;
                Ok::<_, tokio_postgres::Error>((rows?, warmed?))
            }
            .await
            .map_err(unavailable);
            (Some(client), r)
        })?;
        let read = r.and_then(|(rows, warmed)| {
            let values = in_order(warmed, warm.len())?;
            Ok((read_commits(&rows)?, warm.into_iter().zip(values).collect()))
        });
        self.mark(&read.as_ref().map(drop).map_err(Clone::clone));
        let session = Session {
            backend: self,
            client: Mutex::new(client),
            writer: true,
            begin: false.into(),
        };
        let (commits, warmed) = read?;
        Ok(Box::new(PgTurn {
            commits,
            session,
            warmed,
            asked: Default::default(),
        }))
    }

    fn commits(&self) -> Result<Option<Commits>, StoreError> {
        let rows = self
            .block(|mut c| async move {
                let r = c.query(COMMITS, &[]).await;
                (c, r)
            })?
            .map_err(unavailable)?;
        read_commits(&rows).map(Some)
    }

    /// Holds the leader lock on a session of its own, or tries for it (at most once a
    /// second); a lost session has lost it.
    fn leads(&self) -> bool {
        let mut l = self.leader.lock().unwrap_or_else(|p| p.into_inner());
        let alive = l.session.as_ref().is_some_and(|c| !c.is_closed());
        if alive && l.leads {
            // Each pass that asks shows the database this leader is alive: a leader that
            // stops asking (frozen, stopped) is idle past `idle_session_timeout` and loses
            // its session and the lock with it.
            if l.tried.is_some_and(|t| t.elapsed() < LEAD_RETRY) {
                return true;
            }
            l.tried = Some(std::time::Instant::now());
            let c = l.session.take().expect("alive");
            match self.wait(async move {
                let ok = c.batch_execute("SELECT 1").await.is_ok();
                (c, ok)
            }) {
                Ok((c, true)) => {
                    l.session = Some(c);
                    return true;
                }
                _ => {
                    tracing::warn!("this node lost its database session, and with it the lead");
                    l.leads = false;
                    return false;
                }
            }
        }
        if l.leads {
            tracing::warn!("this node lost its database session, and with it the lead");
            l.leads = false;
        }
        if l.tried.is_some_and(|t| t.elapsed() < LEAD_RETRY) {
            return false;
        }
        l.tried = Some(std::time::Instant::now());
        let session = l.session.take().filter(|c| !c.is_closed());
        let config = self.config.clone();
        let got = self.wait(async move {
            let c = match session {
                Some(c) => c,
                None => open(&config).await?,
            };
            let got = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                .await
                .map(|r| r.get::<_, bool>(0))
                .map_err(unavailable)?;
            if got {
                // The leader pings every pass (at least every few seconds): silent for 30 s,
                // it is gone, and the lock goes to another node. (PostgreSQL 14 and later;
                // before, a frozen leader keeps the lead until its session ends.)
                let silence = format!(
                    "SET idle_session_timeout = {}",
                    LEADER_SILENCE.as_millis()
                );
                if let Err(e) = c.batch_execute(&silence).await {
                    tracing::warn!(error = %e, "PostgreSQL does not end a silent leader's session (idle_session_timeout needs version 14)");
                }
            }
            Ok::<_, StoreError>((c, got))
        });
        if let Ok(Ok((c, got))) = got {
            l.session = Some(c);
            l.leads = got;
            if got {
                tracing::info!(
                    "this node now leads: it runs the rotation schedule, expiry passes and webhook deliveries"
                );
            }
        }
        l.leads
    }

    fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.walk(table, None, false, visit)
    }

    fn scan_rev(
        &self,
        table: Table,
        before: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.walk(table, before.map(<[u8]>::to_vec), true, visit)
    }

    /// One transaction per batch (the pipeline's group commit), in a turn of its own.
    fn commit(&self, batch: &[Mutation]) -> Result<(), StoreError> {
        self.turn()?.commit(batch)
    }

    /// A consistent copy as a vault *file*: backups of a vault on PostgreSQL are files like
    /// any other, restorable anywhere.
    fn copy_to(&self, out: &std::path::Path) -> Result<(), StoreError> {
        let file = crate::redb_backend::RedbBackend::create(out)?;
        crate::vault::copy_records(self, &file).map(drop)
    }

    fn write_blocked(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn database_stats(&self) -> Option<crate::DatabaseStats> {
        use std::sync::atomic::Ordering::Relaxed;
        Some(crate::DatabaseStats {
            connections_in_use: *self.out.lock().unwrap_or_else(|p| p.into_inner()),
            connections_max: POOL,
            calls: self.calls.load(Relaxed),
            call_seconds: self.call_micros.load(Relaxed) as f64 / 1e6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::database_url;
    use std::path::Path;

    #[test]
    fn a_turn_warms_what_the_last_two_turns_both_read() {
        let k = |t: Table, k: &str| (t, k.as_bytes().to_vec());
        let mut warm = Warm::default();
        warm.update(vec![k(Table::Integrity, "ledger"), k(Table::Versions, "a")]);
        assert!(warm.both.is_empty(), "one turn is not a habit");
        warm.update(vec![k(Table::Integrity, "ledger"), k(Table::Versions, "b")]);
        assert_eq!(warm.both, vec![k(Table::Integrity, "ledger")]);
        let many: Vec<_> = (0..100)
            .map(|i| k(Table::Versions, &i.to_string()))
            .collect();
        warm.update(many.clone());
        warm.update(many);
        assert_eq!(
            warm.both.len(),
            WARM_MAX,
            "a turn warms a bounded number of records"
        );
    }

    #[test]
    fn connection_strings_are_recognised_and_shown_without_their_password() {
        for (location, db) in [
            ("postgresql://u:pw@h:5433/v", true),
            ("postgres://u@h/v", true),
            ("host=h port=5433 user=u password=pw dbname=v", true),
            ("dbname=v", true),
            ("vault.db", false),
            ("./host.db", false),
        ] {
            assert_eq!(
                database_url(Path::new(location)).is_some(),
                db,
                "{location}"
            );
            if db {
                let shown = redacted(location);
                assert!(!shown.contains("pw"), "{location} → {shown}");
                assert!(shown.ends_with("/v"), "{location} → {shown}");
            }
        }
    }
}
