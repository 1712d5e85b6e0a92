//! Lookups at scale: the compiled lists of `../shared/bench/gen_lists.py` (1M, 5M, 20M
//! names…) asked real traffic — the shared sample workload, popular-domain lists — and the
//! harness's own workload, listed names and their subdomains.
//!
//! ```sh
//! python3 ../shared/bench/gen_lists.py --out /tmp/scale-lists --sizes 1M,5M,20M
//! SCALE_LISTS=/tmp/scale-lists SCALE_SIZES=1M,5M,20M cargo bench --bench scale
//! ```
//!
//! Each `list-N.txt` is compiled once into `list-N.compiled/` beside it (delete the folder, or
//! set `SCALE_RECOMPILE=1`, after changing the compiler). Per size and query set it times
//! [`Blocklists::lookup`] (what policy calls; each set is asked again and again, so after the
//! first pass a name the prefilter lets by is answered by the memo of walks, if the set fits
//! in it), [`Blocklists::lookup_walking`] (the prefilter, then the walk) and the bare
//! transducer walk, and prints how many names of each set the prefilter lets through to the
//! walk. Without `SCALE_LISTS` it does nothing.

#[path = "../tests/it/common/shared_data.rs"]
mod shared_data;

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{black_box, Criterion, Throughput};
use hedgerow::lists::{compile, Blocklists, CompileOptions, Manifest};

/// One way of asking whether a name is listed.
type Listed<'a> = dyn Fn(&str) -> bool + 'a;

/// Names per query set (each iteration asks them all).
const SET: usize = 20_000;

fn read_text(path: &Path) -> String {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = String::new();
    if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::read::Decoder::new(file)
            .expect("zstd")
            .read_to_string(&mut s)
            .expect("read");
    } else {
        BufReader::new(file).read_to_string(&mut s).expect("read");
    }
    s
}

/// `n` names spread evenly over `all`.
fn spread(all: &[String], n: usize) -> Vec<String> {
    let step = (all.len() / n).max(1);
    all.iter().step_by(step).take(n).cloned().collect()
}

/// Compiles `list` (one name per line) into `list.compiled` unless already there.
fn artifact(list: &Path) -> PathBuf {
    let out = list.with_extension("compiled");
    if out.join("meta.toml").exists() && std::env::var_os("SCALE_RECOMPILE").is_none() {
        return out;
    }
    let manifest_path = list.with_extension("toml");
    fs::write(
        &manifest_path,
        format!(
            "[[category]]\nid = \"bench\"\ntitle = \"bench\"\nuk_definition = \"-\"\nseverity = \"high\"\n\
             [[category.source]]\npath = \"{}\"\nformat = \"domains\"\n",
            list.display()
        ),
    )
    .expect("manifest");
    let report = compile(&CompileOptions {
        manifest: Manifest::load(&manifest_path).expect("manifest"),
        out_dir: out.clone(),
        illegal: None,
    })
    .expect("compile");
    eprintln!("{report}");
    out
}

/// The query sets: (name, names).
fn query_sets(dir: &Path, size: &str) -> Vec<(&'static str, Vec<String>)> {
    let mut sets = Vec::new();
    if let Some(data) = shared_data::shared_data() {
        let workload: Vec<String> = read_text(&data.join("workload/sample-20k.dnsperf"))
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        sets.push(("sample20k", spread(&workload, SET)));
        let umbrella: Vec<String> = read_text(&data.join("popular/umbrella-top-100k.txt.zst"))
            .lines()
            .map(str::to_string)
            .collect();
        sets.push(("umbrella", spread(&umbrella, SET)));
        let radar: Vec<String> =
            read_text(&data.join("popular/cloudflare-radar-top-100k-2024-01-22.csv.zst"))
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect();
        sets.push(("radar", spread(&radar, SET)));
    }
    let harness: Vec<String> = read_text(&dir.join(format!("workload-{size}.txt")))
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    sets.push(("harness", spread(&harness, SET)));
    let listed: Vec<String> = read_text(&dir.join(format!("list-{size}.txt")))
        .lines()
        .map(str::to_string)
        .collect();
    let listed = spread(&listed, SET);
    sets.push((
        "listed_sub",
        listed.iter().map(|n| format!("cdn.{n}")).collect(),
    ));
    sets.push(("listed", listed));
    sets
}

/// The deepest hit of the bare walk (the lookup without any prefilter).
fn walk_deepest(lists: &Blocklists, name: &str) -> Option<u8> {
    let mut best = None;
    lists.walk(name, |h| best = Some(h.depth));
    best
}

fn main() {
    let Some(dir) = std::env::var_os("SCALE_LISTS").map(PathBuf::from) else {
        eprintln!("SCALE_LISTS not set: nothing to measure (see the module doc)");
        return;
    };
    let sizes = std::env::var("SCALE_SIZES").unwrap_or_else(|_| "1M,5M".into());
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for size in sizes.split(',') {
        let art = artifact(&dir.join(format!("list-{size}.txt")));
        let lists = Blocklists::open(&art, None).expect("open");
        if let Some((anchors, bytes)) = lists.prefilter_size() {
            eprintln!(
                "scale/{size}: {} names, prefilter {anchors} anchors, {bytes} bytes ({:.2} bytes/name)",
                lists.meta().names,
                bytes as f64 / lists.meta().names as f64
            );
        }
        let sets = query_sets(&dir, size);
        let mut g = c.benchmark_group(format!("scale/{size}"));
        g.throughput(Throughput::Elements(SET as u64));
        for (set, names) in &sets {
            // Same answers with and without the prefilter, and how often it lets a name by.
            let (mut hits, mut walked) = (0, 0);
            for n in names {
                let filtered = lists.lookup(n, u32::MAX).map(|h| h.depth);
                assert_eq!(filtered, walk_deepest(&lists, n), "{n}");
                hits += usize::from(filtered.is_some());
                walked += usize::from(lists.may_be_listed(n));
            }
            eprintln!(
                "scale/{size}/{set}: {} names, {hits} listed, {walked} past the prefilter",
                names.len()
            );
            let ways: [(&str, &Listed); 3] = [
                ("lookup", &|n| lists.lookup(n, u32::MAX).is_some()),
                ("prefilter_walk", &|n| {
                    lists.lookup_walking(n, u32::MAX).is_some()
                }),
                ("walk", &|n| walk_deepest(&lists, n).is_some()),
            ];
            for (way, listed) in ways {
                g.bench_function(format!("{set}/{way}"), |b| {
                    b.iter(|| names.iter().filter(|n| listed(black_box(n))).count())
                });
            }
        }
        g.finish();
    }
    c.final_summary();
}
