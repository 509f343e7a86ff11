//! The vault file: header, unseal, and the sealed-record API the engine builds on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use scaivault_crypto::{
    Blinder, CryptoError, KdfParams, Kek, Keyring, RootKey, SecretBytes, TokenHasher, derive_kek,
    random_bytes,
};
use zeroize::Zeroizing;

use crate::backend::Backend;
use crate::error::StoreError;
use crate::header::{FORMAT_VERSION, Header};
use crate::pipeline::{Completion, Found, Job, Pipeline, RawTx};
use crate::redb_backend::RedbBackend;
use crate::table::Table;

const HEADER_KEY: &[u8] = b"header";

/// How to open the root key.
#[derive(Clone, Copy)]
pub enum Unlock<'a> {
    Passphrase(&'a [u8]),
    /// The bytes of a key file (high-entropy; no Argon2id needed).
    KeyFile(&'a [u8]),
    /// The offline recovery key made at `init` (32 random bytes).
    RecoveryKey(&'a [u8]),
}

struct Keys {
    root: RootKey,
    keyring: RwLock<Keyring>,
    blinder: Blinder,
    tokens: TokenHasher,
}

/// An unsealed vault: keys in memory, one writer thread, any number of readers.
pub struct Vault {
    path: PathBuf,
    backend: Arc<dyn Backend>,
    keys: Arc<Keys>,
    /// Read-locked by every write submission, write-locked only to stop the writer.
    pipeline: RwLock<Option<Pipeline>>,
}

/// Record counts per table: what the file reveals anyway, useful for status and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VaultStats {
    pub format_version: u32,
    pub data_keys: usize,
    pub active_data_key: u32,
    pub records: std::collections::BTreeMap<&'static str, u64>,
}

fn read_header(backend: &dyn Backend) -> Result<Header, StoreError> {
    let raw = backend
        .get(Table::Meta, HEADER_KEY)?
        .ok_or_else(|| StoreError::Corrupt("the file has no vault header".into()))?;
    Header::parse(&raw)
}

fn crypto_to_unlock(e: CryptoError) -> StoreError {
    match e {
        CryptoError::WeakParameters => {
            StoreError::Corrupt("the header's KDF parameters are out of range".into())
        }
        _ => StoreError::WrongPassphrase,
    }
}

fn kek_for(header: &Header, unlock: &Unlock<'_>) -> Result<(Kek, Vec<u8>), StoreError> {
    let bad_hex = || StoreError::Corrupt("the vault header is unreadable".into());
    match unlock {
        Unlock::Passphrase(p) => {
            let salt = header.salt_bytes().ok_or_else(bad_hex)?;
            let kek = derive_kek(p, &salt, header.kdf).map_err(crypto_to_unlock)?;
            Ok((
                kek,
                hex::decode(&header.wrapped_root).map_err(|_| bad_hex())?,
            ))
        }
        Unlock::KeyFile(material) | Unlock::RecoveryKey(material) => {
            let wrapped = match unlock {
                Unlock::KeyFile(_) => header.wrapped_root_keyfile.as_ref(),
                _ => header.wrapped_root_recovery.as_ref(),
            }
            .ok_or(StoreError::WrongPassphrase)?;
            Ok((
                Kek::from_key_material(material),
                hex::decode(wrapped).map_err(|_| bad_hex())?,
            ))
        }
    }
}

impl Vault {
    /// Creates a new vault file protected by `passphrase`.
    pub fn create(path: &Path, passphrase: &[u8], kdf: KdfParams) -> Result<Vault, StoreError> {
        let backend = RedbBackend::create(path)?;
        Self::create_with_backend(path, Arc::new(backend), passphrase, kdf)
    }

    /// Creates a vault in an empty store of any backend (`path` only names it).
    pub fn create_with_backend(
        path: &Path,
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<Vault, StoreError> {
        kdf.check()
            .map_err(|_| StoreError::Io("KDF parameters are below the floor".into()))?;
        if passphrase.is_empty() {
            return Err(StoreError::Io("the passphrase is empty".into()));
        }
        let salt: [u8; 16] = random_bytes();
        let kek = derive_kek(passphrase, &salt, kdf).map_err(crypto_to_unlock)?;
        let root = RootKey::generate();
        let keyring = Keyring::new();
        let header = Header {
            format_version: FORMAT_VERSION,
            kdf,
            salt: hex::encode(salt),
            wrapped_root: hex::encode(kek.wrap(&root)),
            wrapped_root_keyfile: None,
            wrapped_root_recovery: None,
            keyring: hex::encode(root.seal_keyring(&keyring)),
            created_at: scaivault_core::time::Timestamp::now().unix_seconds(),
        };
        let bytes = serde_json::to_vec(&header).expect("header serializes");
        backend.commit(&[crate::Mutation::Put {
            table: Table::Meta,
            key: HEADER_KEY.to_vec(),
            value: bytes,
        }])?;
        Ok(Self::start(path, backend, root, keyring))
    }

    /// Reads the header without writing anything (for status while sealed).
    pub fn read_header(path: &Path) -> Result<Header, StoreError> {
        read_header(&RedbBackend::open_read_only(path)?)
    }

    /// Opens and unseals a vault. A wrong passphrase fails before the file is opened for
    /// writing, so the file stays byte-for-byte unchanged.
    pub fn open(path: &Path, unlock: Unlock<'_>) -> Result<Vault, StoreError> {
        let (root, keyring) = {
            let ro = RedbBackend::open_read_only(path)?;
            let header = read_header(&ro)?;
            let (kek, wrapped) = kek_for(&header, &unlock)?;
            let root = kek.unwrap_root(&wrapped).map_err(crypto_to_unlock)?;
            let ring_blob = hex::decode(&header.keyring)
                .map_err(|_| StoreError::Corrupt("the vault header is unreadable".into()))?;
            let keyring = root
                .open_keyring(&ring_blob)
                .map_err(|_| StoreError::Integrity {
                    table: "meta",
                    detail: "the keyring failed to authenticate".into(),
                })?;
            (root, keyring)
        };
        let backend = RedbBackend::open(path)?;
        Ok(Self::start(path, Arc::new(backend), root, keyring))
    }

    fn start(path: &Path, backend: Arc<dyn Backend>, root: RootKey, keyring: Keyring) -> Vault {
        let keys = Arc::new(Keys {
            blinder: root.blinder(),
            tokens: root.token_hasher(),
            keyring: RwLock::new(keyring),
            root,
        });
        let sealer = keys.clone();
        let pipeline = Pipeline::start(
            backend.clone(),
            Arc::new(move |table, blinded, plain| sealer.seal(table, blinded, plain)),
        );
        Vault {
            path: path.to_owned(),
            backend,
            keys,
            pipeline: RwLock::new(Some(pipeline)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A MAC key for `purpose`, derived from this vault's root key.
    pub(crate) fn root_authenticator(&self, purpose: &str) -> scaivault_crypto::Authenticator {
        self.keys.root.authenticator(purpose)
    }

    /// Why writes cannot succeed now (a full disk), if they cannot.
    pub fn write_blocked(&self) -> Option<String> {
        self.backend.write_blocked()
    }

    pub fn token_hasher(&self) -> &TokenHasher {
        &self.keys.tokens
    }

    /// Reads one record as of the last durable commit.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<SecretBytes>, StoreError> {
        let blinded = self.keys.blind(table, key);
        match self.backend.get(table, &blinded)? {
            Some(blob) => self.keys.open(table, &blinded, &blob).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a record of an ordered table (keys are sequence numbers, not blinded).
    pub fn get_ordered(&self, table: Table, seq: u64) -> Result<Option<SecretBytes>, StoreError> {
        let key = seq.to_be_bytes();
        match self.backend.get(table, &key)? {
            Some(blob) => self.keys.open(table, &key, &blob).map(Some),
            None => Ok(None),
        }
    }

    /// Visits an ordered table newest first, below `before` if given. Each record is
    /// authenticated; a record that fails ends the scan with its error.
    pub fn scan_ordered_rev(
        &self,
        table: Table,
        before: Option<u64>,
        visit: &mut dyn FnMut(u64, SecretBytes) -> bool,
    ) -> Result<(), StoreError> {
        let mut failure = None;
        let bound = before.map(u64::to_be_bytes);
        self.backend
            .scan_rev(table, bound.as_ref().map(|b| b.as_slice()), &mut |k, v| {
                let Ok(seq) = <[u8; 8]>::try_from(k).map(u64::from_be_bytes) else {
                    failure = Some(StoreError::Integrity {
                        table: table.name(),
                        detail: "a key is not a sequence number".into(),
                    });
                    return false;
                };
                match self.keys.open(table, k, v) {
                    Ok(plain) => visit(seq, plain),
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })?;
        failure.map_or(Ok(()), Err)
    }

    /// Visits an ordered table oldest first (keys in ascending order).
    pub fn scan_ordered(
        &self,
        table: Table,
        visit: &mut dyn FnMut(u64, Result<SecretBytes, StoreError>) -> bool,
    ) -> Result<(), StoreError> {
        self.backend.scan(table, &mut |k, v| {
            let seq = <[u8; 8]>::try_from(k)
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX);
            visit(seq, self.keys.open(table, k, v))
        })
    }

    /// A consistent view for several reads that must agree.
    pub fn read_view(&self) -> Result<ReadView<'_>, StoreError> {
        Ok(ReadView {
            snapshot: self.backend.snapshot()?,
            keys: &self.keys,
        })
    }

    /// Decrypts every record of a table; stops early when `visit` returns `false`.
    pub fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(SecretBytes) -> bool,
    ) -> Result<(), StoreError> {
        let mut failure = None;
        self.backend
            .scan(table, &mut |k, v| match self.keys.open(table, k, v) {
                Ok(plain) => visit(plain),
                Err(e) => {
                    failure = Some(e);
                    false
                }
            })?;
        failure.map_or(Ok(()), Err)
    }

    /// Runs `f` inside the next group-commit batch and returns once that batch is durable.
    /// If `f` fails, none of its writes are made; `on_commit` hooks run (in commit order, on
    /// the writer thread) only when the batch is durable.
    pub async fn write<R, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit_job(f, reply)?;
        rx.await
            .unwrap_or_else(|_| Err(E::from(StoreError::Io("the write job failed".into()))))
    }

    /// The blocking form of [`Vault::write`], for callers outside an async runtime.
    pub fn write_blocking<R, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit_job(f, reply)?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(E::from(StoreError::Io("the write job failed".into()))))
    }

    fn submit_job<R, E>(
        &self,
        f: impl FnOnce(&mut WriteTx<'_, '_>) -> Result<R, E> + Send + 'static,
        reply: tokio::sync::oneshot::Sender<Result<R, E>>,
    ) -> Result<(), StoreError>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let keys = self.keys.clone();
        let job: Job = Box::new(move |raw: &mut RawTx<'_>| -> Completion {
            let mut tx = WriteTx {
                raw,
                keys: &keys,
                hooks: Vec::new(),
            };
            let result = f(&mut tx);
            let hooks = std::mem::take(&mut tx.hooks);
            raw.end_job(result.is_ok());
            Box::new(move |durable: Result<(), StoreError>| {
                let out = match durable {
                    Ok(()) => {
                        if result.is_ok() {
                            hooks.into_iter().for_each(|h| h());
                        }
                        result
                    }
                    Err(e) => Err(E::from(e)),
                };
                let _ = reply.send(out);
            })
        });
        let guard = self.pipeline.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().ok_or(StoreError::Closed)?.submit(job)
    }

    /// Changes the passphrase: re-wraps the root key only, O(1) whatever the vault holds.
    pub async fn change_passphrase(
        &self,
        new: Zeroizing<Vec<u8>>,
        kdf: KdfParams,
    ) -> Result<(), StoreError> {
        kdf.check()
            .map_err(|_| StoreError::Io("KDF parameters are below the floor".into()))?;
        let salt: [u8; 16] = random_bytes();
        let kek = derive_kek(&new, &salt, kdf).map_err(crypto_to_unlock)?;
        let wrapped = hex::encode(kek.wrap(&self.keys.root));
        self.update_header(move |h| {
            h.kdf = kdf;
            h.salt = hex::encode(salt);
            h.wrapped_root = wrapped;
        })
        .await
    }

    /// Lets a key file (any high-entropy bytes) unseal the vault, besides the passphrase.
    pub async fn set_key_file(&self, material: Zeroizing<Vec<u8>>) -> Result<(), StoreError> {
        let wrapped = hex::encode(Kek::from_key_material(&material).wrap(&self.keys.root));
        self.update_header(move |h| h.wrapped_root_keyfile = Some(wrapped))
            .await
    }

    /// Sets (or replaces) the offline recovery key; the previous one stops working.
    pub async fn set_recovery_key(&self, material: Zeroizing<Vec<u8>>) -> Result<(), StoreError> {
        let wrapped = hex::encode(Kek::from_key_material(&material).wrap(&self.keys.root));
        self.update_header(move |h| h.wrapped_root_recovery = Some(wrapped))
            .await
    }

    /// Opens another vault file (a backup) with this vault's keys, read-only. Data keys are
    /// only ever added, so this keyring opens every record of an older copy.
    pub fn open_sibling(&self, path: &Path) -> Result<Vault, StoreError> {
        let backend = RedbBackend::open_read_only(path)?;
        Ok(Vault {
            path: path.to_owned(),
            backend: Arc::new(backend),
            keys: self.keys.clone(),
            pipeline: RwLock::new(None),
        })
    }

    /// Visits every record of a table, each opened on its own, so a verifier can report every
    /// record that fails instead of stopping at the first.
    pub fn scan_checked(
        &self,
        table: Table,
        visit: &mut dyn FnMut(Result<SecretBytes, StoreError>) -> bool,
    ) -> Result<(), StoreError> {
        self.backend
            .scan(table, &mut |k, v| visit(self.keys.open(table, k, v)))
    }

    /// Adds a data key online; every write from now on is sealed with it, older records keep
    /// opening with the key they name.
    pub async fn rotate_data_key(&self) -> Result<u32, StoreError> {
        let keys = self.keys.clone();
        // Rotated on the writer thread, inside the job that writes the new keyring: records
        // are sealed when their batch commits, so a record sealed with the new key is in the
        // same commit as the keyring that opens it, or a later one. If that commit fails, the
        // error reaches the operator; redb then refuses every later write until the file is
        // reopened, so nothing sealed with the unrecorded key can reach the file either.
        self.update_header(move |h| {
            let mut ring = keys.keyring.write().unwrap_or_else(|p| p.into_inner());
            let id = ring.rotate();
            h.keyring = hex::encode(keys.root.seal_keyring(&ring));
            id
        })
        .await
    }

    async fn update_header<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Header) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        self.write(move |tx| {
            let Some(Found::Stored(raw)) = tx.raw.get(Table::Meta, HEADER_KEY)? else {
                return Err(StoreError::Corrupt("no header".into()));
            };
            let mut header: Header = serde_json::from_slice(&raw)
                .map_err(|_| StoreError::Corrupt("the vault header is unreadable".into()))?;
            let out = change(&mut header);
            tx.raw.put_raw(
                Table::Meta,
                HEADER_KEY.to_vec(),
                serde_json::to_vec(&header).expect("serializes"),
            );
            Ok::<_, StoreError>(out)
        })
        .await
    }

    pub fn stats(&self) -> Result<VaultStats, StoreError> {
        let mut records = std::collections::BTreeMap::new();
        for t in Table::ALL.iter().filter(|t| **t != Table::Meta) {
            let mut n = 0u64;
            self.backend.scan(*t, &mut |_, _| {
                n += 1;
                true
            })?;
            records.insert(t.name(), n);
        }
        let ring = self.keys.keyring.read().unwrap_or_else(|p| p.into_inner());
        Ok(VaultStats {
            format_version: FORMAT_VERSION,
            data_keys: ring.len(),
            active_data_key: ring.active_id(),
            records,
        })
    }

    /// Writes a consistent, still-encrypted copy of the vault file.
    pub fn copy_to(&self, out: &Path) -> Result<(), StoreError> {
        self.backend.copy_to(out)
    }

    /// Stops the writer after the jobs already queued; later writes fail with `Closed`.
    pub fn shutdown(&self) {
        let pipeline = self
            .pipeline
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = pipeline {
            p.stop();
        }
    }

    /// The blinded key a record is stored under, for tests that damage or delete it in the
    /// file as someone with write access to it could.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn blinded_key_for_tests(&self, table: Table, key: &[u8]) -> Vec<u8> {
        self.keys.blind(table, key)
    }

    /// The sealed bytes of one record, for tamper tests that need to find it in the file.
    #[doc(hidden)]
    pub fn raw_record(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.backend.get(table, &self.keys.blind(table, key))
    }
}

