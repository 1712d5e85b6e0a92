//! Compile → open → look up → explain, on the shipped sample manifest and on small generated
//! manifests: artifact layout, checksum verification, atomic replacement, the illegal-content
//! tier and explanations.

use crate::common::tempdir::TempDir;

use std::fs;
use std::path::Path;

use hedgerow::lists::{
    compile, explain, generate_key_file, Blocklists, CompileOptions, EntryKind, IllegalKind,
    IllegalSource, ListError, Manifest,
};

fn sample_manifest() -> Manifest {
    Manifest::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("lists/lists.toml")).unwrap()
}

fn compile_to(manifest: Manifest, out: &Path) -> hedgerow::lists::CompileReport {
    compile(&CompileOptions {
        manifest,
        out_dir: out.to_path_buf(),
        illegal: None,
    })
    .unwrap()
}

#[test]
fn shipped_samples_compile_and_match() {
    let tmp = TempDir::new("samples");
    let out = tmp.path().join("compiled");
    let report = compile_to(sample_manifest(), &out);
    let text = report.to_string();
    assert!(text.contains("pornography"), "{text}");
    for c in &report.categories {
        assert_eq!(
            c.rejected_lines, 0,
            "sample {} has bad lines: {:?}",
            c.id, c.first_rejections
        );
        assert!(c.entries > 0, "category {} is empty", c.id);
    }
    for f in ["categories.fst", "allow.fst", "meta.toml"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(!out.join("illegal.bin").exists());

    let lists = Blocklists::open(&out, None).unwrap();
    assert_eq!(lists.categories().len(), 13);
    let all = u32::MAX;
    let porn = lists.category_bit("pornography").unwrap();
    let circ = lists.category_bit("circumvention").unwrap();
    let games = lists.category_bit("games").unwrap();
    let hit = lists.lookup("www.pornhub.com", all).unwrap();
    assert_eq!(
        (hit.bits, lists.matched_key("www.pornhub.com", hit.depth)),
        (porn, "pornhub.com".into())
    );
    assert!(
        lists.lookup("localhost", all).is_none(),
        "hosts preamble became an entry"
    );
    // DoH resolvers and iCloud Private Relay are circumvention; the Firefox canary is not listed.
    for name in [
        "dns.google",
        "mozilla.cloudflare-dns.com",
        "doh.opendns.com",
        "mask.icloud.com",
        "mask-h2.icloud.com",
    ] {
        assert_eq!(
            lists.lookup(name, all).map(|h| h.bits),
            Some(circ),
            "{name}"
        );
    }
    assert!(lists.lookup("use-application-dns.net", all).is_none());
    assert!(lists.lookup("google.com", all).is_none());
    // Games blocks Minecraft but the sample's @@ exception allows Minecraft Education.
    assert!(lists.lookup("education.minecraft.net", games).is_some());
    assert_eq!(
        lists
            .allow_lookup("login.education.minecraft.net", games)
            .map(|h| h.depth),
        Some(3)
    );
    assert!(lists.allow_lookup("minecraft.net", games).is_none());
    assert!(lists
        .allow_lookup("education.minecraft.net", porn)
        .is_none());

    let meta = lists.meta();
    assert_eq!(meta.format_version, 1);
    assert!(meta.built_unix > 1_700_000_000);
    let counts: Vec<_> = meta.category_counts().collect();
    assert_eq!(counts[0].0, "pornography");
    assert_eq!(counts[0].1, 24);
    assert_eq!(meta.sources.len(), 14);
}

#[test]
fn missing_artifact_and_corruption_are_clear_errors() {
    let tmp = TempDir::new("corrupt");
    let out = tmp.path().join("compiled");
    let err = Blocklists::open(&out, None).unwrap_err();
    assert!(matches!(err, ListError::NoArtifact { .. }));
    assert!(err.to_string().contains("hedgerow lists compile"), "{err}");

    compile_to(sample_manifest(), &out);
    // Flip one byte of the transducer: the checksum must catch it and name the file.
    let fst = out.join("categories.fst");
    let mut bytes = fs::read(&fst).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&fst, &bytes).unwrap();
    let err = Blocklists::open(&out, None).unwrap_err().to_string();
    assert!(
        err.contains("categories.fst") && err.contains("SHA-256"),
        "{err}"
    );

    // Truncation is reported by size.
    compile_to(sample_manifest(), &out);
    let allow = out.join("allow.fst");
    let len = fs::metadata(&allow).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&allow)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = Blocklists::open(&out, None).unwrap_err().to_string();
    assert!(err.contains("allow.fst") && err.contains("bytes"), "{err}");

    // A damaged meta.toml and a future format version.
    compile_to(sample_manifest(), &out);
    let meta = out.join("meta.toml");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(
        &meta,
        text.replace("format_version = 1", "format_version = 99"),
    )
    .unwrap();
    let err = Blocklists::open(&out, None).unwrap_err();
    assert!(matches!(err, ListError::Version { found: 99, .. }), "{err}");
    fs::write(&meta, "this is not toml [").unwrap();
    let err = Blocklists::open(&out, None).unwrap_err().to_string();
    assert!(err.contains("meta.toml"), "{err}");
}

