//! The one error type of the lists module.
//!
//! Every variant carries what a technician needs to act on it: the file, the line where there is
//! one, and a sentence saying what to do next. Bad lines *inside* a list are not errors (they are
//! reported and skipped, see [`crate::lists::parse`]); these are the failures that stop a command.

use std::path::PathBuf;

/// Errors from importing, compiling, opening, explaining and updating block lists.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// `lists.toml` is not valid TOML or breaks a rule of the manifest format.
    #[error("{path}: {reason} (see the comment at the top of lists/lists.toml for the format)")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, naming the category or source.
        reason: String,
    },

    /// A local source named in the manifest does not exist.
    #[error(
        "{path}: list file named by category `{category}` not found: fix its `path` in {manifest}"
    )]
    MissingSource {
        /// The category whose source is missing.
        category: String,
        /// The file that was expected.
        path: PathBuf,
        /// The manifest naming it.
        manifest: PathBuf,
    },

    /// A `url` source has never been downloaded into the cache.
    #[error("{url} (category `{category}`) has not been downloaded to {path}: run `hedgerow lists update` first")]
    NotDownloaded {
        /// The category whose source is missing.
        category: String,
        /// The source URL.
        url: String,
        /// Where the cached copy should be.
        path: PathBuf,
    },

    /// The artifact folder does not exist or holds no `meta.toml`.
    #[error("no compiled lists at {dir}: run `hedgerow lists compile`")]
    NoArtifact {
        /// The folder that was opened.
        dir: PathBuf,
    },

    /// A file of the compiled artifact is damaged, truncated or does not match `meta.toml`.
    #[error(
        "compiled list file {path} is unusable ({reason}): run `hedgerow lists compile` again"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },

    /// The artifact was written by a newer or older, incompatible Hedgerow.
    #[error("{path}: artifact format {found}, this Hedgerow reads format {expected}: run `hedgerow lists compile` with this version")]
    Version {
        /// The `meta.toml` that was read.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build understands.
        expected: u32,
    },

    /// A name given in configuration (an allow or deny entry) is not a valid DNS name.
    #[error("`{name}` is not a usable DNS name: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },

    /// A category id was used that the compiled lists do not define.
    #[error("unknown list category `{id}`: known categories are {known}")]
    UnknownCategory {
        /// The id asked for.
        id: String,
        /// Comma-separated ids that exist.
        known: String,
    },

    /// The illegal-content key file is missing, too short or unreadable.
    #[error("illegal-content key {path}: {reason}; create one with `hedgerow lists keygen {path}` (keep it outside the artifact folder, mode 0600)")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The artifact and the configured illegal-content key do not fit together.
    #[error("illegal-content list in {path}: {reason}")]
    Illegal {
        /// The artifact file or list involved.
        path: PathBuf,
        /// What is wrong. Never contains a list entry.
        reason: String,
    },

    /// Building an `fst` failed (keys out of order or an I/O failure while writing).
    #[error("building {path}: {source}")]
    Fst {
        /// The file being built (or `<memory>`).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: fst::Error,
    },

    /// Downloading a `url` source failed and there is no earlier copy to fall back on.
    #[error("{url}: {reason}")]
    Download {
        /// The source URL.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A new build shrank too far against the build in force (see
    /// [`crate::lists::artifact::shrinkage`]) and was not forced.
    #[error("refusing to replace the lists in force in {dir}: {shrinks} (below {threshold} of the build in force; `lists.shrink_threshold`). Check the list sources (an emptied download, a full disk?); if the change is intended, compile with `hedgerow lists compile --force`")]
    Shrunk {
        /// The artifact folder.
        dir: PathBuf,
        /// What shrank, `; `-separated.
        shrinks: String,
        /// The configured fraction.
        threshold: f64,
    },

    /// `meta.toml` could not be written.
    #[error("writing {path}: {reason}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// Serializer message.
        reason: String,
    },
}

impl ListError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ListError::Io {
            path: path.into(),
            source,
        }
    }

    /// A corrupt-artifact error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ListError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
