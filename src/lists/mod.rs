//! Category block lists: import, compile to `fst` transducers, look up, explain, update.
//!
//! Schools block by *category* (pornography, gambling, circumvention, …). Third-party lists
//! hold millions of names in a dozen messy formats. This module turns them into one small,
//! memory-mapped artifact that answers "which categories list this name or one of its parents?"
//! in a single walk, and swaps atomically when recompiled.
//!
//! * [`parse`] — the importer: every line of a hosts / domains / adblock / dnsmasq / unbound /
//!   RPZ list classified as entry, exception, comment, preamble, skipped or rejected.
//! * [`manifest`] — `lists/lists.toml`: categories (id, title, UK definition, severity) and
//!   their sources.
//! * [`compile()`] — manifest → artifact folder (`categories.fst`, `allow.fst`,
//!   `prefilter.bin`, `illegal.bin`, `meta.toml`).
//! * [`prefilter`] — the filter in front of the walk: names on no list mostly never touch
//!   the transducer.
//! * [`Blocklists`] / [`SuffixMap`] — lookups on an opened snapshot; a snapshot keeps a
//!   small memo of the walks of names asked again (`memo.rs`).
//! * [`illegal`] — the confidential illegal-content tier (keyed hashes only).
//! * [`explain()`] — which source file and line produced a match.
//! * [`update()`] — conditional downloads of `url` sources, keeping the last good copy.
//! * [`Blocklists::sample`] — a few listed names of a category, for the filtering checks.
//!
//! # Example
//!
//! Build a map in memory and ask for the most specific listed suffix:
//!
//! ```
//! use hedgerow::lists::{EntryKind, Hit, SuffixMap};
//!
//! const GAMBLING: u32 = 1 << 0;
//! const GAMES: u32 = 1 << 1;
//! let map = SuffixMap::from_entries([
//!     ("bet365.com", EntryKind::Subtree, GAMBLING),
//!     ("roblox.com", EntryKind::Subtree, GAMES),
//!     ("www.example.org", EntryKind::Exact, GAMES),
//! ])
//! .unwrap();
//!
//! // A subdomain of a listed name matches at the listed depth (2 labels: bet365.com).
//! assert_eq!(map.deepest("mobile.sports.bet365.com", GAMBLING), Some(Hit { depth: 2, bits: GAMBLING }));
//! // Only categories in the mask count.
//! assert_eq!(map.deepest("roblox.com", GAMBLING), None);
//! // Exact entries match the name itself, not its children.
//! assert!(map.deepest("www.example.org", GAMES).is_some());
//! assert!(map.deepest("cdn.www.example.org", GAMES).is_none());
//! // A string prefix is not a label prefix.
//! assert!(map.deepest("notroblox.com", GAMES).is_none());
//! ```
//!
//! In the server, open the compiled folder once per reload and share it:
//!
//! ```no_run
//! use hedgerow::lists::Blocklists;
//! let lists = Blocklists::open("/var/lib/hedgerow/compiled", None)?;
//! let mask = lists.mask_of(["pornography", "gambling"])?;
//! if let Some(hit) = lists.lookup("www.example.com", mask) {
//!     println!("blocked: {} ({:?})", lists.matched_key("www.example.com", hit.depth), hit.bits);
//! }
//! # Ok::<(), hedgerow::lists::ListError>(())
//! ```

#![warn(missing_docs)]

pub mod artifact;
pub mod compile;
pub mod configured;
mod digest;
pub mod error;
pub mod explain;
pub mod illegal;
mod keys;
pub mod manifest;
pub mod matcher;
mod memo;
pub mod parse;
pub mod prefilter;
mod sample;
pub mod update;

pub use artifact::Meta;
pub use compile::{
    compile, compile_with, CategoryReport, CompileOptions, CompileReport, IllegalSource,
    ShrinkGuard,
};
pub use error::ListError;
pub use explain::{explain, Explanation};
pub use illegal::{generate_key_file, IllegalHit, IllegalKey, IllegalKind};
pub use manifest::{CategoryDef, Manifest, Severity, SourceDef};
pub use matcher::{Blocklists, BlocklistsBuilder, CategoryInfo, Hit, SuffixMap};
pub use parse::{EntryKind, Format};
pub use update::{update, UpdateOptions, UpdateReport};
