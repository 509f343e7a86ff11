//! The commit pipeline: one writer thread that drains every queued write job into a single
//! durable transaction (group commit) and answers each job only after that transaction is
//! durable. With a ~1 ms fsync, this is what turns 64 concurrent writers into one commit
//! instead of 64.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;

use scaivault_crypto::SecretBytes;

use crate::backend::{Backend, Mutation, Snapshot, Turn};
use crate::error::StoreError;
use crate::follow::Follow;
use crate::ledger::{Digests, Ledger, STATE_KEY, Tally};
use crate::table::Table;

/// Called once the job's batch is durable (`Ok`) or failed (`Err`).
pub(crate) type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(crate) type Job = Box<dyn FnOnce(&mut RawTx<'_>) -> Completion + Send>;

/// Jobs per batch at most; bounds the transaction size and the latency of the first job.
const MAX_BATCH: usize = 1024;

/// What the writer needs of the vault's keys.
pub(crate) trait WriterKeys: Send + Sync + 'static {
    /// Seals a record's plaintext for the file, given its table and (blinded) key.
    fn seal(&self, table: Table, key: &[u8], plain: &[u8]) -> Vec<u8>;

    /// The root key's generation, which moves each time a job replaces the root key.
    fn generation(&self) -> u64;

    /// The ledger under the current root key, with its generation.
    fn ledger(&self) -> (u64, Ledger);

    /// Called once a batch that moved the root key to `generation` is durable.
    fn committed(&self, generation: u64);

    /// The ledger as committed in `view` (another node's commits moved it on).
    fn read_ledger(&self, view: &dyn Snapshot) -> Result<Digests, StoreError>;
}

/// A write waiting in the batch.
#[derive(Clone)]
enum Pending {
    /// Bytes that go to the file as they are (the plaintext header of the meta table).
    Raw(Vec<u8>),
    /// Sealed only when the batch is committed: a record written by many jobs of one batch
    /// (the audit chain's head, a secret's head during an import) is sealed once, and the
    /// jobs after the first read it back without opening it.
    Plain(SecretBytes),
    Deleted,
}

/// What a lookup through the batch found.
pub(crate) enum Found {
    /// Bytes as stored: sealed, or the raw header.
    Stored(Vec<u8>),
    /// The plaintext an earlier write of this batch left.
    Plain(SecretBytes),
}

/// The raw view a job writes through: the committed state (as the batch's turn reads it),
/// overlaid with the earlier jobs of this batch, overlaid with this job's own writes. A job
/// that fails leaves no trace.
pub struct RawTx<'a> {
    backend: &'a dyn Snapshot,
    batch: BTreeMap<(Table, Vec<u8>), Pending>,
    job: BTreeMap<(Table, Vec<u8>), Pending>,
    /// Tables whose ledger digest this batch (or job) recomputes (see [`Ledger::reanchor`]).
    batch_reanchor: std::collections::BTreeSet<Table>,
    job_reanchor: std::collections::BTreeSet<Table>,
}

impl<'a> RawTx<'a> {
    fn new(backend: &'a dyn Snapshot) -> Self {
        RawTx {
            backend,
            batch: BTreeMap::new(),
            job: BTreeMap::new(),
            batch_reanchor: Default::default(),
            job_reanchor: Default::default(),
        }
    }

    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Found>, StoreError> {
        let k = (table, key.to_vec());
        match self.job.get(&k).or_else(|| self.batch.get(&k)) {
            Some(Pending::Raw(v)) => Ok(Some(Found::Stored(v.clone()))),
            Some(Pending::Plain(p)) => Ok(Some(Found::Plain(p.clone()))),
            Some(Pending::Deleted) => Ok(None),
            None => Ok(self.backend.get(table, key)?.map(Found::Stored)),
        }
    }

    /// Writes bytes that are stored as they are.
    pub(crate) fn put_raw(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.job.insert((table, key), Pending::Raw(value));
    }

    /// Writes a plaintext that is sealed when the batch commits.
    pub(crate) fn put_plain(&mut self, table: Table, key: Vec<u8>, plain: SecretBytes) {
        self.job.insert((table, key), Pending::Plain(plain));
    }

