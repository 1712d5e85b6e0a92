//! Lookup and compile speed of the compiled category lists.
//!
//! On real data (`../shared/data`, via the shared helper) it compiles UT1, StevenBlack,
//! Sinfonietta, Block List Project and HaGeZi lists into one artifact and measures lookups of
//! listed names, of popular names that are not listed (Umbrella top 100k), and of deep
//! subdomains of listed names. Without the data it falls back to a generated list.
//!
//! `cargo bench --bench lists` (add `-- --quick` style options via CRITERION flags as usual).

#[path = "../tests/it/common/rng.rs"]
mod rng;
use rng::Rng;

#[path = "../tests/it/common/shared_data.rs"]
mod shared_data;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hedgerow::lists::illegal::{import_illegal, IllegalSet};
use hedgerow::lists::parse::{parse_reader, Format, LineClass};
use hedgerow::lists::{compile, Blocklists, CompileOptions, IllegalKey, Manifest};

const BATCH: usize = 1_000;

fn open(path: &Path) -> Box<dyn BufRead> {
    let file = File::open(path).expect("open list");
    if path.extension().is_some_and(|e| e == "zst") {
        Box::new(BufReader::new(
            zstd::stream::read::Decoder::new(file).expect("zstd"),
        ))
    } else {
        Box::new(BufReader::new(file))
    }
}

/// Writes `n` generated names (`label.tld`, a third of them with a subdomain) to `path`.
fn generate(path: &Path, n: usize, seed: u64) {
    const TLDS: &[&str] = &[
        "com", "net", "org", "co.uk", "de", "ru", "io", "info", "xyz", "top",
    ];
    let mut rng = Rng(seed);
    let mut w = std::io::BufWriter::new(File::create(path).expect("create"));
    let mut s = String::new();
    for _ in 0..n {
        s.clear();
        if rng.next().is_multiple_of(3) {
            rng.label(&mut s, 4, 11);
            s.push('.');
        }
        rng.label(&mut s, 4, 11);
        s.push('.');
        s.push_str(TLDS[(rng.next() % TLDS.len() as u64) as usize]);
        writeln!(w, "{s}").expect("write");
    }
}

struct Setup {
    _tmp: PathBuf,
    lists: Blocklists,
    manifest: Manifest,
    hits: Vec<String>,
    misses: Vec<String>,
    deep: Vec<String>,
    label: &'static str,
}