#[test]
fn recompile_replaces_atomically_and_old_snapshot_keeps_working() {
    let tmp = TempDir::new("swap");
    let lists_dir = tmp.path().join("lists");
    fs::create_dir_all(&lists_dir).unwrap();
    let manifest_path = lists_dir.join("lists.toml");
    fs::write(
        &manifest_path,
        "[[category]]\nid = \"games\"\ntitle = \"Games\"\nuk_definition = \"-\"\nseverity = \"low\"\n\
         [[category.source]]\npath = \"games.txt\"\nformat = \"domains\"\n",
    )
    .unwrap();
    fs::write(lists_dir.join("games.txt"), "roblox.com\n").unwrap();
    let out = tmp.path().join("compiled");
    compile_to(Manifest::load(&manifest_path).unwrap(), &out);
    let first = Blocklists::open(&out, None).unwrap();

    fs::write(lists_dir.join("games.txt"), "minecraft.net\n").unwrap();
    compile_to(Manifest::load(&manifest_path).unwrap(), &out);
    let second = Blocklists::open(&out, None).unwrap();
    // The old snapshot's mappings survive the swap (its files were unlinked, not rewritten).
    assert!(first.lookup("roblox.com", 1).is_some());
    assert!(first.lookup("minecraft.net", 1).is_none());
    assert!(second.lookup("minecraft.net", 1).is_some());
    assert!(second.lookup("roblox.com", 1).is_none());
    // No staging or .old folders are left behind.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // A crash between the two renames leaves only `compiled.old`: open falls back to it.
    fs::rename(&out, tmp.path().join("compiled.old")).unwrap();
    assert!(Blocklists::open(&out, None)
        .unwrap()
        .lookup("minecraft.net", 1)
        .is_some());

    // A failing compile (missing source) leaves the live artifact untouched.
    fs::rename(tmp.path().join("compiled.old"), &out).unwrap();
    fs::remove_file(lists_dir.join("games.txt")).unwrap();
    let err = compile(&CompileOptions {
        manifest: Manifest::load(&manifest_path).unwrap(),
        out_dir: out.clone(),
        illegal: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("games.txt") && err.contains("lists.toml"),
        "{err}"
    );
    assert!(Blocklists::open(&out, None)
        .unwrap()
        .lookup("minecraft.net", 1)
        .is_some());
}

#[test]
fn url_source_not_downloaded_says_what_to_run() {
    let tmp = TempDir::new("url");
    let manifest_path = tmp.path().join("lists.toml");
    fs::write(
        &manifest_path,
        "[[category]]\nid = \"gambling\"\ntitle = \"G\"\nuk_definition = \"-\"\nseverity = \"medium\"\n\
         [[category.source]]\nurl = \"https://lists.example/gambling.txt\"\n",
    )
    .unwrap();
    let err = compile(&CompileOptions {
        manifest: Manifest::load(&manifest_path).unwrap(),
        out_dir: tmp.path().join("out"),
        illegal: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("hedgerow lists update"), "{err}");
}

#[test]
fn illegal_tier_is_hashed_enforced_and_withheld() {
    let tmp = TempDir::new("illegal");
    let key = tmp.path().join("illegal.key");
    generate_key_file(&key).unwrap();
    // A synthetic stand-in: the real IWF list is confidential.
    let list = tmp.path().join("iwf.txt");
    let mut text = String::from("# synthetic illegal-content list\n");
    for i in 0..50 {
        text.push_str(&format!("http://csam-test-{i}.invalid/\n"));
    }
    text.push_str("https://host.csam-path-test.invalid/gallery/123.html\n");
    text.push_str("csam-path-test-2.invalid/x?id=1\n");
    text.push_str("http://192.0.2.7/bad\n");
    fs::write(&list, &text).unwrap();

    let out = tmp.path().join("compiled");
    let report = compile(&CompileOptions {
        manifest: sample_manifest(),
        out_dir: out.clone(),
        illegal: Some(IllegalSource {
            list: list.clone(),
            key: key.clone(),
        }),
    })
    .unwrap();
    let shown = report.to_string();
    assert!(shown.contains("50 domains enforced by DNS"), "{shown}");
    assert!(shown.contains("not enforceable by DNS"), "{shown}");
    assert!(!shown.contains("csam-"), "report leaked an entry: {shown}");

    // No clear text in any artifact file.
    for entry in fs::read_dir(&out).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        for needle in ["csam-test", "csam-path", ".invalid", "192.0.2.7"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle}"
            );
        }
    }

    let lists = Blocklists::open(&out, Some(&key)).unwrap();
    let hit = lists.illegal("www.csam-test-7.invalid").unwrap();
    assert_eq!(hit.kind, IllegalKind::Domain);
    assert_eq!(hit.to_string(), "illegal-content list (entry withheld)");
    assert!(!format!("{hit:?}").contains("csam"));
    assert_eq!(
        lists.illegal("host.csam-path-test.invalid").unwrap().kind,
        IllegalKind::PathOnly
    );
    assert_eq!(
        lists.illegal("csam-path-test-2.invalid").unwrap().kind,
        IllegalKind::PathOnly
    );
    assert!(lists.illegal("csam-path-test.invalid").is_none());
    assert!(lists.illegal("csam-test-50.invalid").is_none());
    assert!(lists.illegal("pornhub.com").is_none());
    let meta = lists.meta().illegal.clone().unwrap();
    assert_eq!((meta.domains, meta.path_only, meta.rejected), (50, 2, 1));

    // The key must be configured exactly when the tier exists, and must be the same key.
    assert!(Blocklists::open(&out, None)
        .unwrap_err()
        .to_string()
        .contains("no key file"));
    let other = tmp.path().join("other.key");
    generate_key_file(&other).unwrap();
    let err = Blocklists::open(&out, Some(&other))
        .unwrap_err()
        .to_string();
    assert!(err.contains("different key"), "{err}");
    let short = tmp.path().join("short.key");
    fs::write(&short, b"too short").unwrap();
    let err = Blocklists::open(&out, Some(&short))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 32"), "{err}");
}

