//! Argon2id from passphrase to key-encryption key. Parameters live in the file header so they
//! can be raised later; a floor refuses parameters too weak to be worth the name.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::error::CryptoError;
use crate::keys::Kek;
use crate::material::Key32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// The default for new vaults: 64 MiB, 3 passes, 4 lanes (~0.25 s on our 2-core machines).
    pub const DEFAULT: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 4,
    };
    /// The floor (OWASP's minimum for Argon2id: 19 MiB, 2 passes). Used by tests to stay fast.
    pub const FLOOR: KdfParams = KdfParams {
        m_cost_kib: 19 * 1024,
        t_cost: 2,
        p_cost: 1,
    };
    /// Anything above this is refused as well: a file must not make us allocate without bound.
    const CEILING_KIB: u32 = 4 * 1024 * 1024;

    pub fn check(&self) -> Result<(), CryptoError> {
        let f = Self::FLOOR;
        let ok = self.m_cost_kib >= f.m_cost_kib
            && self.m_cost_kib <= Self::CEILING_KIB
            && self.t_cost >= f.t_cost
            && self.t_cost <= 64
            && (1..=16).contains(&self.p_cost);
        if ok {
            Ok(())
        } else {
            Err(CryptoError::WeakParameters)
        }
    }
}

/// Derives the key-encryption key. Slow by design.
pub fn derive_kek(
    passphrase: &[u8],
    salt: &[u8; 16],
    params: KdfParams,
) -> Result<Kek, CryptoError> {
    params.check()?;
    let p = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| CryptoError::WeakParameters)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let mut out = [0u8; 32];
    argon
        .hash_password_into(passphrase, salt, &mut out)
        .map_err(|_| CryptoError::WeakParameters)?;
    Ok(Kek(Key32::from_bytes(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_enforced() {
        let weak = KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        };
        assert_eq!(
            derive_kek(b"pw", &[0; 16], weak).unwrap_err(),
            CryptoError::WeakParameters
        );
        let huge = KdfParams {
            m_cost_kib: u32::MAX,
            t_cost: 3,
            p_cost: 1,
        };
        assert!(huge.check().is_err());
        assert!(KdfParams::DEFAULT.check().is_ok());
    }

    #[test]
    fn same_inputs_same_key_and_salt_matters() {
        let a = derive_kek(b"correct horse", &[1; 16], KdfParams::FLOOR).unwrap();
        let b = derive_kek(b"correct horse", &[1; 16], KdfParams::FLOOR).unwrap();
        let c = derive_kek(b"correct horse", &[2; 16], KdfParams::FLOOR).unwrap();
        assert_eq!(a.0.as_bytes(), b.0.as_bytes());
        assert_ne!(a.0.as_bytes(), c.0.as_bytes());
    }
}