fn setup() -> Setup {
    let tmp = std::env::temp_dir().join(format!("hedgerow-bench-lists-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).expect("tmp");
    let mut sources: Vec<(&str, PathBuf, Format)> = Vec::new();
    let mut popular: Option<PathBuf> = None;
    let label;
    if let Some(data) = shared_data::shared_data() {
        label = "real";
        let b = data.join("blocklists");
        for (cat, rel, fmt) in [
            ("gambling", "ut1/gambling/domains", Format::Domains),
            ("games", "ut1/games/domains", Format::Domains),
            ("malware", "ut1/malware/domains.zst", Format::Domains),
            ("proxy", "ut1/redirector/domains.zst", Format::Domains),
            (
                "proxy",
                "hagezi-2022/wildcard/doh-vpn-proxy-bypass.txt",
                Format::Domains,
            ),
            ("porn", "sinfonietta/pornography-hosts.zst", Format::Hosts),
            (
                "porn",
                "clefspeare13-pornhosts/0.0.0.0/hosts",
                Format::Hosts,
            ),
            ("drugs", "blocklistproject/drugs.txt", Format::Hosts),
            (
                "phishing",
                "blocklistproject/alt-version/phishing-nl.txt.zst",
                Format::Domains,
            ),
            ("ads", "stevenblack-trimmed/hosts0.zst", Format::Hosts),
            ("ads", "hagezi-2022/wildcard/light.txt.zst", Format::Domains),
        ] {
            let src = b.join(rel);
            // compile reads plain files: decompress .zst copies into the temp folder.
            let local = if rel.ends_with(".zst") {
                let out = tmp.join(rel.replace('/', "_").trim_end_matches(".zst"));
                let mut w = File::create(&out).expect("create");
                std::io::copy(&mut open(&src), &mut w).expect("decompress");
                out
            } else {
                src
            };
            sources.push((cat, local, fmt));
        }
        popular = Some(data.join("popular/umbrella-top-100k.txt.zst"));
    } else {
        label = "generated";
        let path = tmp.join("generated.txt");
        generate(&path, 1_000_000, 42);
        sources.push(("generated", path, Format::Domains));
    }

    let mut toml = String::new();
    let mut last = "";
    for (cat, path, fmt) in &sources {
        if *cat != last {
            toml.push_str(&format!(
                "[[category]]\nid = \"{cat}\"\ntitle = \"{cat}\"\nuk_definition = \"-\"\nseverity = \"medium\"\n"
            ));
            last = cat;
        }
        toml.push_str(&format!(
            "[[category.source]]\npath = \"{}\"\nformat = \"{fmt}\"\n",
            path.display()
        ));
    }
    let manifest_path = tmp.join("lists.toml");
    fs::write(&manifest_path, toml).expect("manifest");
    let manifest = Manifest::load(&manifest_path).expect("manifest");
    let out = tmp.join("compiled");
    let report = compile(&CompileOptions {
        manifest: manifest.clone(),
        out_dir: out.clone(),
        illegal: None,
    })
    .expect("compile");
    eprintln!("{report}");
    let lists = Blocklists::open(&out, None).expect("open");

    // Listed names, sampled evenly from the sources.
    let mut all = Vec::new();
    for (_, path, fmt) in &sources {
        parse_reader(open(path), *fmt, |l| {
            if l.class == LineClass::Entry {
                all.extend(l.entries().map(|e| e.name.to_string()));
            }
        })
        .expect("parse");
    }
    let step = (all.len() / BATCH).max(1);
    let hits: Vec<String> = all.iter().step_by(step).take(BATCH).cloned().collect();
    let deep: Vec<String> = hits
        .iter()
        .map(|h| format!("a1.b22.c333.d4444.cdn.{h}"))
        .collect();
    let mut misses = Vec::new();
    match popular {
        Some(p) => {
            let mut text = String::new();
            open(&p).read_to_string(&mut text).expect("read popular");
            for name in text.lines() {
                if misses.len() == BATCH {
                    break;
                }
                if lists.lookup(name, u32::MAX).is_none() {
                    misses.push(name.to_string());
                }
            }
        }
        None => {
            let path = tmp.join("misses.txt");
            generate(&path, BATCH, 7);
            misses = fs::read_to_string(&path)
                .expect("read")
                .lines()
                .map(str::to_string)
                .collect();
        }
    }
    Setup {
        _tmp: tmp,
        lists,
        manifest,
        hits,
        misses,
        deep,
        label,
    }
}

fn bench_lookups(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group(format!("lists/lookup/{}", s.label));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, set) in [
        ("hit", &s.hits),
        ("miss", &s.misses),
        ("deep_subdomain", &s.deep),
    ] {
        assert!(!set.is_empty());
        let expect_hit = name != "miss";
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                for q in set.iter() {
                    // The prefilter and the walk, as before the memo of walks (which would
                    // answer this repeated set from memory after the first pass).
                    n += usize::from(s.lists.lookup_walking(black_box(q), u32::MAX).is_some());
                }
                assert!(!expect_hit || n == set.len());
                n
            })
        });
    }
    g.finish();

    // The illegal-content tier: 10k synthetic hosts, keyed HMAC per ancestor depth present.
    let key = IllegalKey::from_bytes(&[9u8; 32]).expect("key");
    let list: String = (0..10_000)
        .map(|i| format!("http://csam-test-{i}.invalid/\n"))
        .collect();
    let import = import_illegal(list.as_bytes(), &key).expect("import");
    let set = IllegalSet::from_import(&import, key).expect("set");
    let mut g = c.benchmark_group("lists/illegal");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("miss_deep", |b| {
        b.iter(|| {
            s.deep
                .iter()
                .filter(|q| set.lookup(black_box(q)).is_some())
                .count()
        })
    });
    g.finish();

    // Opening the artifact as start-up and every reload do: private copy, SHA-256, the fst's
    // own checksum and one full walk of each transducer (names per second = names held).
    let compiled = s._tmp.join("compiled");
    let mut g = c.benchmark_group(format!("lists/open/{}", s.label));
    g.sample_size(10);
    g.throughput(Throughput::Elements(s.lists.meta().names));
    g.bench_function("copy_verify_walk", |b| {
        b.iter(|| Blocklists::open(&compiled, None).expect("open"))
    });
    g.finish();

    // Compile throughput on the same sources (names per second = entries read).
    let input: u64 = s
        .lists
        .meta()
        .categories
        .iter()
        .map(|c| c.input_entries)
        .sum();
    let mut g = c.benchmark_group(format!("lists/compile/{}", s.label));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(input));
    let out = s._tmp.join("bench-compiled");
    g.bench_function("all_categories", |b| {
        b.iter_batched(
            || s.manifest.clone(),
            |manifest| {
                compile(&CompileOptions {
                    manifest,
                    out_dir: out.clone(),
                    illegal: None,
                })
                .expect("compile")
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    let _ = fs::remove_dir_all(&s._tmp);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_lookups
}
criterion_main!(benches);
