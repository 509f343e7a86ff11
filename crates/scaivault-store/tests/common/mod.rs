//! Helpers shared by the store's fault and ledger tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use scaivault_crypto::KdfParams;
use scaivault_store::{StoreError, Table, Vault};

pub const PASS: &[u8] = b"correct horse battery staple";

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn put(vault: &Vault, table: Table, key: &[u8], value: &[u8]) {
    let (key, value) = (key.to_vec(), value.to_vec());
    vault
        .write_blocking(move |tx| {
            tx.put(table, &key, &value);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn delete(vault: &Vault, table: Table, key: &[u8]) {
    let key = key.to_vec();
    vault
        .write_blocking(move |tx| {
            tx.delete(table, &key);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn new_vault(dir: &Path) -> (PathBuf, Vault) {
    let path = dir.join("vault.db");
    let v = Vault::create(&path, PASS, KdfParams::FLOOR).unwrap();
    (path, v)
}
