//! What an opened artifact costs in memory, and the memo of walks: an open (and the copy kept
//! as the last good build) leaves little of the artifact resident, lookups still read it all,
//! and the memo answers exactly as the walk does, before and after it evicts.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use hedgerow::lists::{
    compile, Blocklists, BlocklistsBuilder, CompileOptions, EntryKind, Manifest, Severity,
};

use crate::common::rng::Rng;
use crate::common::tempdir::TempDir;

/// `count` generated names (a third with a `www.`-like label) in `categories` source files
/// under `dir`, and the manifest naming them; returns every name with its category bit.
fn generate(dir: &Path, count: usize, categories: usize) -> Vec<(String, u32)> {
    const TLDS: &[&str] = &["com", "net", "org", "co.uk", "de", "xyz"];
    let mut rng = Rng(0xB10C);
    let mut names = Vec::with_capacity(count);
    let mut manifest = String::new();
    for cat in 0..categories {
        let path = dir.join(format!("cat{cat}.txt"));
        let mut w = BufWriter::new(File::create(&path).unwrap());
        for _ in 0..count / categories {
            let mut s = String::new();
            if rng.next().is_multiple_of(3) {
                s.push_str(["www", "cdn", "img"][(rng.next() % 3) as usize]);
                s.push('.');
            }
            rng.label(&mut s, 5, 10);
            s.push('.');
            s.push_str(TLDS[(rng.next() % TLDS.len() as u64) as usize]);
            writeln!(w, "{s}").unwrap();
            names.push((s, 1u32 << cat));
        }
        w.flush().unwrap();
        manifest.push_str(&format!(
            "[[category]]\nid = \"cat{cat}\"\ntitle = \"c\"\nuk_definition = \"-\"\nseverity = \"high\"\n\
             [[category.source]]\npath = \"{}\"\nformat = \"domains\"\n",
            path.display()
        ));
    }
    fs::write(dir.join("lists.toml"), manifest).unwrap();
    names
}

/// Size and resident bytes of this process's mappings of files whose path starts with `dir`
/// (the artifact's private copies sit in its folder, unlinked).
#[cfg(target_os = "linux")]
fn mapped_under(dir: &Path) -> (u64, u64) {
    let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
    let dir = dir.to_string_lossy();
    let (mut size, mut rss, mut ours) = (0, 0, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Size:"), Some(kb)) if ours => size += kb.parse::<u64>().unwrap() * 1024,
            (Some("Rss:"), Some(kb)) if ours => rss += kb.parse::<u64>().unwrap() * 1024,
            (Some(range), _) if range.contains('-') && !range.ends_with(':') => {
                ours = line.contains(&*dir);
            }
            _ => {}
        }
    }
    (size, rss)
}

#[cfg(target_os = "linux")]
#[test]
fn an_opened_artifact_stays_mostly_out_of_resident_memory_and_still_answers() {
    let tmp = TempDir::new("lists-resident");
    let names = generate(tmp.path(), 200_000, 2);
    let out = tmp.path().join("compiled");
    compile(&CompileOptions {
        manifest: Manifest::load(tmp.path().join("lists.toml")).unwrap(),
        out_dir: out.clone(),
        illegal: None,
    })
    .unwrap();
    let artifact: u64 = ["categories.fst", "prefilter.bin"]
        .iter()
        .map(|f| fs::metadata(out.join(f)).unwrap().len())
        .sum();

    // The open hashed and walked every byte; what stays resident is what it gave back.
    let lists = Blocklists::open(&out, None).unwrap();
    let (size, rss) = mapped_under(&out);
    assert!(
        size >= artifact,
        "mapped {size} bytes of a {artifact}-byte artifact"
    );
    assert!(
        rss <= artifact / 8,
        "{rss} of {size} mapped bytes resident after open"
    );

    // So did the copy kept as the last good build.
    lists.save_copy(&tmp.path().join("good")).unwrap();
    let (_, rss) = mapped_under(&out);
    assert!(
        rss <= artifact / 8,
        "{rss} of {size} mapped bytes resident after save_copy"
    );

    // The pages given back are read again when a lookup needs them.
    let mask = lists.mask_of(["cat0", "cat1"]).unwrap();
    for (name, bit) in names.iter().step_by(97) {
        let hit = lists
            .lookup(name, mask)
            .unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(hit.bits & bit, *bit, "{name}");
        assert!(
            lists.lookup(&format!("child.{name}"), mask).is_some(),
            "child of {name}"
        );
    }
    let (_, rss) = mapped_under(&out);
    assert!(rss > 0, "lookups read the mapping");
}

#[test]
fn the_memo_answers_as_the_walk_does_through_evictions() {
    let mut b = BlocklistsBuilder::new();
    let cats: Vec<u32> = (0..4)
        .map(|i| b.category(&format!("c{i}"), "c", Severity::High).unwrap())
        .collect();
    let mut rng = Rng(0x3E30);
    // Nested names (up to six listed suffixes of one name, more than a memo entry holds),
    // subtree and exact entries, several categories on one name.
    let mut listed = Vec::new();
    for _ in 0..3_000 {
        let mut name = String::new();
        rng.label(&mut name, 3, 4);
        name.push_str(".test");
        for _ in 0..(rng.next() % 6) {
            let kind = match rng.next() % 3 {
                0 => EntryKind::Exact,
                _ => EntryKind::Subtree,
            };
            b.add(cats[(rng.next() % 4) as usize], &name, kind).unwrap();
            listed.push(name.clone());
            let mut child = String::new();
            rng.label(&mut child, 1, 3);
            name = format!("{child}.{name}");
        }
        listed.push(name);
    }
    let lists = b.build().unwrap();

    // Every name in three spellings, its parent and a child; unrelated names; asked in three
    // rounds (the memo answers the later ones) with varying masks. 3,000 × 6 × 5 names are
    // more than the memo holds, so it evicts and walks again on the way.
    let mut queries = Vec::new();
    for name in &listed {
        let parent = name.split_once('.').map_or("", |(_, p)| p);
        queries.extend([
            name.clone(),
            name.to_uppercase(),
            format!("{name}."),
            parent.to_string(),
            format!("x.{name}"),
        ]);
    }
    for i in 0..20_000 {
        queries.push(format!("n{i}.unlisted.test"));
    }
    let (mut found, mut total) = (0, 0);
    for round in 0..3u32 {
        for (i, q) in queries.iter().enumerate() {
            let mask = match (i as u32 + round) % 4 {
                0 => u32::MAX,
                1 => cats[0] | cats[1],
                2 => cats[2],
                _ => cats[3] | cats[0],
            };
            let walked = lists.lookup_walking(q, mask);
            assert_eq!(
                lists.lookup(q, mask),
                walked,
                "{q} mask {mask:#x} round {round}"
            );
            found += usize::from(walked.is_some());
            total += 1;
        }
    }
    assert!(
        found > total / 10,
        "{found} of {total} found: the test must see hits"
    );
    let held = lists.memo_len();
    assert!(held > 0 && held <= 32_768, "memo holds {held} names");
}
