//! The one plaintext record of a vault file: any bytes give a header or a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = scaivault_store::Header::parse(data) {
        assert!(h.kdf.check().is_ok());
        assert!(h.salt_bytes().is_some());
    }
});
