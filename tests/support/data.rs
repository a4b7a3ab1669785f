//! The committed test data under `tests/data/` (captured broker and php-fpm bytes, PHP's
//! form vectors), found from the package root whatever the test's working directory.
#![allow(dead_code)]

use std::path::PathBuf;

/// The path of `tests/data/<relative>`.
pub fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(relative)
}

/// The bytes of `tests/data/<relative>`; panics naming the file when it is unreadable.
pub fn read(relative: &str) -> Vec<u8> {
    let path = path(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