    pub(crate) fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.job.insert((table, key), Pending::Deleted);
    }

    /// Every key of `table` as this job sees it: the committed ones, with the batch's and
    /// this job's puts added and their deletes taken away.
    pub(crate) fn keys(&self, table: Table) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = std::collections::BTreeSet::new();
        self.backend.scan(table, &mut |k, _| {
            keys.insert(k.to_vec());
            true
        })?;
        for layer in [&self.batch, &self.job] {
            for ((t, k), p) in layer {
                if *t != table {
                    continue;
                }
                if matches!(p, Pending::Deleted) {
                    keys.remove(k);
                } else {
                    keys.insert(k.clone());
                }
            }
        }
        Ok(keys.into_iter().collect())
    }

    /// Ends the current job: its writes join the batch, or vanish.
    pub(crate) fn end_job(&mut self, keep: bool) {
        let job = std::mem::take(&mut self.job);
        let reanchor = std::mem::take(&mut self.job_reanchor);
        if keep {
            self.batch.extend(job);
            self.batch_reanchor.extend(reanchor);
        }
    }

    /// Asks the commit to recompute `table`'s ledger digest from the file (a repair).
    pub(crate) fn reanchor(&mut self, table: Table) {
        self.job_reanchor.insert(table);
    }

    fn mutations(&mut self, keys: &dyn WriterKeys) -> Vec<Mutation> {
        std::mem::take(&mut self.batch)
            .into_iter()
            .map(|((table, key), v)| match v {
                Pending::Raw(value) => Mutation::Put { table, key, value },
                Pending::Plain(plain) => {
                    let value = keys.seal(table, &key, plain.as_bytes());
                    Mutation::Put { table, key, value }
                }
                Pending::Deleted => Mutation::Delete { table, key },
            })
            .collect()
    }
}

/// The handle the vault submits jobs through.
pub(crate) struct Pipeline {
    tx: mpsc::Sender<Job>,
    writer: std::thread::JoinHandle<()>,
}

impl Pipeline {
    /// Starts the writer; `tally` is the ledger as the file holds it now, under the ledger
    /// key of the current root key.
    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        keys: Arc<dyn WriterKeys>,
        tally: Tally,
        follow: Arc<Follow>,
    ) -> Pipeline {
        let (tx, rx) = mpsc::channel::<Job>();
        let writer = std::thread::Builder::new()
            .name("scaivault-writer".into())
            .spawn(move || writer_loop(&*backend, &*keys, tally, &follow, rx))
            .expect("spawning the writer thread");
        Pipeline { tx, writer }
    }

    /// Finishes the queued jobs, then stops the writer and releases its handle on the file.
    /// (On the writer thread itself — the last handle on the vault dropped by a reload the
    /// writer ran — it only closes the queue: the loop then ends by itself.)
    pub(crate) fn stop(self) {
        drop(self.tx);
        if self.writer.thread().id() != std::thread::current().id() {
            let _ = self.writer.join();
        }
    }

    pub(crate) fn submit(&self, job: Job) -> Result<(), StoreError> {
        self.tx.send(job).map_err(|_| StoreError::Closed)
    }
}

