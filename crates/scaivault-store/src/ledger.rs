//! The ledger: a keyed digest of every table, sealed into the file by every commit.
//!
//! Each record is sealed on its own, so a record cannot be changed undetected, but a record's
//! *older* sealed copy is just as authentic, and a whole record can be removed. Someone with
//! write access to the file (and an older copy of it) could bring a revoked token back that
//! way. The ledger closes that: for each table it keeps the XOR of a keyed MAC of every
//! `(key, sealed value)` pair, updated incrementally by the writer thread at each commit (two
//! MACs per changed record), and the sealed ledger record is part of that same commit. Rolling
//! back, removing or adding any record changes its table's digest; rolling the ledger record
//! back with it changes the digest of the audit chain's state, which moves with every audited
//! request; rolling that back too means truncating the audit log, which an anchored audit head
//! shows. XOR of PRF outputs under a secret key is a sound set hash here: every term is a MAC
//! the attacker cannot compute, and a table never holds one key twice.
//!
//! The tables that decide access ([`CHECKED_AT_OPEN`]) are recomputed at every unseal; the
//! large ones (secrets, versions, the path index, the audit log) by `operator verify`.

use std::collections::BTreeMap;

use scaivault_crypto::Authenticator;

use crate::backend::{Mutation, Snapshot};
use crate::error::StoreError;
use crate::table::Table;

/// A view's table scan: the file as it is now (at unseal) or one snapshot (verify).
pub(crate) type Scan<'a> =
    &'a dyn Fn(Table, &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;

/// The key of the ledger record in [`Table::Integrity`].
pub(crate) const STATE_KEY: &[u8] = b"ledger";

/// Tables recomputed at every unseal: small, and they decide who may do what (the header,
/// identities and their credentials, tokens, policies, rotation and secret policies, the plugin
/// catalogue, webhooks) plus the audit chain's state, which pins the ledger itself.
pub const CHECKED_AT_OPEN: &[Table] = &[
    Table::Meta,
    Table::Identities,
    Table::Tokens,
    Table::Policies,
    Table::AuditState,
    Table::Rotation,
    Table::Plugins,
    Table::Webhooks,
];

/// The tables the ledger covers: all but its own.
fn covered() -> impl Iterator<Item = Table> {
    Table::ALL
        .iter()
        .copied()
        .filter(|t| *t != Table::Integrity)
}

/// One digest per table; a table with no records has none.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Digests(BTreeMap<Table, [u8; 32]>);

/// The writer's running state: the digests as committed, and the term of every record the
/// last committed batch wrote (`None`: deleted). A record rewritten by every batch (the audit
/// chain's head) then costs no read and no MAC of its old value.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) digests: Digests,
    recent: std::collections::HashMap<(Table, Vec<u8>), Option<[u8; 32]>>,
}

impl Tally {
    pub(crate) fn new(digests: Digests) -> Tally {
        Tally {
            digests,
            recent: Default::default(),
        }
    }
}

impl Digests {
    fn toggle(&mut self, table: Table, term: [u8; 32]) {
        let d = self.0.entry(table).or_insert([0; 32]);
        d.iter_mut().zip(term).for_each(|(a, b)| *a ^= b);
        if *d == [0; 32] {
            self.0.remove(&table);
        }
    }

    fn of(&self, table: Table) -> [u8; 32] {
        self.0.get(&table).copied().unwrap_or([0; 32])
    }

    fn set(&mut self, table: Table, digest: [u8; 32]) {
        if digest == [0; 32] {
            self.0.remove(&table);
        } else {
            self.0.insert(table, digest);
        }
    }

    /// The first table whose digest differs between the two.
    pub(crate) fn first_difference(&self, other: &Digests) -> Option<Table> {
        covered().find(|t| self.of(*t) != other.of(*t))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let tables: BTreeMap<&str, String> = self
            .0
            .iter()
            .map(|(t, d)| (t.name(), hex::encode(d)))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "v": 1, "tables": tables })).expect("serializes")
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Digests, StoreError> {
        let bad = || StoreError::Integrity {
            table: "integrity",
            detail: "the ledger record is unreadable".into(),
        };
        #[derive(serde::Deserialize)]
        struct Wire {
            v: u32,
            tables: BTreeMap<String, String>,
        }
        let wire: Wire = serde_json::from_slice(raw).map_err(|_| bad())?;
        if wire.v != 1 {
            return Err(bad());
        }
        let mut out = BTreeMap::new();
        for (name, hex_digest) in wire.tables {
            let table = Table::ALL
                .iter()
                .copied()
                .find(|t| t.name() == name)
                .ok_or_else(bad)?;
            let d: [u8; 32] = hex::decode(hex_digest)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)?;
            out.insert(table, d);
        }
        Ok(Digests(out))
    }
}

