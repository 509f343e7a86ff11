//! The plugins shipped inside the binary: `plugins/dist/`, built from `plugins/` by
//! `plugins/build.sh` and checked against their sources in CI.

pub struct Builtin {
    pub manifest: &'static str,
    pub wasm: &'static [u8],
}

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        manifest: include_str!("../../../plugins/dist/types.json"),
        wasm: include_bytes!("../../../plugins/dist/types.wasm"),
    },
    Builtin {
        manifest: include_str!("../../../plugins/dist/generators.json"),
        wasm: include_bytes!("../../../plugins/dist/generators.wasm"),
    },
    Builtin {
        manifest: include_str!("../../../plugins/dist/webhook.json"),
        wasm: include_bytes!("../../../plugins/dist/webhook.wasm"),
    },
    Builtin {
        manifest: include_str!("../../../plugins/dist/postgres.json"),
        wasm: include_bytes!("../../../plugins/dist/postgres.wasm"),
    },
];
