//! Scale check: compile a generated 5 M-name list (ignored by default; it takes ~10 s in
//! release and writes ~200 MB to the temp folder).
//!
//! ```text
//! cargo test --release --test lists_scale -- --ignored --nocapture
//! /usr/bin/time -v target/release/deps/lists_scale-HASH --ignored --nocapture   # peak RSS
//! ```
//! Set `HEDGEROW_SCALE_NAMES` to change the count.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::time::Instant;

use hedgerow::lists::{compile, Blocklists, CompileOptions, Manifest};

use crate::common::rng::Rng;

#[test]
#[ignore = "scale measurement: run explicitly in release mode"]
fn compile_five_million_names() {
    let n: usize = std::env::var("HEDGEROW_SCALE_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let dir = std::env::temp_dir().join(format!("hedgerow-scale-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();

    // Realistic shape: registrable names over a few TLDs, a third with one subdomain label,
    // spread over 4 categories (4 source files), like a UT1 "adult" import.
    const TLDS: &[&str] = &[
        "com", "net", "org", "co.uk", "de", "ru", "io", "info", "xyz", "top", "fr", "nl",
    ];
    let started = Instant::now();
    let mut rng = Rng(0x5EED);
    let mut manifest = String::new();
    let mut probes = Vec::new();
    for cat in 0..4 {
        let path = dir.join(format!("cat{cat}.txt"));
        let mut w = BufWriter::new(File::create(&path).unwrap());
        let mut s = String::with_capacity(64);
        for i in 0..n / 4 {
            s.clear();
            if rng.next().is_multiple_of(3) {
                s.push_str(["www", "cdn", "img", "m", "static"][(rng.next() % 5) as usize]);
                s.push('.');
            }
            rng.label(&mut s, 5, 12);
            s.push('.');
            s.push_str(TLDS[(rng.next() % TLDS.len() as u64) as usize]);
            writeln!(w, "{s}").unwrap();
            if i.is_multiple_of(100_000) {
                probes.push((s.clone(), 1u32 << cat));
            }
        }
        w.flush().unwrap();
        manifest.push_str(&format!(
            "[[category]]\nid = \"cat{cat}\"\ntitle = \"c\"\nuk_definition = \"-\"\nseverity = \"high\"\n\
             [[category.source]]\npath = \"{}\"\nformat = \"domains\"\n",
            path.display()
        ));
    }
    let manifest_path = dir.join("lists.toml");
    fs::write(&manifest_path, manifest).unwrap();
    eprintln!(
        "generated {n} names in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let report = compile(&CompileOptions {
        manifest: Manifest::load(&manifest_path).unwrap(),
        out_dir: dir.join("compiled"),
        illegal: None,
    })
    .unwrap();
    eprintln!("{report}");
    let input: u64 = report.categories.iter().map(|c| c.input_entries).sum();
    assert_eq!(input, (n / 4 * 4) as u64);
    eprintln!(
        "compile: {:.2} s, {:.0} names/s, artifact {} bytes = {:.2} bytes/name",
        report.elapsed.as_secs_f64(),
        input as f64 / report.elapsed.as_secs_f64(),
        report.bytes,
        report.bytes as f64 / report.names as f64
    );

    let t = Instant::now();
    let lists = Blocklists::open(dir.join("compiled"), None).unwrap();
    eprintln!(
        "open + verify checksums: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    for (name, bit) in &probes {
        let hit = lists.lookup(&format!("deep.sub.{name}"), u32::MAX).unwrap();
        assert_ne!(hit.bits & bit, 0, "{name}");
    }
    fs::remove_dir_all(&dir).unwrap();
}
