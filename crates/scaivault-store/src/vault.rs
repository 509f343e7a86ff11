//! The vault file: header, unseal, and the sealed-record API the engine builds on.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use scaivault_crypto::{
    Authenticator, Blinder, CryptoError, KdfParams, Kek, Keyring, Recipient, RootKey, SecretBytes,
    TokenHasher, UnlockKey, derive_kek, random_bytes,
};
use zeroize::Zeroizing;

use crate::backend::{Backend, Mutation};
use crate::error::StoreError;
use crate::follow::Follow;
use crate::header::{FORMAT_VERSION, Header};
use crate::ledger::{CHECKED_AT_OPEN, Digests, Ledger, STATE_KEY, Tally, mismatch};
use crate::pg_backend::{PgBackend, redacted};
use crate::pipeline::{Completion, Found, Job, Pipeline, RawTx, WriterKeys, commit_with_ledger};
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

/// One of the header's ways in, as [`Unlock`] names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Passphrase,
    KeyFile,
    Recovery,
}

struct Keys {
    /// Replaced, under this lock, when the root key is (a passphrase, key-file or recovery-key
    /// change, a rekey); what derives from it is only the keyring's seal and the header's tag.
    root: RwLock<RootKey>,
    /// Moves, under the root lock, each time the root key is replaced: the writer then moves
    /// the ledger to the new root key.
    generation: std::sync::atomic::AtomicU64,
    /// The generation whose ledger is durable: it lags `generation` while a root-key change
    /// is being committed (and forever if that commit failed).
    committed: std::sync::atomic::AtomicU64,
    keyring: RwLock<Keyring>,
    blinder: Blinder,
    tokens: TokenHasher,
}

/// What replacing the root key did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RootChange {
    /// The data key every write now uses.
    pub active_data_key: u32,
    /// Ways in that stopped working: slots of a version-1 header (a key file or recovery key
    /// set up before this version) cannot be re-wrapped without their key; set them again.
    #[serde(rename = "dropped_unlock_methods")]
    pub dropped: Vec<&'static str>,
}

/// An unsealed vault: keys in memory, one writer thread, any number of readers.
pub struct Vault {
    path: PathBuf,
    backend: Arc<dyn Backend>,
    keys: Arc<Keys>,
    /// Read-locked by every write submission, write-locked only to stop the writer.
    pipeline: RwLock<Option<Pipeline>>,
    /// What the in-memory indexes have followed of other nodes' commits.
    follow: Arc<Follow>,
}

/// Record counts per table: what the file reveals anyway, useful for status and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VaultStats {
    pub format_version: u32,
    pub data_keys: usize,
    pub active_data_key: u32,
    pub records: std::collections::BTreeMap<&'static str, u64>,
}

/// A vault's location names a PostgreSQL database when it is a connection string: a URL
/// (`postgresql://`, `postgres://`) or libpq's keyword form (`host=… dbname=…`); anything else
/// is a file. (A keyword-form string was once taken for a file name, password and all.)
pub fn database_url(location: &Path) -> Option<&str> {
    location.to_str().filter(|s| {
        s.starts_with("postgresql://")
            || s.starts_with("postgres://")
            || s.split_whitespace().any(|w| {
                ["host=", "dbname=", "hostaddr="]
                    .iter()
                    .any(|k| w.starts_with(k))
            })
    })
}

/// How a vault's location is shown (in logs, status, errors): a database without its
/// password.
pub fn shown_location(location: &Path) -> PathBuf {
    shown(location)
}

fn shown(location: &Path) -> PathBuf {
    match database_url(location) {
        Some(url) => PathBuf::from(redacted(url)),
        None => location.to_owned(),
    }
}

