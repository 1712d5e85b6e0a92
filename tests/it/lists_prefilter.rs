//! The prefilter in front of the transducer walk: an artifact compiled before it existed still
//! opens and answers the same; a prefilter that would hide a listed name is refused at open.
//! (On the real lists: `lists_real_data::real_multi_category_compile_matches_workload_truth`.)

use crate::common::tempdir::TempDir;

use std::fs;
use std::path::Path;

use hedgerow::lists::artifact::{FileSum, Meta, PREFILTER_BIN};
use hedgerow::lists::prefilter::PrefilterBuilder;
use hedgerow::lists::{compile, Blocklists, CompileOptions, ListError, Manifest};
use sha2::Digest;

fn compile_samples(out: &Path) {
    let manifest =
        Manifest::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("lists/lists.toml")).unwrap();
    compile(&CompileOptions {
        manifest,
        out_dir: out.to_path_buf(),
        illegal: None,
    })
    .unwrap();
}

/// Replaces `prefilter.bin` with `bytes` (or removes it, with `None`) and rewrites
/// `meta.toml` to match, as a compile would have written it.
fn replace_prefilter(dir: &Path, bytes: Option<&[u8]>) {
    let meta_path = dir.join("meta.toml");
    let mut meta: Meta = toml::from_str(&fs::read_to_string(&meta_path).unwrap()).unwrap();
    match bytes {
        Some(bytes) => {
            fs::write(dir.join(PREFILTER_BIN), bytes).unwrap();
            let sha256 = sha2::Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            meta.files.insert(
                PREFILTER_BIN.to_string(),
                FileSum {
                    sha256,
                    bytes: bytes.len() as u64,
                },
            );
        }
        None => {
            fs::remove_file(dir.join(PREFILTER_BIN)).unwrap();
            meta.files.remove(PREFILTER_BIN);
        }
    }
    fs::write(&meta_path, toml::to_string(&meta).unwrap()).unwrap();
}

/// Listed names of the shipped samples, their subdomains and parents, and names on no list.
const NAMES: [&str; 14] = [
    "pornhub.com",
    "www.pornhub.com",
    "a.b.c.pornhub.com",
    "PornHub.COM.",
    "dns.google",
    "mozilla.cloudflare-dns.com",
    "cloudflare-dns.com",
    "mask.icloud.com",
    "icloud.com",
    "education.minecraft.net",
    "www.bbc.co.uk",
    "google.com",
    "com",
    "",
];

#[test]
fn artifact_without_prefilter_opens_and_answers_the_same() {
    let tmp = TempDir::new("prefilter-old");
    let out = tmp.path().join("compiled");
    compile_samples(&out);
    assert!(out.join(PREFILTER_BIN).is_file());
    let with = Blocklists::open(&out, None).unwrap();
    let (anchors, bytes) = with.prefilter_size().unwrap();
    assert!(
        anchors > 0 && bytes >= 64,
        "{anchors} anchors, {bytes} bytes"
    );
    // Some unlisted names never reach the walk; listed ones always do.
    assert!(!with.may_be_listed("google.com"));
    assert!(with.may_be_listed("www.pornhub.com"));

    // As compiled before the prefilter existed: no file, not in meta.toml.
    replace_prefilter(&out, None);
    let without = Blocklists::open(&out, None).unwrap();
    assert_eq!(without.prefilter_size(), None);
    assert!(without.may_be_listed("google.com"));
    let mut listed = 0;
    for name in NAMES {
        for mask in [u32::MAX, with.category_bit("pornography").unwrap()] {
            assert_eq!(
                with.lookup(name, mask),
                without.lookup(name, mask),
                "{name}"
            );
            listed += usize::from(with.lookup(name, mask).is_some());
        }
    }
    // Four spellings of pornhub.com in both masks; five circumvention and games names.
    assert_eq!(listed, 13);
    // Its copy as the last good build stays without one too, and opens.
    let good = tmp.path().join("good");
    without.save_copy(&good).unwrap();
    assert!(!good.join(PREFILTER_BIN).exists());
    assert_eq!(
        Blocklists::open(&good, None).unwrap().prefilter_size(),
        None
    );
}

#[test]
fn a_prefilter_that_hides_listed_names_is_refused() {
    let tmp = TempDir::new("prefilter-bad");
    let out = tmp.path().join("compiled");
    compile_samples(&out);

    // Well formed, checksummed, and empty: every listed name would be hidden.
    replace_prefilter(&out, Some(&PrefilterBuilder::new().finish()));
    let err = Blocklists::open(&out, None).unwrap_err();
    assert!(matches!(err, ListError::Corrupt { .. }), "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains(PREFILTER_BIN) && shown.contains("recompile"),
        "{shown}"
    );

    // A damaged header.
    replace_prefilter(&out, Some(b"HRPREF01 but short"));
    let shown = Blocklists::open(&out, None).unwrap_err().to_string();
    assert!(shown.contains(PREFILTER_BIN), "{shown}");

    // A recompile fixes it.
    compile_samples(&out);
    let lists = Blocklists::open(&out, None).unwrap();
    assert!(lists.lookup("www.pornhub.com", u32::MAX).is_some());
}
