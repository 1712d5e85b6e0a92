//! The lists a configuration names: opened (compiled first when the configuration says so)
//! or compiled on demand. `serve`, `lists compile` and `lists lookup` all come through here.
//!
//! Filtering must never fail open, so this is also where an artifact is judged before it is
//! put in force:
//!
//! - `lists compile` refuses a build that shrank against the build in force
//!   ([`compile_guarded`]; `--force` overrides and marks the build);
//! - a running server refuses to swap to such a build unless it is marked forced
//!   ([`open_replacement`]);
//! - every artifact put in force is copied to `DIR.good` (exactly the bytes served), and
//!   [`open`] falls back to that copy, at ERROR, when the artifact is damaged or has shrunk.

use crate::config::Config;

use super::{
    artifact, compile, compile_with,
    update::{update, LastUpdate, UpdateOptions, UpdateReport},
    Blocklists, CompileOptions, CompileReport, IllegalSource, ListError, Manifest, Meta,
    ShrinkGuard,
};

/// Opens the compiled lists named by `config`, compiling them first when the configuration
/// asks for that and none exist. Never returns an empty snapshot silently: a school filter
/// must not start unfiltered. When the artifact cannot be used (damaged, missing, or shrunk
/// against the last good copy without being forced), the last good copy is opened instead,
/// with an ERROR log. Reads and hashes files: call it off the runtime's workers.
pub fn open(config: &Config) -> Result<Blocklists, ListError> {
    open_with(config, true)
}

/// As [`open`], for commands that only look (`lists lookup`, `check-config`): the same
/// fallback, but the last good copy is not written (such a command may run as another user,
/// and the copy must stay the server's).
pub fn open_to_read(config: &Config) -> Result<Blocklists, ListError> {
    open_with(config, false)
}

fn open_with(config: &Config, keep_good: bool) -> Result<Blocklists, ListError> {
    let l = &config.lists;
    let good = artifact::good_path(&l.artifact_dir);
    let opened = open_artifact(config).and_then(|lists| match Meta::read(&good) {
        Ok(last_good) => may_replace(config, &last_good, lists),
        Err(_) => Ok(lists),
    });
    match opened {
        Ok(lists) => {
            if keep_good {
                keep_good_copy(config, &lists);
            }
            Ok(lists)
        }
        Err(error) if good.join(artifact::META_TOML).exists() => {
            tracing::error!(
                %error,
                good = %good.display(),
                "the compiled lists cannot be put in force: using the last good copy"
            );
            Blocklists::open(&good, illegal_key(config))
        }
        Err(error) => Err(error),
    }
}

/// Opens the artifact named by `config` to replace `in_force` (a reload): refused with
/// [`ListError::Shrunk`] when it shrank below `lists.shrink_threshold` of the lists in force
/// and is not marked forced. No fallback: on any error the lists in force stay.
pub fn open_replacement(config: &Config, in_force: &Meta) -> Result<Blocklists, ListError> {
    let lists = may_replace(config, in_force, open_artifact(config)?)?;
    keep_good_copy(config, &lists);
    Ok(lists)
}

/// `new` if it may replace lists built as `in_force` describes.
fn may_replace(config: &Config, in_force: &Meta, new: Blocklists) -> Result<Blocklists, ListError> {
    let threshold = config.lists.shrink_threshold;
    let shrinks = artifact::shrinkage(in_force, new.meta(), threshold);
    if shrinks.is_empty() {
        return Ok(new);
    }
    let shrinks: Vec<String> = shrinks.iter().map(|s| s.to_string()).collect();
    if new.meta().forced {
        // Someone decided this; still worth a line that stands out from routine reloads.
        tracing::warn!(shrinks = %shrinks.join("; "), "putting a smaller list build in force: it was compiled with --force");
        return Ok(new);
    }
    Err(ListError::Shrunk {
        dir: config.lists.artifact_dir.clone(),
        shrinks: shrinks.join("; "),
        threshold,
    })
}

/// Copies the lists being put in force to `DIR.good`, unless that copy is already of them.
/// A failure (a full disk) is logged, not fatal: the lists themselves are fine.
fn keep_good_copy(config: &Config, lists: &Blocklists) {
    let good = artifact::good_path(&config.lists.artifact_dir);
    if Meta::read(&good).is_ok_and(|m| &m == lists.meta()) {
        return;
    }
    if let Err(error) = lists.save_copy(&good) {
        tracing::warn!(%error, "cannot keep a copy of the lists in force (the fallback if the artifact is damaged)");
    }
}

fn illegal_key(config: &Config) -> Option<&std::path::Path> {
    let l = &config.lists;
    l.illegal_list
        .as_ref()
        .map(|_| l.illegal_key_file.as_path())
}

/// The artifact itself, compiled first if the configuration says so and there is none.
fn open_artifact(config: &Config) -> Result<Blocklists, ListError> {
    let l = &config.lists;
    let key = illegal_key(config);
    match Blocklists::open(&l.artifact_dir, key) {
        Err(ListError::NoArtifact { .. })
            if l.compile_if_missing && !artifact::good_path(&l.artifact_dir).exists() =>
        {
            tracing::info!(manifest = %l.manifest.display(), "no compiled lists yet: compiling");
            let report = compile(&compile_options(config)?);
            // The compile's buffers (hundreds of MB at millions of names) are freed now.
            crate::heap::give_back_freed();
            let report = report?;
            tracing::info!("{}", report.to_string().lines().next().unwrap_or_default());
            Blocklists::open(&l.artifact_dir, key)
        }
        other => other,
    }
}

/// `hedgerow lists compile [--force]`: compiles what [`compile_options`] says, refusing a
/// build that shrank below `lists.shrink_threshold` of the build in force unless `force`.
pub fn compile_guarded(config: &Config, force: bool) -> Result<CompileReport, ListError> {
    let guard = ShrinkGuard {
        threshold: config.lists.shrink_threshold,
        force,
    };
    compile_with(&compile_options(config)?, Some(guard))
}

/// What `hedgerow lists update` did.
#[derive(Debug)]
pub struct Updated {
    /// Each download.
    pub report: UpdateReport,
    /// The compile after them (guarded as [`compile_guarded`]).
    pub compiled: Result<CompileReport, ListError>,
}

/// `hedgerow lists update [--force]`: downloads the manifest's `url` sources, compiles as
/// [`compile_guarded`] does, and records how it went ([`LastUpdate`]) in the download folder,
/// where the dashboard reads it. The run is recorded even when it fails; a failure to write
/// the record is logged, not fatal (the lists themselves are fine).
pub fn update_and_compile(
    config: &Config,
    force: bool,
    now: std::time::SystemTime,
) -> Result<Updated, ListError> {
    let dir = &config.lists.download_dir;
    let record = |report: Option<&UpdateReport>, error: Option<String>| {
        if let Err(error) = LastUpdate::new(now, report, error).write(dir) {
            tracing::warn!(%error, "cannot record how the list update went");
        }
    };
    let downloaded = Manifest::load(&config.lists.manifest).and_then(|manifest| {
        let mut options = UpdateOptions::new(manifest.with_cache_dir(dir));
        options.shrink_threshold = config.lists.shrink_threshold;
        update(&options)
    });
    let report = match downloaded {
        Ok(report) => report,
        Err(error) => {
            record(None, Some(error.to_string()));
            return Err(error);
        }
    };
    let compiled = compile_guarded(config, force);
    record(
        Some(&report),
        compiled.as_ref().err().map(ToString::to_string),
    );
    Ok(Updated { report, compiled })
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
