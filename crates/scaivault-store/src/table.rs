/// The tables of a vault file. Each is a map from a blinded key to a sealed record; only the
/// meta table holds plaintext, and only the file header (KDF parameters, salt, wrapped keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    Meta,
    /// Path index: one small record per secret path, decrypted at unseal to serve listings.
    Paths,
    /// Secret heads: type, metadata, version list, deletion state.
    Secrets,
    /// Secret versions: the data of one version, keyed by path and version number.
    Versions,
    Identities,
    Tokens,
    Policies,
    /// Audit entries, keyed by their sequence number (not blinded: it reveals only a count).
    Audit,
    /// The audit chain's head and periodic checkpoints.
    AuditState,
    /// Rotation policies and which secret each is attached to.
    Rotation,
    /// The catalogue of installed external plugins: manifests and pinned hashes.
    Plugins,
    /// Webhooks and their delivery log (pending deliveries are the outbox of events).
    Webhooks,
    /// The ledger: one sealed record of every other table's digest (see `ledger`).
    Integrity,
}

impl Table {
    pub const ALL: &'static [Table] = &[
        Table::Meta,
        Table::Paths,
        Table::Secrets,
        Table::Versions,
        Table::Identities,
        Table::Tokens,
        Table::Policies,
        Table::Audit,
        Table::AuditState,
        Table::Rotation,
        Table::Plugins,
        Table::Webhooks,
        Table::Integrity,
    ];

    /// Where the table stands in [`Table::ALL`]: its number in a database's rows and in
    /// per-table lists.
    pub fn index(self) -> usize {
        Table::ALL
            .iter()
            .position(|x| *x == self)
            .expect("every table is in ALL")
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Paths => "paths",
            Table::Secrets => "secrets",
            Table::Versions => "versions",
            Table::Identities => "identities",
            Table::Tokens => "tokens",
            Table::Policies => "policies",
            Table::Audit => "audit",
            Table::AuditState => "audit_state",
            Table::Rotation => "rotation",
            Table::Plugins => "plugins",
            Table::Webhooks => "webhooks",
            Table::Integrity => "integrity",
        }
    }
}
