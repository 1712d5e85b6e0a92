//! The one way tests get a scratch folder under the system temp dir: [`TempDir`], removed
//! when dropped, or [`scratch_dir`], kept while the test process runs (a server started by
//! the test may still be writing to it) and swept by the next run once its process is gone.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// Every scratch folder's name starts with this, then the owning process id.
const PREFIX: &str = "hedgerow-test-";

/// Removed (with everything in it) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty folder whose name carries `tag`, the process id and a counter.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep);
        let dir = std::env::temp_dir().join(format!(
            "{PREFIX}{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Keeps the folder past this value (see [`scratch_dir`]).
    pub fn keep(self) -> PathBuf {
        let dir = self.0.clone();
        std::mem::forget(self);
        dir
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh folder kept until a later test run sweeps it.
pub fn scratch_dir(tag: &str) -> PathBuf {
    TempDir::new(tag).keep()
}

/// Removes the scratch folders of test processes that have exited.
fn sweep() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix(PREFIX).and_then(|r| r.split('-').next());
        if let Some(pid) = pid {
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}