impl Drop for Vault {
    /// Waits for the writer so that the file is closed when the vault is gone.
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Keys {
    fn blind(&self, table: Table, key: &[u8]) -> Vec<u8> {
        self.blinder.blind(table.name(), key).to_vec()
    }

    fn aad(table: Table, blinded: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + table.name().len() + blinded.len());
        aad.extend_from_slice(b"scaivault/v1\0");
        aad.extend_from_slice(table.name().as_bytes());
        aad.push(0);
        aad.extend_from_slice(blinded);
        aad
    }

    fn seal(&self, table: Table, blinded: &[u8], plain: &[u8]) -> Vec<u8> {
        let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        ring.seal(&Self::aad(table, blinded), plain)
    }

    fn open(&self, table: Table, blinded: &[u8], blob: &[u8]) -> Result<SecretBytes, StoreError> {
        let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        ring.open(&Self::aad(table, blinded), blob)
            .map_err(|e| StoreError::Integrity {
                table: table.name(),
                detail: match e {
                    CryptoError::UnknownKey(id) => {
                        format!("a record names data key {id}, which the keyring does not hold")
                    }
                    CryptoError::Malformed => {
                        "a record is malformed (truncated or overwritten)".into()
                    }
                    _ => "a record failed to authenticate (tampered, moved or replaced)".into(),
                },
            })
    }
}