#[test]
fn explain_quotes_source_lines() {
    let tmp = TempDir::new("explain");
    let out = tmp.path().join("compiled");
    let manifest = sample_manifest();
    compile_to(manifest.clone(), &out);
    let lists = Blocklists::open(&out, None).unwrap();

    let e = explain(&lists, &manifest, "www.pornhub.com", u32::MAX).unwrap();
    assert_eq!(e.blocks.len(), 1);
    let b = &e.blocks[0];
    assert_eq!(
        (b.matched.as_str(), b.categories.as_slice()),
        ("pornhub.com", &["pornography".to_string()][..])
    );
    assert_eq!(b.origins.len(), 1);
    let o = &b.origins[0];
    assert_eq!(
        (o.source.as_str(), o.line, o.text.as_str(), o.kind),
        (
            "samples/pornography.hosts",
            5,
            "0.0.0.0 pornhub.com",
            EntryKind::Subtree
        )
    );
    let shown = e.to_string();
    assert!(
        shown.contains("samples/pornography.hosts:5: 0.0.0.0 pornhub.com"),
        "{shown}"
    );

    // Block and exception together: Minecraft blocked, Minecraft Education excepted.
    let games = lists.category_bit("games").unwrap();
    let e = explain(&lists, &manifest, "login.education.minecraft.net", games).unwrap();
    assert_eq!(e.blocks[0].matched, "minecraft.net");
    assert_eq!(
        (
            e.blocks[0].origins[0].source.as_str(),
            e.blocks[0].origins[0].line
        ),
        ("samples/games.txt", 4)
    );
    assert_eq!(e.exceptions[0].matched, "education.minecraft.net");
    assert_eq!(
        e.exceptions[0].origins[0].text,
        "@@||education.minecraft.net^"
    );

    // A child of a name that was pruned as redundant is explained by the listed parent.
    let e = explain(&lists, &manifest, "mozilla.cloudflare-dns.com", u32::MAX).unwrap();
    assert_eq!(e.blocks[0].matched, "cloudflare-dns.com");
    // Outside the mask, or not listed.
    let e = explain(&lists, &manifest, "www.pornhub.com", games).unwrap();
    assert!(e.blocks.is_empty());
    assert!(e.to_string().contains("not listed"));
    assert!(e.stale_sources.is_empty());
}