/// Every record of `src`, from one consistent view, into `dst` in batches.
pub(crate) fn copy_records(src: &dyn Backend, dst: &dyn Backend) -> Result<u64, StoreError> {
    let snap = src.snapshot()?;
    let mut n = 0u64;
    for t in Table::ALL {
        let mut batch = Vec::new();
        let mut failed = None;
        snap.scan(*t, &mut |k, v| {
            batch.push(Mutation::Put {
                table: *t,
                key: k.to_vec(),
                value: v.to_vec(),
            });
            n += 1;
            if batch.len() >= 10_000
                && let Err(e) = dst.commit(&std::mem::take(&mut batch))
            {
                failed = Some(e);
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        dst.commit(&batch)?;
    }
    if dst.get(Table::Meta, HEADER_KEY)?.is_none() {
        return Err(StoreError::Corrupt("the source has no vault header".into()));
    }
    Ok(n)
}

/// The header and its bytes as stored.
fn read_header(backend: &dyn Backend) -> Result<(Header, Vec<u8>), StoreError> {
    let raw = backend
        .get(Table::Meta, HEADER_KEY)?
        .ok_or_else(|| StoreError::Corrupt("the file has no vault header".into()))?;
    Ok((Header::parse(&raw)?, raw))
}

fn crypto_to_unlock(e: CryptoError) -> StoreError {
    match e {
        CryptoError::WeakParameters => {
            StoreError::Corrupt("the header's KDF parameters are out of range".into())
        }
        _ => StoreError::WrongPassphrase,
    }
}

fn header_unreadable() -> StoreError {
    StoreError::Corrupt("the vault header is unreadable".into())
}

fn header_integrity(detail: &str) -> StoreError {
    StoreError::Integrity {
        table: "meta",
        detail: detail.into(),
    }
}

/// Opens the root key with `unlock`. Also returns, for the slot used, the key that unwraps
/// it, so that a version-1 slot can be turned into a recipient wrap at upgrade.
fn open_root(
    header: &Header,
    unlock: &Unlock<'_>,
) -> Result<(RootKey, Slot, UnlockKey), StoreError> {
    let (slot, wrapped, recipient, key, legacy) = match unlock {
        Unlock::Passphrase(p) => {
            let salt = header.salt_bytes().ok_or_else(header_unreadable)?;
            let kek = derive_kek(p, &salt, header.kdf).map_err(crypto_to_unlock)?;
            (
                Slot::Passphrase,
                Some(&header.wrapped_root),
                &header.passphrase_recipient,
                kek.unlock_key(),
                kek,
            )
        }
        Unlock::KeyFile(m) => (
            Slot::KeyFile,
            header.wrapped_root_keyfile.as_ref(),
            &header.keyfile_recipient,
            UnlockKey::from_material(m),
            Kek::from_key_material(m),
        ),
        Unlock::RecoveryKey(m) => (
            Slot::Recovery,
            header.wrapped_root_recovery.as_ref(),
            &header.recovery_recipient,
            UnlockKey::from_material(m),
            Kek::from_key_material(m),
        ),
    };
    let blob = hex::decode(wrapped.ok_or(StoreError::WrongPassphrase)?)
        .map_err(|_| header_unreadable())?;
    let root = match recipient {
        Some(_) => key.unwrap_root(&blob),
        None => legacy.unwrap_root(&blob),
    }
    .map_err(crypto_to_unlock)?;
    Ok((root, slot, key))
}

/// Opens the header with `unlock` and checks it: its tag, and the slot's proof.
#[allow(clippy::type_complexity)]
fn unlock_header(
    header: Header,
    raw: &[u8],
    unlock: &Unlock<'_>,
) -> Result<(RootKey, Keyring, Slot, UnlockKey, Header), StoreError> {
    let (root, slot, key) = open_root(&header, unlock)?;
    let keyring = open_keyring(&header, &root)?;
    check_header_tag(&header, raw, &root, &keyring)?;
    let mut header = header;
    check_slot_proof(&mut header, slot, &key, &keyring)?;
    Ok((root, keyring, slot, key, header))
}

fn open_keyring(header: &Header, root: &RootKey) -> Result<Keyring, StoreError> {
    let blob = hex::decode(&header.keyring).map_err(|_| header_unreadable())?;
    root.open_keyring(&blob)
        .map_err(|_| header_integrity("the keyring failed to authenticate"))
}

/// Refuses a header whose tag does not check. Only a version-1 file, whose keyring has no
/// lineage key, may lack one; stripping the tag from a later file is tampering. The tag
/// covers the header's canonical form, and a tagged header must be stored in exactly that
/// form (no duplicate or unknown fields, nothing that parses the same but reads otherwise).
fn check_header_tag(
    header: &Header,
    raw: &[u8],
    root: &RootKey,
    ring: &Keyring,
) -> Result<(), StoreError> {
    if header.mac.is_some() && header.to_bytes() != raw {
        return Err(header_integrity(
            "the vault header is not in the form it was written in",
        ));
    }
    match header.mac.as_deref().map(hex::decode) {
        Some(Ok(tag))
            if root
                .authenticator("header")
                .verify(&header.signed_bytes(), &tag) =>
        {
            Ok(())
        }
        Some(_) => Err(header_integrity(
            "the vault header failed to authenticate: a field was changed or grafted from another copy of the file",
        )),
        None if ring.has_lineage() || header.format_version >= 2 => Err(header_integrity(
            "the vault header has lost its authentication tag",
        )),
        None => Ok(()),
    }
}

fn tag_header(header: &mut Header, root: &RootKey) {
    header.mac = None;
    header.mac = Some(hex::encode(
        root.authenticator("header").tag(&header.signed_bytes()),
    ));
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Passphrase => "passphrase",
            Slot::KeyFile => "key file",
            Slot::Recovery => "recovery key",
        }
    }

    fn proof(self, header: &mut Header) -> &mut Option<String> {
        match self {
            Slot::Passphrase => &mut header.passphrase_proof,
            Slot::KeyFile => &mut header.keyfile_proof,
            Slot::Recovery => &mut header.recovery_proof,
        }
    }

    fn recipient(self, header: &Header) -> Option<&String> {
        match self {
            Slot::Passphrase => header.passphrase_recipient.as_ref(),
            Slot::KeyFile => header.keyfile_recipient.as_ref(),
            Slot::Recovery => header.recovery_recipient.as_ref(),
        }
    }
}

/// Records that the holder of `key` set `slot` up now: a tag binding the slot to the
/// keyring's newest data key, made in this same change (see `UnlockKey::slot_tag`).
fn prove_slot(header: &mut Header, slot: Slot, key: &UnlockKey, ring: &Keyring) {
    let anchor = ring.active_id();
    let fingerprint = ring.anchor(anchor).expect("the active key is in the ring");
    let tag = key.slot_tag(slot.name(), anchor, &fingerprint);
    *slot.proof(header) = Some(format!("{anchor}:{}", hex::encode(tag)));
}

/// Refuses a recipient slot whose root key was not wrapped by the vault: its tag must check
/// under the unlock key, and the keyring the root key opened must hold its anchor. A header
/// someone built by wrapping a root key of their own to the (public) recipient fails here.
fn check_slot_proof(
    header: &mut Header,
    slot: Slot,
    key: &UnlockKey,
    ring: &Keyring,
) -> Result<(), StoreError> {
    if slot.recipient(header).is_none() {
        // A format-1 wrap: sealed under the key itself, which authenticates it.
        return Ok(());
    }
    let refused = || {
        header_integrity(&format!(
            "the {} slot was not set up by this vault (a root key wrapped to it by someone else)",
            slot.name()
        ))
    };
    let proof = slot.proof(header).clone().ok_or_else(refused)?;
    let (anchor, tag) = proof.split_once(':').ok_or_else(refused)?;
    let anchor: u32 = anchor.parse().map_err(|_| refused())?;
    let tag = hex::decode(tag).map_err(|_| refused())?;
    let fingerprint = ring.anchor(anchor).ok_or_else(refused)?;
    if !scaivault_crypto::constant_time_eq(&key.slot_tag(slot.name(), anchor, &fingerprint), &tag) {
        return Err(refused());
    }
    Ok(())
}

/// Wraps `root` for the slot `slot` through its recipient.
fn set_recipient(header: &mut Header, slot: Slot, to: &Recipient, root: &RootKey) {
    let wrapped = hex::encode(to.wrap(root));
    match slot {
        Slot::Passphrase => {
            header.passphrase_recipient = Some(to.to_hex());
            header.wrapped_root = wrapped;
        }
        Slot::KeyFile => {
            header.keyfile_recipient = Some(to.to_hex());
            header.wrapped_root_keyfile = Some(wrapped);
        }
        Slot::Recovery => {
            header.recovery_recipient = Some(to.to_hex());
            header.wrapped_root_recovery = Some(wrapped);
        }
    }
}

/// Replaces the root key (see [`RootKey::successor`]) and re-wraps it for every slot through
/// its recipient; a version-1 key-file or recovery slot cannot be, and is removed (reported).
fn replace_root(keys: &Keys, header: &mut Header) -> Result<RootChange, StoreError> {
    let Some(pass_to) = header
        .passphrase_recipient
        .as_deref()
        .and_then(Recipient::from_hex)
    else {
        return Err(StoreError::Refused(
            "this vault's passphrase slot predates file format 2: unseal it once with its passphrase (which upgrades the slot), then try again".into(),
        ));
    };
    let mut ring = keys.keyring.write().unwrap_or_else(|p| p.into_inner());
    let mut root = keys.root.write().unwrap_or_else(|p| p.into_inner());
    let next = root.successor(&mut ring);
    keys.generation
        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    header.wrapped_root = hex::encode(pass_to.wrap(&next));
    let mut dropped = Vec::new();
    for (name, wrapped, to) in [
        (
            "key file",
            &mut header.wrapped_root_keyfile,
            &header.keyfile_recipient,
        ),
        (
            "recovery key",
            &mut header.wrapped_root_recovery,
            &header.recovery_recipient,
        ),
    ] {
        if wrapped.is_none() {
            continue;
        }
        match to.as_deref().and_then(Recipient::from_hex) {
            Some(r) => *wrapped = Some(hex::encode(r.wrap(&next))),
            None => {
                *wrapped = None;
                dropped.push(name);
            }
        }
    }
    header.keyring = hex::encode(next.seal_keyring(&ring));
    *root = next;
    Ok(RootChange {
        active_data_key: ring.active_id(),
        dropped,
    })
}

/// Opens the file with `open`, waiting until `deadline` while another handle in this process
/// (a vault being sealed, whose last requests are finishing) still holds it.
fn when_free(
    deadline: Instant,
    open: impl Fn() -> Result<RedbBackend, StoreError>,
) -> Result<RedbBackend, StoreError> {
    loop {
        match open() {
            Err(StoreError::Locked) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

impl Vault {
    /// Creates a new vault file protected by `passphrase`.
    pub fn create(path: &Path, passphrase: &[u8], kdf: KdfParams) -> Result<Vault, StoreError> {
        if let Some(url) = database_url(path) {
            let backend = PgBackend::connect(url, true)?;
            return Self::create_with_backend(&shown(path), Arc::new(backend), passphrase, kdf);
        }
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
        let mut header = Header {
            format_version: FORMAT_VERSION,
            kdf,
            salt: hex::encode(salt),
            wrapped_root: String::new(),
            passphrase_recipient: None,
            passphrase_proof: None,
            wrapped_root_keyfile: None,
            keyfile_recipient: None,
            keyfile_proof: None,
            wrapped_root_recovery: None,
            recovery_recipient: None,
            recovery_proof: None,
            keyring: hex::encode(root.seal_keyring(&keyring)),
            created_at: scaivault_core::time::Timestamp::now().unix_seconds(),
            mac: None,
        };
        let key = kek.unlock_key();
        set_recipient(&mut header, Slot::Passphrase, &key.recipient(), &root);
        prove_slot(&mut header, Slot::Passphrase, &key, &keyring);
        tag_header(&mut header, &root);
        Self::start_with(path, backend, root, keyring, Digests::default(), &header)
    }

    /// Copies every record of the vault at `from` into a new, empty store at `to` (a file or
    /// a database, either way round) as it is: the header, the sealed records under their
    /// blinded keys, the ledger and the audit chain. Nothing is decrypted and no key is
    /// needed; the copy opens with the same passphrase, key file or recovery key, and its
    /// audit chain continues from the same head. A copy that fails leaves no vault at `to`.
    /// Returns the number of records copied.
    pub fn copy_store(from: &Path, to: &Path) -> Result<u64, StoreError> {
        let src: Box<dyn Backend> = match database_url(from) {
            Some(url) => Box::new(PgBackend::connect(url, false)?),
            None => Box::new(RedbBackend::open_read_only(from)?),
        };
        let copied = match database_url(to) {
            Some(url) => {
                let dst = PgBackend::connect(url, true)?;
                let r = copy_records(&*src, &dst);
                if r.is_err() {
                    dst.clear()?;
                }
                r
            }
            None => {
                let dst = RedbBackend::create(to)?;
                let r = copy_records(&*src, &dst);
                drop(dst);
                if r.is_err() {
                    let _ = std::fs::remove_file(to);
                }
                r
            }
        }?;
        Ok(copied)
    }

    /// Reads the header without writing anything (for status while sealed).
    pub fn read_header(path: &Path) -> Result<Header, StoreError> {
        if let Some(url) = database_url(path) {
            return Ok(read_header(&PgBackend::connect(url, false)?)?.0);
        }
        Ok(read_header(&RedbBackend::open_read_only(path)?)?.0)
    }

    /// This open vault's header as the file holds it now.
    pub fn header(&self) -> Result<Header, StoreError> {
        Ok(read_header(&*self.backend)?.0)
    }

    /// Opens and unseals a vault. A wrong passphrase fails before the file is opened for
    /// writing, so the file stays byte-for-byte unchanged. So does a header that fails its
    /// tag. Then the tables in [`CHECKED_AT_OPEN`] are checked against the ledger.
    pub fn open(path: &Path, unlock: Unlock<'_>) -> Result<Vault, StoreError> {
        Self::open_waiting(path, unlock, Duration::ZERO)
    }

    /// [`Vault::open`], waiting up to `patience` for another handle of this process on the
    /// file to close. The key is checked once, before any waiting.
    pub fn open_waiting(
        path: &Path,
        unlock: Unlock<'_>,
        patience: Duration,
    ) -> Result<Vault, StoreError> {
        if let Some(url) = database_url(path) {
            // A database has no read-only handle to check the key on first: nothing is written
            // before the key has opened the header anyway.
            let backend: Arc<dyn Backend> = Arc::new(PgBackend::connect(url, false)?);
            let (header, raw) = read_header(&*backend)?;
            let (root, keyring, slot, key, header) = unlock_header(header, &raw, &unlock)?;
            return Self::finish_open(&shown(path), backend, root, keyring, slot, &key, header);
        }
        let deadline = Instant::now() + patience;
        let (root, keyring, slot, key, header, raw) = {
            let ro = when_free(deadline, || RedbBackend::open_read_only(path))?;
            let (header, raw) = read_header(&ro)?;
            let (root, keyring, slot, key, header) = unlock_header(header, &raw, &unlock)?;
            (root, keyring, slot, key, header, raw)
        };
        let backend: Arc<dyn Backend> = Arc::new(when_free(deadline, || RedbBackend::open(path))?);
        // What was checked is what the writable handle sees (nothing changed in between).
        if read_header(&*backend)?.1 != raw {
            return Err(header_integrity(
                "the vault header changed while it was checked",
            ));
        }
        Self::finish_open(path, backend, root, keyring, slot, &key, header)
    }

    /// The rest of an unseal once the key has opened the header: the ledger check, a legacy
    /// slot's conversion or a format-1 upgrade, and the writer's start.
    fn finish_open(
        path: &Path,
        backend: Arc<dyn Backend>,
        root: RootKey,
        keyring: Keyring,
        slot: Slot,
        key: &UnlockKey,
        header: Header,
    ) -> Result<Vault, StoreError> {
        if !keyring.has_lineage() {
            return Self::upgrade(path, backend, root, keyring, header, slot, key);
        }
        let ledger = Ledger::new(root.authenticator("ledger"));
        // One view for both: other nodes may be committing meanwhile.
        let view = backend.snapshot()?;
        let digests = read_ledger(&*view, &keyring)?;
        ledger.check(&digests, CHECKED_AT_OPEN, &|t, v| view.scan(t, v))?;
        drop(view);
        if slot_is_legacy(&header, slot) {
            // A slot still in its format-1 form (the file was upgraded while unsealed another
            // way): now that its key is at hand, wrap the root key to it as a recipient, so
            // that a later root-key change keeps it.
            let (mut header, mut keyring) = (header, keyring);
            keyring.rotate();
            header.keyring = hex::encode(root.seal_keyring(&keyring));
            set_recipient(&mut header, slot, &key.recipient(), &root);
            prove_slot(&mut header, slot, key, &keyring);
            tag_header(&mut header, &root);
            return Self::start_with(path, backend, root, keyring, digests, &header);
        }
        Self::start(
            path,
            backend,
            Arc::new(Keys::new(root, keyring)),
            Tally::new(digests),
        )
    }

    /// A version-1 file's first unseal by this binary: the keyring keeps the root key as its
    /// lineage, the slot that opened the vault becomes a recipient wrap, the header gets its
    /// tag and version 2, and the ledger is built from the records as they are, in one commit.
    /// A file that already holds a ledger is not a version-1 file but a later one with an old
    /// header put back: that is refused.
    fn upgrade(
        path: &Path,
        backend: Arc<dyn Backend>,
        root: RootKey,
        mut keyring: Keyring,
        mut header: Header,
        slot: Slot,
        key: &UnlockKey,
    ) -> Result<Vault, StoreError> {
        if backend.get(Table::Integrity, STATE_KEY)?.is_some() {
            return Err(header_integrity(
                "a format-1 header on a file that holds a ledger: an old header was put back",
            ));
        }
        keyring.adopt_lineage(&root);
        // A fresh data key to anchor the converted slot to: every holder of the file's
        // format-1 keys has the old one.
        keyring.rotate();
        set_recipient(&mut header, slot, &key.recipient(), &root);
        prove_slot(&mut header, slot, key, &keyring);
        header.format_version = FORMAT_VERSION;
        header.keyring = hex::encode(root.seal_keyring(&keyring));
        tag_header(&mut header, &root);
        let ledger = Ledger::new(root.authenticator("ledger"));
        let digests = ledger.rebuild(&|t, v| backend.scan(t, v))?;
        tracing::info!("upgraded the vault file to format {FORMAT_VERSION} (header tag, ledger)");
        Self::start_with(path, backend, root, keyring, digests, &header)
    }

    /// Writes `header` and the ledger it leads to in one commit, then starts the writer.
    fn start_with(
        path: &Path,
        backend: Arc<dyn Backend>,
        root: RootKey,
        keyring: Keyring,
        digests: Digests,
        header: &Header,
    ) -> Result<Vault, StoreError> {
        let keys = Arc::new(Keys::new(root, keyring));
        let (_, ledger) = keys.ledger();
        let mut tally = Tally::new(digests);
        commit_with_ledger(
            backend.turn()?,
            &*keys,
            &ledger,
            &mut tally,
            vec![Mutation::Put {
                table: Table::Meta,
                key: HEADER_KEY.to_vec(),
                value: header.to_bytes(),
            }],
            &Default::default(),
        )?;
        Self::start(path, backend, keys, tally)
    }

    fn start(
        path: &Path,
        backend: Arc<dyn Backend>,
        keys: Arc<Keys>,
        tally: Tally,
    ) -> Result<Vault, StoreError> {
        // The engine loads its indexes after this: they hold at least this commit.
        let follow = Arc::new(Follow::new(backend.commits()?.unwrap_or_default()));
        let pipeline = Pipeline::start(backend.clone(), keys.clone(), tally, follow.clone());
        Ok(Vault {
            path: path.to_owned(),
            backend,
            keys,
            pipeline: RwLock::new(Some(pipeline)),
            follow,
        })
    }

    /// Brings this node's in-memory indexes up to the other nodes' commits (a database
    /// several nodes share; nothing to do on a file). One query when nothing moved; called at
    /// the start of every authenticated request, so a change acknowledged by any node holds
    /// for the next request on every node.
    pub fn follow(&self) -> Result<(), StoreError> {
        if let Some(why) = self.follow.broken() {
            return Err(StoreError::Unavailable(why));
        }
        let Some(now) = self.backend.commits()? else {
            return Ok(());
        };
        if !self.follow.behind(&now) {
            return Ok(());
        }
        let mut known = self.follow.lock();
        // Again under the lock: the writer may have moved on while this waited.
        let now = self.backend.commits()?.unwrap_or(now);
        self.follow.catch_up(&mut known, &now)
    }

    /// What reloads the in-memory indexes of the given tables when another node changed them
    /// (the engine's; see [`Vault::follow`]).
    pub fn set_follower(&self, f: Arc<crate::Follower>) {
        self.follow.set_follower(f);
    }

    /// Connections and call latency of a vault on a database (metrics).
    pub fn database_stats(&self) -> Option<crate::DatabaseStats> {
        self.backend.database_stats()
    }

    /// Whether this node runs the once-per-vault work (see [`Backend::leads`]).
    pub fn leads(&self) -> bool {
        self.backend.leads()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A MAC key for `purpose` that outlives root-key changes (backup trailers).
    pub(crate) fn durable_authenticator(&self, purpose: &str) -> Authenticator {
        self.keys.durable_authenticator(purpose)
    }

    /// Checks every table against the ledger in one consistent view, for `operator verify`:
    /// one error per table whose records are not the ones the vault wrote.
    pub fn verify_ledger(&self) -> Result<Vec<StoreError>, StoreError> {
        // While a root-key change is being committed, the keys in memory are ahead of the
        // file's: wait for it (a change whose commit failed never catches up). A change
        // between the snapshot and the key read: check again from a fresh snapshot.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (generation, ledger) = self.keys.ledger();
            if self
                .keys
                .committed
                .load(std::sync::atomic::Ordering::Acquire)
                != generation
            {
                if Instant::now() > deadline {
                    return Err(StoreError::Refused(
                        "a root-key change has not been committed (it failed, or is still running): restart the server, then verify".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let snapshot = self.backend.snapshot()?;
            let digests = {
                let ring = self.keys.keyring.read().unwrap_or_else(|p| p.into_inner());
                read_ledger(&*snapshot, &ring)
            };
            if self.keys.ledger().0 != generation {
                continue;
            }
            return Ok(ledger
                .differing(&digests?, &|t, v| snapshot.scan(t, v))?
                .into_iter()
                .map(mismatch)
                .collect());
        }
    }

    /// Why writes cannot succeed now (a full disk, a database out of reach, keys changed on
    /// another node), if they cannot.
    pub fn write_blocked(&self) -> Option<String> {
        self.follow
            .broken()
            .or_else(|| self.backend.write_blocked())
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

    /// Changes the passphrase and replaces the root key (see [`RootKey::successor`]): the old
    /// passphrase, with any later copy of the file, opens nothing written from now on. O(1)
    /// whatever the vault holds: no record is rewritten.
    ///
    /// `kdf`: the Argon2id parameters for the new passphrase; `None` keeps the current ones.
    pub async fn change_passphrase(
        &self,
        new: Zeroizing<Vec<u8>>,
        kdf: Option<KdfParams>,
    ) -> Result<RootChange, StoreError> {
        let kdf = match kdf {
            Some(k) => k,
            None => self.header()?.kdf,
        };
        kdf.check()
            .map_err(|_| StoreError::Io("KDF parameters are below the floor".into()))?;
        let salt: [u8; 16] = random_bytes();
        let kek = derive_kek(&new, &salt, kdf).map_err(crypto_to_unlock)?;
        let key = kek.unlock_key();
        self.update_header(move |keys, h| {
            h.kdf = kdf;
            h.salt = hex::encode(salt);
            h.passphrase_recipient = Some(key.recipient().to_hex());
            let change = replace_root(keys, h)?;
            prove_slot(h, Slot::Passphrase, &key, &keys.ring());
            Ok(change)
        })
        .await
    }

    /// Lets a key file (any high-entropy bytes) unseal the vault, besides the passphrase; a
    /// previous key file stops working, and the root key is replaced.
    pub async fn set_key_file(
        &self,
        material: Zeroizing<Vec<u8>>,
    ) -> Result<RootChange, StoreError> {
        let key = UnlockKey::from_material(&material);
        self.update_header(move |keys, h| {
            h.keyfile_recipient = Some(key.recipient().to_hex());
            h.wrapped_root_keyfile = Some(String::new());
            let change = replace_root(keys, h)?;
            prove_slot(h, Slot::KeyFile, &key, &keys.ring());
            Ok(change)
        })
        .await
    }

    /// Sets (or replaces) the offline recovery key; the previous one stops working, and the
    /// root key is replaced.
    pub async fn set_recovery_key(
        &self,
        material: Zeroizing<Vec<u8>>,
    ) -> Result<RootChange, StoreError> {
        let key = UnlockKey::from_material(&material);
        self.update_header(move |keys, h| {
            h.recovery_recipient = Some(key.recipient().to_hex());
            h.wrapped_root_recovery = Some(String::new());
            let change = replace_root(keys, h)?;
            prove_slot(h, Slot::Recovery, &key, &keys.ring());
            Ok(change)
        })
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
            follow: Arc::default(),
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

    /// Rekey: adds a data key online and replaces the root key. Every write from now on is
    /// sealed with the new data key; older records keep opening with the key they name.
    pub async fn rotate_data_key(&self) -> Result<RootChange, StoreError> {
        // Replaced on the writer thread, inside the job that writes the new keyring: records
        // are sealed when their batch commits, so a record sealed with the new key is in the
        // same commit as the keyring that opens it, or a later one. If that commit fails, the
        // error reaches the operator; redb then refuses every later write until the file is
        // reopened, so nothing sealed with the unrecorded key can reach the file either.
        self.update_header(replace_root).await
    }

    /// Changes the header in a write job and tags it anew with the (possibly new) root key.
    async fn update_header<R: Send + 'static>(
        &self,
        change: impl FnOnce(&Keys, &mut Header) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let keys = self.keys.clone();
        self.write(move |tx| {
            let Some(Found::Stored(raw)) = tx.raw.get(Table::Meta, HEADER_KEY)? else {
                return Err(StoreError::Corrupt("no header".into()));
            };
            let mut header = Header::parse(&raw)?;
            let out = change(&keys, &mut header)?;
            tag_header(
                &mut header,
                &keys.root.read().unwrap_or_else(|p| p.into_inner()),
            );
            tx.raw
                .put_raw(Table::Meta, HEADER_KEY.to_vec(), header.to_bytes());
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

    /// How many data keys the vault holds and which one new writes use.
    pub fn data_keys(&self) -> (usize, u32) {
        let ring = self.keys.keyring.read().unwrap_or_else(|p| p.into_inner());
        (ring.len(), ring.active_id())
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

    /// The header as stored, for tests that graft it onto a later copy of the file.
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn raw_header_for_tests(&self) -> Vec<u8> {
        self.backend
            .get(Table::Meta, HEADER_KEY)
            .ok()
            .flatten()
            .expect("a vault has a header")
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

/// Reads and opens the ledger record. Every commit writes it sealed with the active data
/// key; one sealed with an older key (which whoever held an older root key also holds) is
/// not the vault's.
fn read_ledger(view: &dyn crate::backend::Snapshot, ring: &Keyring) -> Result<Digests, StoreError> {
    let fail = |detail: &str| StoreError::Integrity {
        table: "integrity",
        detail: detail.into(),
    };
    let blob = view
        .get(Table::Integrity, STATE_KEY)?
        .ok_or_else(|| fail("the ledger record is missing (removed outside the vault)"))?;
    if Keyring::key_id_of(&blob).ok() != Some(ring.active_id()) {
        return Err(fail(
            "the ledger record is not sealed with the active data key (written outside the vault)",
        ));
    }
    let plain = ring
        .open(&Keys::aad(Table::Integrity, STATE_KEY), &blob)
        .map_err(|_| fail("the ledger record failed to authenticate"))?;
    Digests::decode(plain.as_bytes())
}

/// Whether the header's `slot` still wraps the root key in its format-1 form.
fn slot_is_legacy(header: &Header, slot: Slot) -> bool {
    match slot {
        Slot::Passphrase => header.passphrase_recipient.is_none(),
        Slot::KeyFile => header.keyfile_recipient.is_none(),
        Slot::Recovery => header.recovery_recipient.is_none(),
    }
}

impl WriterKeys for Keys {
    fn seal(&self, table: Table, key: &[u8], plain: &[u8]) -> Vec<u8> {
        Keys::seal(self, table, key, plain)
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn ledger(&self) -> (u64, Ledger) {
        let root = self.root.read().unwrap_or_else(|p| p.into_inner());
        (
            self.generation.load(std::sync::atomic::Ordering::Acquire),
            Ledger::new(root.authenticator("ledger")),
        )
    }

    fn committed(&self, generation: u64) {
        self.committed
            .store(generation, std::sync::atomic::Ordering::Release);
    }

    fn read_ledger(&self, view: &dyn crate::backend::Snapshot) -> Result<Digests, StoreError> {
        read_ledger(
            view,
            &self.keyring.read().unwrap_or_else(|p| p.into_inner()),
        )
    }
}

impl Keys {
    fn new(root: RootKey, keyring: Keyring) -> Keys {
        Keys {
            blinder: keyring.blinder(&root),
            tokens: keyring.token_hasher(&root),
            keyring: RwLock::new(keyring),
            root: RwLock::new(root),
            generation: Default::default(),
            committed: Default::default(),
        }
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring.read().unwrap_or_else(|p| p.into_inner())
    }

    fn durable_authenticator(&self, purpose: &str) -> Authenticator {
        let ring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        let root = self.root.read().unwrap_or_else(|p| p.into_inner());
        ring.authenticator(&root, purpose)
    }

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

/// A record's key as the file holds it (blinded): comparable, and opaque outside the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey(Vec<u8>);

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
            table != Table::Meta && table != Table::Integrity,
            "the meta table holds only the plaintext header; the ledger is the writer's"
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

    /// Visits every record of `table` as this job sees it, each opened on its own (a record
    /// that fails to open is passed as its error), until `visit` returns `false`. For rare,
    /// whole-table work that must see one consistent state, such as a repair.
    pub fn scan(
        &self,
        table: Table,
        visit: &mut dyn FnMut(Result<SecretBytes, StoreError>) -> bool,
    ) -> Result<(), StoreError> {
        for blinded in self.raw.keys(table)? {
            let record = match self.raw.get(table, &blinded)? {
                Some(Found::Stored(blob)) => self.keys.open(table, &blinded, &blob),
                Some(Found::Plain(plain)) => Ok(plain),
                None => continue,
            };
            if !visit(record) {
                break;
            }
        }
        Ok(())
    }

    /// The keys of `table`'s records, as this job sees them, that are none of `keep` (logical
    /// keys): records nothing refers to any more, such as the versions of a secret whose head
    /// was lost (their keys are blinded, so they cannot be listed by path).
    pub fn unreferenced(
        &self,
        table: Table,
        keep: impl IntoIterator<Item = Vec<u8>>,
    ) -> Result<std::collections::HashSet<RecordKey>, StoreError> {
        let keep: std::collections::HashSet<Vec<u8>> = keep
            .into_iter()
            .map(|k| self.keys.blind(table, &k))
            .collect();
        Ok(self
            .raw
            .keys(table)?
            .into_iter()
            .filter(|k| !keep.contains(k))
            .map(RecordKey)
            .collect())
    }

    /// The key a logical key is stored under, to compare with [`WriteTx::unreferenced`]'s.
    pub fn record_key(&self, table: Table, key: &[u8]) -> RecordKey {
        RecordKey(self.keys.blind(table, key))
    }

    /// Deletes the record stored under `key`.
    pub fn delete_record(&mut self, table: Table, key: RecordKey) {
        self.raw.delete(table, key.0);
    }

    /// Recomputes `table`'s ledger digest from the file when this batch commits, instead of
    /// moving it on record by record. For a repair only: a record damaged outside the vault
    /// took its term in the digest with it, so the table could never verify again; this
    /// accepts every record the table holds then (docs/SECURITY.md says what that gives up).
    pub fn reanchor(&mut self, table: Table) {
        self.raw.reanchor(table);
    }

    /// Runs `hook` after the batch is durable, before the caller is answered.
    pub fn on_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.hooks.push(Box::new(hook));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &[u8] = b"format one passphrase";

    /// A vault file as format 1 wrote it: no header tag, symmetric wraps, a keyring without
    /// a lineage key, no ledger; one token record.
    fn version_1_file(path: &Path) -> Vec<u8> {
        let backend = RedbBackend::create(path).unwrap();
        let root = RootKey::generate();
        let keyring = Keyring::first_generation();
        let salt: [u8; 16] = random_bytes();
        let kek = derive_kek(PASS, &salt, KdfParams::FLOOR).unwrap();
        let header = serde_json::json!({
            "format_version": 1, "kdf": KdfParams::FLOOR, "salt": hex::encode(salt),
            "wrapped_root": hex::encode(kek.wrap(&root)), "wrapped_root_keyfile": null,
            "wrapped_root_recovery": hex::encode(Kek::from_key_material(b"rk").wrap(&root)),
            "keyring": hex::encode(root.seal_keyring(&keyring)), "created_at": 0,
        });
        let keys = Keys::new(root, keyring);
        let blinded = keys.blind(Table::Tokens, b"tok");
        let sealed = keys.seal(Table::Tokens, &blinded, b"live");
        backend
            .commit(&[
                Mutation::Put {
                    table: Table::Meta,
                    key: HEADER_KEY.to_vec(),
                    value: serde_json::to_vec(&header).unwrap(),
                },
                Mutation::Put {
                    table: Table::Tokens,
                    key: blinded,
                    value: sealed.clone(),
                },
            ])
            .unwrap();
        sealed
    }

    #[test]
    fn a_write_job_scans_and_finds_loose_records_in_what_it_sees_including_its_own_batch() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::create(&dir.path().join("v.db"), PASS, KdfParams::FLOOR).unwrap();
        v.write_blocking(|tx| {
            for k in [b"a", b"b", b"c"] {
                tx.put(Table::Versions, k, k);
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let (mut seen, deleted) = v
            .write_blocking(|tx| {
                tx.put(Table::Versions, b"d", b"d");
                tx.delete(Table::Versions, b"a");
                let mut seen = Vec::new();
                tx.scan(Table::Versions, &mut |r| {
                    seen.push(r.unwrap().as_bytes().to_vec());
                    true
                })?;
                let loose = tx.unreferenced(Table::Versions, [b"b".to_vec(), b"d".to_vec()])?;
                assert_eq!(
                    loose,
                    [tx.record_key(Table::Versions, b"c")].into_iter().collect(),
                    "only c is neither kept nor already deleted"
                );
                for k in loose {
                    tx.delete_record(Table::Versions, k);
                }
                Ok::<_, StoreError>((seen, 1))
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, [b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(deleted, 1);
        for (k, present) in [(b"a", false), (b"b", true), (b"c", false), (b"d", true)] {
            assert_eq!(
                v.get(Table::Versions, k).unwrap().is_some(),
                present,
                "{k:?}"
            );
        }
        assert!(v.verify_ledger().unwrap().is_empty());
    }

    #[test]
    fn a_repair_reanchors_only_the_table_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let v = Vault::create(&path, PASS, KdfParams::FLOOR).unwrap();
        v.write_blocking(|tx| {
            tx.put(Table::Secrets, b"lost", b"head");
            tx.put(Table::Secrets, b"kept", b"head");
            tx.put(Table::Versions, b"lost/1", b"data");
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let lost = v.blinded_key_for_tests(Table::Secrets, b"lost");
        drop(v);
        // A head removed outside the vault: its term stays in the ledger.
        RedbBackend::open(&path)
            .unwrap()
            .commit(&[Mutation::Delete {
                table: Table::Secrets,
                key: lost,
            }])
            .unwrap();
        let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
        let tables = |v: &Vault| -> Vec<String> {
            v.verify_ledger()
                .unwrap()
                .iter()
                .map(|e| e.to_string())
                .collect()
        };
        assert_eq!(tables(&v).len(), 1, "{:?}", tables(&v));
        // Deleting it again cannot take the lost term out; a reanchor of `secrets` does, and
        // the versions table keeps being checked record by record.
        v.write_blocking(|tx| {
            tx.delete(Table::Secrets, b"lost");
            tx.delete(Table::Versions, b"lost/1");
            Ok::<_, StoreError>(())
        })
        .unwrap();
        assert_eq!(tables(&v).len(), 1);
        v.write_blocking(|tx| {
            tx.reanchor(Table::Secrets);
            Ok::<_, StoreError>(())
        })
        .unwrap();
        assert!(tables(&v).is_empty(), "{:?}", tables(&v));
        assert!(v.get(Table::Secrets, b"kept").unwrap().is_some());
    }

    #[test]
    fn a_version_1_file_is_upgraded_at_first_unseal_and_guarded_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let live = version_1_file(&path);
        let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
        assert_eq!(
            v.get(Table::Tokens, b"tok").unwrap().unwrap().as_bytes(),
            b"live"
        );
        let header = Header::parse(&v.raw_header_for_tests()).unwrap();
        assert_eq!(header.format_version, FORMAT_VERSION);
        assert!(header.mac.is_some() && header.passphrase_recipient.is_some());
        assert!(
            header.recovery_recipient.is_none(),
            "the recovery slot cannot be upgraded without its key"
        );
        assert!(v.verify_ledger().unwrap().is_empty());
        let key = v.blinded_key_for_tests(Table::Tokens, b"tok");
        v.write_blocking(|tx| {
            tx.put(Table::Tokens, b"tok", b"revoked");
            Ok::<_, StoreError>(())
        })
        .unwrap();
        drop(v);
        // Now guarded: the token's format-1 record put back is refused.
        let before = std::fs::read(&path).unwrap();
        RedbBackend::open(&path)
            .unwrap()
            .commit(&[Mutation::Put {
                table: Table::Tokens,
                key,
                value: live,
            }])
            .unwrap();
        assert!(matches!(
            Vault::open(&path, Unlock::Passphrase(PASS)),
            Err(StoreError::Integrity {
                table: "tokens",
                ..
            })
        ));
        crate::private_fs::write(&path, &before).unwrap();
        // Replacing the root key cannot re-wrap the version-1 recovery slot: it is removed,
        // and the change says so.
        let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let change = rt.block_on(v.rotate_data_key()).unwrap();
        assert_eq!(change.dropped, vec!["recovery key"]);
        // Data key 2 came with the upgrade (the converted slot's anchor), 3 with the change.
        assert_eq!(change.active_data_key, 3);
        drop(v);
        assert_eq!(
            Vault::open(&path, Unlock::RecoveryKey(b"rk")).err(),
            Some(StoreError::WrongPassphrase)
        );
        let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
        assert_eq!(
            v.get(Table::Tokens, b"tok").unwrap().unwrap().as_bytes(),
            b"revoked"
        );
    }

    /// A file upgraded while unsealed with its recovery key: the passphrase slot is still in
    /// its format-1 form, so a root-key change is refused (it would lose the passphrase)
    /// until the passphrase unseals the vault once, which converts that slot; the recovery
    /// key, converted at the upgrade, then survives the change.
    #[test]
    fn each_format_1_slot_is_converted_when_its_key_next_unseals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        version_1_file(&path);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v = Vault::open(&path, Unlock::RecoveryKey(b"rk")).unwrap();
        assert!(matches!(
            rt.block_on(v.rotate_data_key()),
            Err(StoreError::Refused(_))
        ));
        drop(v);
        let v = Vault::open(&path, Unlock::Passphrase(PASS)).unwrap();
        let header = v.header().unwrap();
        assert!(header.passphrase_recipient.is_some() && header.recovery_recipient.is_some());
        let change = rt.block_on(v.rotate_data_key()).unwrap();
        assert!(change.dropped.is_empty(), "{change:?}");
        drop(v);
        drop(Vault::open(&path, Unlock::RecoveryKey(b"rk")).unwrap());
        drop(Vault::open(&path, Unlock::Passphrase(PASS)).unwrap());
    }

    /// Format 1 never wrote a recipient: one planted in a format-1 header (to be kept by the
    /// upgrade and handed every later root key) is refused, and so is a format-1 header put
    /// back on a file that already holds a ledger.
    #[test]
    fn a_format_1_header_with_a_planted_recipient_or_on_an_upgraded_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        version_1_file(&path);
        let backend = RedbBackend::open(&path).unwrap();
        let (_, raw) = read_header(&backend).unwrap();
        let mut planted: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        planted["keyfile_recipient"] = UnlockKey::from_material(b"attacker")
            .recipient()
            .to_hex()
            .into();
        planted["wrapped_root_keyfile"] = "00".into();
        let put = |bytes: Vec<u8>| Mutation::Put {
            table: Table::Meta,
            key: HEADER_KEY.to_vec(),
            value: bytes,
        };
        backend
            .commit(&[put(serde_json::to_vec(&planted).unwrap())])
            .unwrap();
        drop(backend);
        assert!(matches!(
            Vault::open(&path, Unlock::Passphrase(PASS)),
            Err(StoreError::Integrity { table: "meta", .. })
        ));
        // The genuine format-1 header back: the upgrade runs; then put back once more.
        RedbBackend::open(&path)
            .unwrap()
            .commit(&[put(raw.clone())])
            .unwrap();
        drop(Vault::open(&path, Unlock::Passphrase(PASS)).unwrap());
        RedbBackend::open(&path)
            .unwrap()
            .commit(&[put(raw)])
            .unwrap();
        assert!(matches!(
            Vault::open(&path, Unlock::Passphrase(PASS)),
            Err(StoreError::Integrity { table: "meta", .. })
        ));
    }

    /// Whoever held the passphrase before `operator passphrase` holds the old root key, the
    /// old data key and the lineage key: enough to seal a record the new keyring still opens,
    /// and to blind its key. The ledger is under the *current* root key's MAC key and sealed
    /// with the active data key, so such a forgery (the revoked token made live again, with
    /// or without a ledger recomputed under the old keys) is refused at unseal.
    #[test]
    fn an_old_passphrase_cannot_forge_records_after_the_root_key_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        let v = Vault::create(&path, PASS, KdfParams::FLOOR).unwrap();
        let old_header = read_header(&*v.backend).unwrap().0;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(v.change_passphrase(Zeroizing::new(b"new".to_vec()), None))
            .unwrap();
        v.write_blocking(|tx| {
            tx.put(Table::Tokens, b"tok", b"revoked");
            Ok::<_, StoreError>(())
        })
        .unwrap();
        drop(v);
        let current = std::fs::read(&path).unwrap();
        // The attacker's keys: the old header opened with the old passphrase.
        let (old_root, _, _) = open_root(&old_header, &Unlock::Passphrase(PASS)).unwrap();
        let old_ring = open_keyring(&old_header, &old_root).unwrap();
        let attacker = Keys::new(old_root, old_ring);
        let blinded = attacker.blind(Table::Tokens, b"tok");
        let forged = attacker.seal(Table::Tokens, &blinded, b"live");
        let token = Mutation::Put {
            table: Table::Tokens,
            key: blinded,
            value: forged,
        };
        // The forged token alone.
        RedbBackend::open(&path)
            .unwrap()
            .commit(std::slice::from_ref(&token))
            .unwrap();
        assert!(matches!(
            Vault::open(&path, Unlock::Passphrase(b"new")),
            Err(StoreError::Integrity {
                table: "tokens",
                ..
            })
        ));
        // With a ledger recomputed under the old keys.
        crate::private_fs::write(&path, &current).unwrap();
        let backend = RedbBackend::open(&path).unwrap();
        backend.commit(std::slice::from_ref(&token)).unwrap();
        let (_, ledger) = attacker.ledger();
        let digests = ledger.rebuild(&|t, v| backend.scan(t, v)).unwrap();
        let sealed = attacker.seal(Table::Integrity, STATE_KEY, &digests.encode());
        backend
            .commit(&[Mutation::Put {
                table: Table::Integrity,
                key: STATE_KEY.to_vec(),
                value: sealed,
            }])
            .unwrap();
        drop(backend);
        assert!(matches!(
            Vault::open(&path, Unlock::Passphrase(b"new")),
            Err(StoreError::Integrity {
                table: "integrity",
                ..
            })
        ));
        crate::private_fs::write(&path, &current).unwrap();
        let v = Vault::open(&path, Unlock::Passphrase(b"new")).unwrap();
        assert_eq!(
            v.get(Table::Tokens, b"tok").unwrap().unwrap().as_bytes(),
            b"revoked"
        );
        assert_eq!(
            v.header().unwrap().kdf,
            KdfParams::FLOOR,
            "the KDF parameters stay"
        );
    }

    /// The recipients in a header are public: anyone who can write the file can wrap a root
    /// key of their own to the passphrase's recipient and build a header and keyring around
    /// it (here with no passphrase at all). The slot's proof is what refuses it: its tag's key
    /// comes from the passphrase, and its anchor is a data key of the genuine keyring.
    #[test]
    fn a_root_key_wrapped_to_the_passphrase_by_someone_else_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.db");
        drop(Vault::create(&path, PASS, KdfParams::FLOOR).unwrap());
        let (genuine, _) = read_header(&RedbBackend::open_read_only(&path).unwrap()).unwrap();
        let to = Recipient::from_hex(genuine.passphrase_recipient.as_deref().unwrap()).unwrap();
        let forged_root = RootKey::generate();
        let forged_ring = Keyring::new();
        let mut forged = genuine.clone();
        forged.wrapped_root = hex::encode(to.wrap(&forged_root));
        forged.keyring = hex::encode(forged_root.seal_keyring(&forged_ring));
        // The genuine proof copied over (an attacker cannot make another): its anchor is not
        // in the forged keyring. Then a proof anchored in the forged keyring, with a tag made
        // without the passphrase's key.
        let anchored = format!(
            "1:{}",
            hex::encode(UnlockKey::from_material(b"guess").slot_tag(
                "passphrase",
                1,
                &forged_ring.anchor(1).unwrap()
            ))
        );
        for proof in [genuine.passphrase_proof.clone(), Some(anchored), None] {
            forged.passphrase_proof = proof.clone();
            tag_header(&mut forged, &forged_root);
            RedbBackend::open(&path)
                .unwrap()
                .commit(&[Mutation::Put {
                    table: Table::Meta,
                    key: HEADER_KEY.to_vec(),
                    value: forged.to_bytes(),
                }])
                .unwrap();
            match Vault::open(&path, Unlock::Passphrase(PASS)) {
                Err(StoreError::Integrity {
                    table: "meta",
                    detail,
                }) => {
                    assert!(detail.contains("passphrase slot"), "{detail}")
                }
                other => panic!("{proof:?}: {:?}", other.err()),
            }
        }
    }
}