/// Reads from one commit, with the same blinding and opening as [`Vault::get`].
pub struct ReadView<'v> {
    snapshot: Box<dyn crate::backend::Snapshot + 'v>,
    keys: &'v Keys,
}

impl ReadView<'_> {
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<SecretBytes>, StoreError> {
        let blinded = self.keys.blind(table, key);
        match self.snapshot.get(table, &blinded)? {
            Some(blob) => self.keys.open(table, &blinded, &blob).map(Some),
            None => Ok(None),
        }
    }
}

/// A write job's view: logical keys in, blinded keys and sealed values out.
pub struct WriteTx<'r, 'b> {
    raw: &'r mut RawTx<'b>,
    keys: &'r Keys,
    hooks: Vec<Box<dyn FnOnce() + Send>>,
}

impl WriteTx<'_, '_> {
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<SecretBytes>, StoreError> {
        let blinded = self.keys.blind(table, key);
        match self.raw.get(table, &blinded)? {
            Some(Found::Stored(blob)) => self.keys.open(table, &blinded, &blob).map(Some),
            Some(Found::Plain(plain)) => Ok(Some(plain)),
            None => Ok(None),
        }
    }

    /// Writes a record; it is sealed when the batch commits.
    pub fn put(&mut self, table: Table, key: &[u8], plaintext: &[u8]) {
        debug_assert!(
            table != Table::Meta,
            "the meta table holds only the plaintext header"
        );
        let blinded = self.keys.blind(table, key);
        self.raw
            .put_plain(table, blinded, SecretBytes::from_vec(plaintext.to_vec()));
    }

    /// Writes a record under a sequence number: ordered tables keep their order in the file.
    pub fn put_ordered(&mut self, table: Table, seq: u64, plaintext: &[u8]) {
        let key = seq.to_be_bytes().to_vec();
        self.raw
            .put_plain(table, key, SecretBytes::from_vec(plaintext.to_vec()));
    }

    pub fn delete_ordered(&mut self, table: Table, seq: u64) {
        self.raw.delete(table, seq.to_be_bytes().to_vec());
    }

    pub fn delete(&mut self, table: Table, key: &[u8]) {
        let blinded = self.keys.blind(table, key);
        self.raw.delete(table, blinded);
    }

    /// Runs `hook` after the batch is durable, before the caller is answered.
    pub fn on_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.hooks.push(Box::new(hook));
    }
}
