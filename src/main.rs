//! The `scaivault` binary: server and client in one. Everything lives in the crates.

fn main() {
    std::process::exit(scaivault_cli::main());
}