fn writer_loop(
    backend: &dyn Backend,
    keys: &dyn WriterKeys,
    mut tally: Tally,
    follow: &Follow,
    rx: mpsc::Receiver<Job>,
) {
    let mut ledger = keys.ledger();
    // Set once a commit that replaced the root key failed: the keys in memory have moved on
    // and the file's have not, so nothing more may be sealed until the vault is reopened.
    let mut poisoned: Option<StoreError> = None;
    // On a shared database, the commit the tally was last known to match: after anyone
    // else's commit (or one of ours whose outcome is unknown) it is read again.
    let mut tally_at: Option<u64> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // Held until the batch's hooks have run (see `follow`).
        let mut known = follow.lock();
        // What other nodes changed is reloaded before the turn is taken, so that the reload
        // does not hold every node's writes (nor leave the turn idle, which PostgreSQL ends
        // after a few seconds); the turn then catches up on what came in between, usually
        // nothing. A failure here is met again in the turn.
        if let Ok(Some(now)) = backend.commits()
            && follow.behind(&now)
        {
            let _ = follow.catch_up(&mut known, &now);
        }
        let turn = backend.turn().and_then(|turn| {
            if let Some(now) = turn.commits().cloned() {
                follow.catch_up(&mut known, &now)?;
                if tally_at != Some(now.head) {
                    tally = Tally::new(keys.read_ledger(&*turn)?);
                    tally_at = Some(now.head);
                }
            }
            Ok(turn)
        });
        let (turn, failed) = match turn {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        };
        let unusable = Unusable(failed.clone().unwrap_or(StoreError::Closed));
        let view: &dyn Snapshot = match &turn {
            Some(t) => &**t,
            None => &unusable,
        };
        let mut raw = RawTx::new(view);
        let mut completions = Vec::with_capacity(jobs.len());
        for job in jobs {
            // A panicking job loses its own writes and its reply (the caller sees the channel
            // close), never the batch or the writer thread.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut raw))) {
                Ok(done) => completions.push(done),
                Err(_) => raw.end_job(false),
            }
        }
        let reanchor = std::mem::take(&mut raw.batch_reanchor);
        let batch = raw.mutations(keys);
        drop(raw);
        let before = turn.as_ref().and_then(|t| t.commits().cloned());
        let wrote: Vec<Table> = {
            let mut w: Vec<Table> = batch
                .iter()
                .map(|m| match m {
                    Mutation::Put { table, .. } | Mutation::Delete { table, .. } => *table,
                })
                .collect();
            w.sort();
            w.dedup();
            w
        };
        let result = match (turn, failed) {
            (_, Some(e)) => Err(e),
            (None, None) => Err(StoreError::Closed),
            (Some(_), None) if poisoned.is_some() => Err(poisoned.clone().expect("checked")),
            (Some(_), None) if batch.is_empty() && reanchor.is_empty() => Ok(()),
            (Some(turn), None) if keys.generation() == ledger.0 => {
                commit_with_ledger(turn, keys, &ledger.1, &mut tally, batch, &reanchor)
            }
            (Some(turn), None) => {
                let (generation, current) = keys.ledger();
                // A job of this batch replaced the root key: the ledger moves to the new root
                // key's MAC key, recomputed over every table in the same commit, so that
                // someone who held only the old root key cannot recompute it.
                // The file as it is must first match the ledger under the outgoing key:
                // moving the ledger over records changed outside the vault would make them
                // look genuine (a rollback or forgery the next verify would have named).
                let scan = |t: Table, v: &mut dyn FnMut(&[u8], &[u8]) -> bool| turn.scan(t, v);
                let moved = ledger
                    .1
                    .rebuild_with(&current, &scan)
                    .and_then(|(was, now)| {
                        if let Some(t) = was.first_difference(&tally.digests) {
                            return Err(crate::ledger::mismatch(t));
                        }
                        Ok(now)
                    })
                    .and_then(|digests| {
                        let mut fresh = Tally::new(digests);
                        commit_with_ledger(turn, keys, &current, &mut fresh, batch, &reanchor)
                            .map(|()| fresh)
                    });
                match moved {
                    Ok(fresh) => {
                        tally = fresh;
                        ledger = (generation, current);
                        keys.committed(generation);
                        Ok(())
                    }
                    Err(e) => {
                        poisoned = Some(StoreError::Refused(
                            "a commit that replaced the root key failed, so the keys in memory no longer match the file's: restart the server (reopen the vault) before writing".into(),
                        ));
                        Err(e)
                    }
                }
            }
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = completions.len(), "durable commit failed; batch rejected");
        }
        let committed = result.is_ok() && !wrote.is_empty();
        for done in completions {
            done(result.clone());
        }
        if let Some(before) = before {
            if committed {
                follow.committed(&mut known, &before, &wrote);
                tally_at = tally_at.map(|_| before.head + 1);
            } else if result.is_err() {
                // The outcome may be unknown (a connection lost around COMMIT).
                tally_at = None;
            }
        }
        drop(known);
    }
}

/// What a batch reads through when its turn could not begin: every read fails with why.
struct Unusable(StoreError);

impl Snapshot for Unusable {
    fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(self.0.clone())
    }

    fn scan(&self, _: Table, _: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        Err(self.0.clone())
    }
}

/// Commits `batch` together with the ledger record it leads to; the tally in memory moves on
/// only if that commit is durable.
pub(crate) fn commit_with_ledger(
    turn: Box<dyn Turn + '_>,
    keys: &dyn WriterKeys,
    ledger: &Ledger,
    tally: &mut Tally,
    mut batch: Vec<Mutation>,
    reanchor: &std::collections::BTreeSet<Table>,
) -> Result<(), StoreError> {
    let mut next = ledger.advance(tally, &*turn, &batch)?;
    for &t in reanchor {
        ledger.reanchor(&mut next, t, &*turn, &batch)?;
    }
    batch.push(Mutation::Put {
        table: Table::Integrity,
        key: STATE_KEY.to_vec(),
        value: keys.seal(Table::Integrity, STATE_KEY, &next.digests.encode()),
    });
    turn.commit(&batch)?;
    *tally = next;
    Ok(())
}
