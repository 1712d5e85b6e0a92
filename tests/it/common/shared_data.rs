//! The one way tests and benches find `../shared/data`.
//!
//! A user's clone has no `../shared/`: tests that need it print why they skip. Under CI
//! (`CI=true`) the data is required, so a missing folder fails the test instead of skipping it.

use std::path::PathBuf;

/// The `../shared/data` folder beside the project (or `$HEDGEROW_SHARED_DATA`), if present.
///
/// Returns `None` (after printing the reason) when it is absent and `CI` is not `true`;
/// panics when it is absent and `CI=true`.
#[allow(dead_code)]
pub fn shared_data() -> Option<PathBuf> {
    let dir = match std::env::var_os("HEDGEROW_SHARED_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the shared data folder is missing: {}",
            dir.display()
        );
    }
    eprintln!(
        "skipped: shared data folder not found at {} (set HEDGEROW_SHARED_DATA)",
        dir.display()
    );
    None
}
