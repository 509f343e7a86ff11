//! Following other nodes' commits, on a database several nodes share.
//!
//! Each node keeps indexes in memory (paths, tokens, policies, identities, rotation, webhooks),
//! updated by its own commits. Another node's commit must reach them before the next request
//! that could see it: a revoked token must fail on every node from the next request on. The
//! database keeps a commit sequence, and for each table the commit that last changed it
//! ([`Commits`]); a node compares that with what its indexes have followed and has the engine
//! reload the tables that moved — at the start of each authenticated request (one query), and
//! in the writer before it runs a batch's jobs (which read the indexes too).
//!
//! The writer holds [`Follow::known`] for a whole batch (turn, jobs, commit, hooks), and a
//! reload holds it too, so a reload never interleaves with this node's own commit and the
//! hooks that apply it in memory: a table is marked followed up to a commit only when its
//! in-memory state holds every change up to that commit.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::backend::Commits;
use crate::error::StoreError;
use crate::table::Table;

/// Reloads the in-memory state of the given tables from the database (the engine's).
pub type Follower = dyn Fn(&[Table]) -> Result<(), StoreError> + Send + Sync;

/// Tables nothing is kept of in memory: their changes need no reload.
const UNFOLLOWED: &[Table] = &[
    Table::Versions,
    Table::Audit,
    Table::AuditState,
    Table::Integrity,
];

#[derive(Default)]
pub(crate) struct Follow {
    /// The commit each table's in-memory state holds every change up to.
    known: Mutex<Commits>,
    /// A copy of `known`, for the check every request makes without waiting for a batch.
    seen: RwLock<Commits>,
    follower: RwLock<Option<Arc<Follower>>>,
    /// Set when another node changed what cannot be reloaded (the vault's keys).
    broken: RwLock<Option<String>>,
}

impl Follow {
    pub(crate) fn new(at: Commits) -> Follow {
        Follow {
            seen: RwLock::new(at.clone()),
            known: Mutex::new(at),
            ..Default::default()
        }
    }

    pub(crate) fn set_follower(&self, f: Arc<Follower>) {
        *self.follower.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Commits> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn broken(&self) -> Option<String> {
        self.broken
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether some followed table moved past what is known, without waiting for the lock.
    pub(crate) fn behind(&self, now: &Commits) -> bool {
        let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
        followed().any(|t| now.of(t) > seen.of(t))
    }

    /// Brings the in-memory state up to `now` (read under `known`'s lock): reloads each
    /// followed table another commit changed.
    pub(crate) fn catch_up(&self, known: &mut Commits, now: &Commits) -> Result<(), StoreError> {
        if let Some(why) = self.broken() {
            return Err(StoreError::Unavailable(why));
        }
        let moved: Vec<Table> = followed().filter(|t| now.of(*t) > known.of(*t)).collect();
        if moved.contains(&Table::Meta) {
            let why = "the vault's keys were changed on another node (a passphrase, key-file, recovery-key or data-key change): restart this node to unseal with them".to_owned();
            tracing::error!("{why}");
            *self.broken.write().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
            return Err(StoreError::Unavailable(why));
        }
        if !moved.is_empty() {
            let follower = self
                .follower
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // No follower: a one-shot command, whose indexes were loaded after `known`.
            if let Some(f) = follower {
                f(&moved)?;
            }
        }
        for t in moved {
            set(known, t, now.of(t));
        }
        known.head = known.head.max(now.head);
        self.publish(known);
        Ok(())
    }

    /// After this node's own commit (`before`: where the database stood when its turn began):
    /// each table it wrote is followed up to the new commit, if nothing else was pending for
    /// it (the hooks applied this commit in memory, and nothing before it was missing).
    pub(crate) fn committed(&self, known: &mut Commits, before: &Commits, wrote: &[Table]) {
        let at = before.head + 1;
        for &t in wrote {
            if known.of(t) == before.of(t) {
                set(known, t, at);
            }
        }
        self.publish(known);
    }

    fn publish(&self, known: &Commits) {
        *self.seen.write().unwrap_or_else(|p| p.into_inner()) = known.clone();
    }
}

fn followed() -> impl Iterator<Item = Table> {
    Table::ALL
        .iter()
        .copied()
        .filter(|t| !UNFOLLOWED.contains(t))
}

fn set(c: &mut Commits, t: Table, seq: u64) {
    let i = t.index();
    if c.tables.len() < Table::ALL.len() {
        c.tables.resize(Table::ALL.len(), 0);
    }
    c.tables[i] = seq;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(head: u64, pairs: &[(Table, u64)]) -> Commits {
        let mut c = Commits {
            head,
            tables: vec![0; Table::ALL.len()],
        };
        for (t, s) in pairs {
            set(&mut c, *t, *s);
        }
        c
    }

    #[test]
    fn only_tables_another_commit_changed_are_reloaded() {
        let follow = Follow::new(at(3, &[(Table::Tokens, 2)]));
        let reloaded = Arc::new(Mutex::new(Vec::new()));
        let r = reloaded.clone();
        follow.set_follower(Arc::new(move |t: &[Table]| {
            r.lock().unwrap().extend_from_slice(t);
            Ok(())
        }));
        // Audit entries change nothing kept in memory.
        let now = at(5, &[(Table::Tokens, 2), (Table::Audit, 5)]);
        assert!(!follow.behind(&now));
        let now = at(6, &[(Table::Tokens, 6), (Table::Audit, 5)]);
        assert!(follow.behind(&now));
        follow.catch_up(&mut follow.lock(), &now).unwrap();
        assert_eq!(*reloaded.lock().unwrap(), vec![Table::Tokens]);
        assert!(!follow.behind(&now));
    }

    #[test]
    fn an_own_commit_is_followed_only_if_nothing_was_pending_before_it() {
        let follow = Follow::new(at(3, &[(Table::Tokens, 2), (Table::Policies, 1)]));
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        follow.set_follower(Arc::new(move |_: &[Table]| {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        // Another node changed the policies at 3; this node's commit 4 wrote both.
        let before = at(3, &[(Table::Tokens, 2), (Table::Policies, 3)]);
        {
            let mut known = follow.lock();
            follow.committed(&mut known, &before, &[Table::Tokens, Table::Policies]);
            assert_eq!(known.of(Table::Tokens), 4);
            assert_eq!(known.of(Table::Policies), 1, "commit 3 was never loaded");
        }
        let now = at(4, &[(Table::Tokens, 4), (Table::Policies, 4)]);
        assert!(follow.behind(&now));
        follow.catch_up(&mut follow.lock(), &now).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_key_change_elsewhere_stops_the_node_until_it_restarts() {
        let follow = Follow::new(at(1, &[]));
        let now = at(2, &[(Table::Meta, 2)]);
        let e = follow.catch_up(&mut follow.lock(), &now).unwrap_err();
        assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        assert!(follow.broken().unwrap().contains("restart this node"));
        assert!(follow.catch_up(&mut follow.lock(), &now).is_err());
    }
}