#[test]
fn explain_flags_changed_sources_and_withholds_illegal_entries() {
    let tmp = TempDir::new("explain2");
    let dir = tmp.path().join("lists");
    fs::create_dir_all(&dir).unwrap();
    let manifest_path = dir.join("lists.toml");
    fs::write(
        &manifest_path,
        "[[category]]\nid = \"gambling\"\ntitle = \"Gambling\"\nuk_definition = \"Enables gambling\"\nseverity = \"medium\"\n\
         [[category.source]]\npath = \"g.txt\"\nformat = \"auto\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("g.txt"),
        "# gambling\nbet365.com\n0.0.0.0 bet365.com skybet.com\n",
    )
    .unwrap();
    let key = tmp.path().join("k");
    generate_key_file(&key).unwrap();
    let ill = tmp.path().join("ill.txt");
    fs::write(&ill, "http://csam-test-1.invalid/\n").unwrap();
    let out = tmp.path().join("compiled");
    let manifest = Manifest::load(&manifest_path).unwrap();
    compile(&CompileOptions {
        manifest: manifest.clone(),
        out_dir: out.clone(),
        illegal: Some(IllegalSource {
            list: ill,
            key: key.clone(),
        }),
    })
    .unwrap();
    let lists = Blocklists::open(&out, Some(&key)).unwrap();

    let e = explain(&lists, &manifest, "sports.bet365.com", u32::MAX).unwrap();
    let lines: Vec<u64> = e.blocks[0].origins.iter().map(|o| o.line).collect();
    assert_eq!(lines, [2, 3], "both lines listing bet365.com are quoted");

    fs::write(dir.join("g.txt"), "bet365.com\n").unwrap();
    let e = explain(&lists, &manifest, "bet365.com", u32::MAX).unwrap();
    assert_eq!(e.stale_sources, ["g.txt"]);
    assert!(e.to_string().contains("changed since"));

    let e = explain(&lists, &manifest, "www.csam-test-1.invalid", u32::MAX).unwrap();
    assert!(e.illegal.is_some());
    let shown = format!("{e} {e:?}");
    assert_eq!(
        e.to_string(),
        "www.csam-test-1.invalid: blocked by the illegal-content list (entry withheld)\n"
    );
    assert!(!shown.contains("csam-test-1.invalid`"), "{shown}");
    assert!(e.blocks.is_empty());
}
