//! The `scaivault` binary: server and client in one. Everything lives in the crates.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(scaivault_cli::main());
}