/// Computes and advances digests under the vault's ledger key.
pub(crate) struct Ledger {
    mac: Authenticator,
}

impl Ledger {
    pub(crate) fn new(mac: Authenticator) -> Ledger {
        Ledger { mac }
    }

    /// A record's term: a MAC of its table, key and sealing (see
    /// [`scaivault_crypto::sealing_fingerprint`]; the header of the meta table, which is not
    /// sealed, whole).
    fn term(&self, table: Table, key: &[u8], value: &[u8]) -> [u8; 32] {
        let len = (key.len() as u64).to_be_bytes();
        let head = [table.name().as_bytes(), &[0], &len, key];
        match scaivault_crypto::sealing_fingerprint(value).filter(|_| table != Table::Meta) {
            Some((header, tag)) => {
                self.mac
                    .tag_parts(&[head[0], head[1], head[2], head[3], &[1], header, tag])
            }
            None => self
                .mac
                .tag_parts(&[head[0], head[1], head[2], head[3], &[0], value]),
        }
    }

    /// The digest of one table as it is in `scan`'s view.
    fn digest_of(&self, table: Table, scan: Scan<'_>) -> Result<[u8; 32], StoreError> {
        let mut d = Digests::default();
        scan(table, &mut |k, v| {
            d.toggle(table, self.term(table, k, v));
            true
        })?;
        Ok(d.of(table))
    }

    /// Digests of every covered table, from scratch: a file written before the ledger, or
    /// a ledger moving to a new root key.
    pub(crate) fn rebuild(&self, scan: Scan<'_>) -> Result<Digests, StoreError> {
        let mut out = Digests::default();
        for t in covered() {
            let d = self.digest_of(t, scan)?;
            if d != [0; 32] {
                out.0.insert(t, d);
            }
        }
        Ok(out)
    }

    /// [`Ledger::rebuild`] under this key and `next`'s, in one pass over the file (a root-key
    /// change checks the file under the outgoing key and rebuilds under the new one).
    pub(crate) fn rebuild_with(
        &self,
        next: &Ledger,
        scan: Scan<'_>,
    ) -> Result<(Digests, Digests), StoreError> {
        let (mut mine, mut theirs) = (Digests::default(), Digests::default());
        for t in covered() {
            scan(t, &mut |k, v| {
                mine.toggle(t, self.term(t, k, v));
                theirs.toggle(t, next.term(t, k, v));
                true
            })?;
        }
        Ok((mine, theirs))
    }

    /// The tally after `batch` is applied to the state `before` describes; `committed` is
    /// the store as of that state (the old value of a changed record the last batch did not
    /// write is read from it).
    pub(crate) fn advance(
        &self,
        before: &Tally,
        committed: &dyn Snapshot,
        batch: &[Mutation],
    ) -> Result<Tally, StoreError> {
        let mut next = Tally {
            digests: before.digests.clone(),
            recent: Default::default(),
        };
        let changes = batch.iter().filter_map(|m| match m {
            Mutation::Put { table, .. } | Mutation::Delete { table, .. }
                if *table == Table::Integrity =>
            {
                None
            }
            Mutation::Put { table, key, value } => Some((*table, key, Some(value))),
            Mutation::Delete { table, key } => Some((*table, key, None)),
        });
        // The old values the last batch did not leave a term for, read in one go.
        let unknown: Vec<(Table, &[u8])> = changes
            .clone()
            .filter(|(t, k, _)| !before.recent.contains_key(&(*t, k.to_vec())))
            .map(|(t, k, _)| (t, k.as_slice()))
            .collect();
        let mut read = committed.get_many(&unknown)?.into_iter();
        for (table, key, new) in changes {
            let old = match before.recent.get(&(table, key.clone())) {
                Some(term) => *term,
                None => read
                    .next()
                    .ok_or_else(|| {
                        StoreError::Io("a read of several records came back short".into())
                    })?
                    .map(|old| self.term(table, key, &old)),
            };
            if let Some(term) = old {
                next.digests.toggle(table, term);
            }
            let new = new.map(|v| self.term(table, key, v));
            if let Some(term) = new {
                next.digests.toggle(table, term);
            }
            next.recent.insert((table, key.clone()), new);
        }
        Ok(next)
    }

