//! Replays the committed fuzz corpora (`tests/fuzz/corpus/TARGET/`, minimised by
//! `cargo fuzz cmin`) on stable, through the very functions the fuzz targets call
//! (`hedgerow::fuzzing`): every input the fuzzers kept must still pass, so a change that
//! breaks one fails here without a nightly toolchain. How to fuzz: benches/README.md.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
};

use hedgerow::fuzzing;

use crate::common::tempdir::TempDir;

/// The corpus of `target`: every file, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    // A corpus that went missing or empty would make the replay pass on nothing.
    assert!(
        files.len() >= 20,
        "{}: only {} inputs",
        dir.display(),
        files.len()
    );
    files
}

/// Runs `body` on every input of `target`'s corpus; fails naming each input that panicked.
fn replay(target: &str, body: impl Fn(&[u8])) {
    let failed: Vec<String> = corpus(target)
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| body(bytes))).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:#?}");
}

#[test]
fn wire_reader_corpus_replays() {
    replay("wire_reader", fuzzing::wire_reader);
    // The corpus must reach the fast path's writer, not only its refusals.
    let accepted = corpus("wire_reader")
        .iter()
        .filter(|(_, bytes)| hedgerow::wire::WireQuery::read(bytes).is_some())
        .count();
    assert!(accepted >= 10, "only {accepted} inputs take the fast path");
}

#[test]
fn list_line_corpus_replays() {
    replay("list_line", fuzzing::list_line);
}

#[test]
fn config_corpus_replays() {
    replay("config", fuzzing::config);
}

#[test]
fn artifact_corpus_replays() {
    let tmp = TempDir::new("fuzz-artifact");
    let fixture = fuzzing::ArtifactFixture::new(tmp.path());
    // The fixture itself opens: the corpus damages a valid artifact, not a broken one.
    for seed in fixture.seeds() {
        assert!(fixture.run(&seed), "the undamaged fixture does not open");
    }
    replay("artifact", |bytes| {
        fixture.run(bytes);
    });
}
