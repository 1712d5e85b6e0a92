//! The lists a configuration names: opened (compiled first when the configuration says so)
//! or compiled on demand. `serve`, `lists compile` and `lists lookup` all come through here.

use crate::config::Config;

use super::{compile, Blocklists, CompileOptions, IllegalSource, ListError, Manifest};

/// Opens the compiled lists named by `config`, compiling them first when the configuration
/// asks for that and none exist. Never returns an empty snapshot silently: a school filter
/// must not start unfiltered. Reads and hashes files: call it off the runtime's workers.
pub fn open(config: &Config) -> Result<Blocklists, ListError> {
    let l = &config.lists;
    let key = l
        .illegal_list
        .as_ref()
        .map(|_| l.illegal_key_file.as_path());
    match Blocklists::open(&l.artifact_dir, key) {
        Err(ListError::NoArtifact { .. }) if l.compile_if_missing => {
            tracing::info!(manifest = %l.manifest.display(), "no compiled lists yet: compiling");
            let report = compile(&compile_options(config)?)?;
            tracing::info!("{}", report.to_string().lines().next().unwrap_or_default());
            Blocklists::open(&l.artifact_dir, key)
        }
        other => other,
    }
}

/// What `hedgerow lists compile` and `compile_if_missing` compile.
pub fn compile_options(config: &Config) -> Result<CompileOptions, ListError> {
    let l = &config.lists;
    Ok(CompileOptions {
        manifest: Manifest::load(&l.manifest)?.with_cache_dir(&l.download_dir),
        out_dir: l.artifact_dir.clone(),
        illegal: l.illegal_list.as_ref().map(|list| IllegalSource {
            list: list.clone(),
            key: l.illegal_key_file.clone(),
        }),
    })
}

/// When the artifact in `dir` was last written (its metadata is renamed into place last), so
/// a change on disk can be noticed without reading it.
pub fn stamp(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dir.join(super::artifact::META_TOML))
        .and_then(|m| m.modified())
        .ok()
}
