//! vigild's build script: the git commit for `--version` (`version.rs`, shared
//! with vigilctl), and, when `VIGIL_TEXT_ORDER` names a file, the order of
//! vigild's functions in its text.
//!
//! The file lists, one symbol per line, the functions vigild ran in a traced
//! start of the same build; `scripts/text-order` writes it and links vigild
//! with it. lld then puts them first, side by side, so the pages a running
//! daemon maps hold code it runs: the kernel maps a file 64 KiB around each
//! page fault, and without an order the start-up's functions lie among code
//! never called (BENCHMARKS.md, "Memory per program"). Symbol names carry
//! hashes of the build's flags, features and toolchain, so a list fits only
//! the build it was traced from; `scripts/text-order` checks that every name
//! is found.
//!
//! With `VIGIL_PACK_RELOCATIONS=1` (which `scripts/text-order` sets where the
//! machine's glibc is 2.36 or newer) vigild's relative relocations are packed
//! (DT_RELR). A position-independent vigild has about 14,000: as plain
//! entries the dynamic loader reads 340 KiB of them at each start, pages that
//! then stay mapped for the daemon's life; packed they take 4 KiB. glibc older
//! than 2.36 cannot load such a binary, hence a choice of the build's, and
//! `scripts/deb` states that need in the package's dependencies.

use std::path::Path;

#[path = "version.rs"]
mod version;

fn main() {
    version::main();
    println!("cargo:rerun-if-env-changed=VIGIL_PACK_RELOCATIONS");
    if std::env::var_os("VIGIL_PACK_RELOCATIONS").is_some_and(|value| value == "1") {
        println!("cargo:rustc-link-arg-bin=vigild=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=VIGIL_TEXT_ORDER");
    let Some(order) = std::env::var_os("VIGIL_TEXT_ORDER").filter(|order| !order.is_empty()) else {
        return;
    };
    let order = Path::new(&order);
    // The linker runs elsewhere than this script: a relative path would name
    // two files.
    assert!(order.is_absolute(), "VIGIL_TEXT_ORDER must be an absolute path: {}", order.display());
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rustc-link-arg-bin=vigild=-Wl,--symbol-ordering-file={}", order.display());
    // A name the build does not have is not an error: the script counts them.
    println!("cargo:rustc-link-arg-bin=vigild=-Wl,--no-warn-symbol-ordering");
}