    /// Recomputes `table`'s digest from the records it will hold once `batch` is applied to
    /// `committed`, replacing the running one. Only a repair does this: a damaged record's
    /// original term is lost with it, so the running digest of its table could never match
    /// the file again. It accepts the table as it is then (see docs/SECURITY.md).
    pub(crate) fn reanchor(
        &self,
        tally: &mut Tally,
        table: Table,
        committed: &dyn Snapshot,
        batch: &[Mutation],
    ) -> Result<(), StoreError> {
        let mut changed = std::collections::HashSet::new();
        let mut d = Digests::default();
        for m in batch {
            match m {
                Mutation::Put {
                    table: t,
                    key,
                    value,
                } if *t == table => {
                    changed.insert(key.as_slice());
                    d.toggle(table, self.term(table, key, value));
                }
                Mutation::Delete { table: t, key } if *t == table => {
                    changed.insert(key.as_slice());
                }
                _ => {}
            }
        }
        committed.scan(table, &mut |k, v| {
            if !changed.contains(k) {
                d.toggle(table, self.term(table, k, v));
            }
            true
        })?;
        tally.digests.set(table, d.of(table));
        Ok(())
    }

    /// Compares the recorded digests of `tables` with the records `scan` sees; the first
    /// table that differs is an integrity error naming it.
    pub(crate) fn check(
        &self,
        recorded: &Digests,
        tables: &[Table],
        scan: Scan<'_>,
    ) -> Result<(), StoreError> {
        for &t in tables {
            if self.digest_of(t, scan)? != recorded.of(t) {
                return Err(mismatch(t));
            }
        }
        Ok(())
    }

    /// Every covered table whose records differ from the ledger, for `operator verify`.
    pub(crate) fn differing(
        &self,
        recorded: &Digests,
        scan: Scan<'_>,
    ) -> Result<Vec<Table>, StoreError> {
        let mut out = Vec::new();
        for t in covered() {
            if self.digest_of(t, scan)? != recorded.of(t) {
                out.push(t);
            }
        }
        Ok(out)
    }
}

/// The error for a table whose records are not the ones the vault last wrote.
pub(crate) fn mismatch(t: Table) -> StoreError {
    StoreError::Integrity {
        table: t.name(),
        detail: "its records are not the ones the vault last wrote: a record was rolled back, \
                 removed or added outside the vault (restore the file from a backup)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Map(BTreeMap<(Table, Vec<u8>), Vec<u8>>);

    impl Snapshot for Map {
        fn get(&self, t: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(&(t, k.to_vec())).cloned())
        }
        fn scan(
            &self,
            t: Table,
            visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<(), StoreError> {
            for ((table, k), v) in &self.0 {
                if *table == t && !visit(k, v) {
                    break;
                }
            }
            Ok(())
        }
    }

    fn apply(map: &mut Map, batch: &[Mutation]) {
        for m in batch {
            match m {
                Mutation::Put { table, key, value } => {
                    map.0.insert((*table, key.clone()), value.clone());
                }
                Mutation::Delete { table, key } => {
                    map.0.remove(&(*table, key.clone()));
                }
            }
        }
    }

    fn put(t: Table, k: &str, v: &str) -> Mutation {
        Mutation::Put {
            table: t,
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn incremental_digests_equal_a_rebuild_and_catch_any_rollback() {
        let ledger = Ledger::new(scaivault_crypto::RootKey::generate().authenticator("t"));
        let mut state = Map(BTreeMap::new());
        let mut tally = Tally::default();
        let batches = vec![
            vec![put(Table::Tokens, "a", "1"), put(Table::Tokens, "b", "1")],
            vec![put(Table::Tokens, "a", "2"), put(Table::Policies, "p", "x")],
            vec![Mutation::Delete {
                table: Table::Tokens,
                key: b"b".to_vec(),
            }],
        ];
        for b in &batches {
            tally = ledger.advance(&tally, &state, b).unwrap();
            apply(&mut state, b);
            let d = &tally.digests;
            let scan = |t: Table, v: &mut dyn FnMut(&[u8], &[u8]) -> bool| state.scan(t, v);
            // Incremental (batch 2 rewrites a record of batch 1 from the tally's memory,
            // batch 3 deletes one from an older batch, read back) equals recomputed.
            ledger
                .check(d, &[Table::Tokens, Table::Policies], &scan)
                .unwrap();
            assert!(ledger.differing(d, &scan).unwrap().is_empty());
        }
        let d = tally.digests;
        // Roll `a` back to its first value; bring the deleted `b` back; add a record.
        for (k, v) in [("a", "1"), ("b", "1"), ("c", "1")] {
            let mut tampered = Map(state.0.clone());
            tampered.0.insert((Table::Tokens, k.into()), v.into());
            let scan = |t: Table, v: &mut dyn FnMut(&[u8], &[u8]) -> bool| tampered.scan(t, v);
            assert_eq!(
                ledger.check(&d, &[Table::Tokens], &scan),
                Err(mismatch(Table::Tokens)),
                "{k}"
            );
            assert_eq!(ledger.differing(&d, &scan).unwrap(), vec![Table::Tokens]);
        }
        let round = Digests::decode(&d.encode()).unwrap();
        assert!(round == d);
        assert!(Digests::decode(b"{\"v\":1,\"tables\":{\"nope\":\"00\"}}").is_err());
    }
}
