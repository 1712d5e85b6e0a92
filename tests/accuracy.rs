//! Accuracy on the public sample workload (`../shared/data/workload`): every UK-relevant list
//! of `derived/list-category-map.derived.tsv` is compiled into its proposed category, and each
//! of the 20,000 workload names is decided as a pupils' group blocking all of them would see
//! it. Ground truth (`sample-20k.truth.tsv.zst`) says which lists cover each name.

mod common;

use std::{collections::BTreeMap, io::Read, path::Path, time::SystemTime};

use hedgerow::{
    lists::{self, Blocklists, CompileOptions, Manifest},
    pipeline::policy::{decide, Context, Decision, GroupPolicy},
};

/// Categories a school blocks for pupils; `ads_malware` (advertising), `other` and the allow
/// list are not safeguarding categories.
fn school_category(c: &str) -> bool {
    !matches!(c, "ads_malware" | "other" | "allowlist")
}

fn read_maybe_zst(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if path.extension().is_some_and(|e| e == "zst") {
        zstd::stream::read::Decoder::new(file)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    }
    bytes
}

#[test]
fn sample_workload_false_positives_and_negatives() {
    let Some(data) = common::shared_data::shared_data() else {
        return;
    };
    let work = common::dns::scratch_dir("accuracy");
    let map = String::from_utf8(
        std::fs::read(data.join("derived/list-category-map.derived.tsv")).unwrap(),
    )
    .unwrap();
    let services = String::from_utf8(read_maybe_zst(
        &data.join("services/adguardhome-blocked-services.derived.tsv"),
    ))
    .unwrap();
    let mut by_category: BTreeMap<String, Vec<(String, &str)>> = BTreeMap::new();
    for (i, row) in map.lines().skip(1).enumerate() {
        let f: Vec<&str> = row.split('\t').collect();
        let (id, path, parsed_as, category) = (f[0], f[1], f[2], f[3]);
        if !school_category(category) {
            continue;
        }
        let file = work.join(format!("src{i}.txt"));
        let format = match parsed_as {
            "hosts" => "hosts",
            "adblock" => "adblock",
            _ => "domains",
        };
        if let Some(group) = id.strip_prefix("adguard-services/") {
            let rules: Vec<&str> = services
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let c: Vec<&str> = l.split('\t').collect();
                    (c.get(2) == Some(&group)).then(|| c[3])
                })
                .collect();
            std::fs::write(&file, rules.join("\n")).unwrap();
        } else {
            std::fs::write(&file, read_maybe_zst(&data.join(path))).unwrap();
        }
        by_category
            .entry(category.to_string())
            .or_default()
            .push((file.display().to_string(), format));
    }
    let mut manifest = String::new();
    for (category, sources) in &by_category {
        manifest += &format!(
            "[[category]]\nid = \"{category}\"\ntitle = \"{category}\"\nuk_definition = \"test\"\nseverity = \"medium\"\n"
        );
        for (path, format) in sources {
            manifest += &format!("[[category.source]]\npath = \"{path}\"\nformat = \"{format}\"\n");
        }
    }
    std::fs::write(work.join("lists.toml"), &manifest).unwrap();
    let out = work.join("compiled");
    lists::compile(&CompileOptions {
        manifest: Manifest::load(work.join("lists.toml")).unwrap(),
        out_dir: out.clone(),
        illegal: None,
    })
    .unwrap();
    let blocklists = Blocklists::open(&out, None).unwrap();
    let policy = GroupPolicy {
        categories: blocklists.categories().iter().fold(0, |m, c| m | c.mask()),
        anti_circumvention: true,
        ..Default::default()
    };
    let cx = Context {
        group: "pupils",
        policy: &policy,
        lists: &blocklists,
        now: SystemTime::now(),
        illegal_proxy: None,
    };

    let truth = String::from_utf8(read_maybe_zst(
        &data.join("workload/sample-20k.truth.tsv.zst"),
    ))
    .unwrap();
    let (mut tp, mut tn, mut fp, mut fneg) = (0, 0, 0, 0);
    let mut popular_blocked_unlisted = 0;
    let mut examples = Vec::new();
    for row in truth.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        let (qname, kind, matched) = (f[1], f[3], f[7]);
        let expected = matched != "-" && matched.split(';').any(school_category);
        let key = qname.trim_end_matches('.').to_ascii_lowercase();
        let blocked = matches!(decide(&cx, &key), Decision::Block(_));
        match (expected, blocked) {
            (true, true) => tp += 1,
            (false, false) => tn += 1,
            (false, true) => {
                fp += 1;
                if kind.starts_with("popular") && matched == "-" {
                    popular_blocked_unlisted += 1;
                }
                examples.push(format!("FP {kind} {qname} ({matched})"));
            }
            (true, false) => {
                fneg += 1;
                examples.push(format!("FN {kind} {qname} ({matched})"));
            }
        }
    }
    println!("accuracy on sample-20k: {tp} blocked as listed, {tn} allowed as unlisted, {fp} false positives, {fneg} false negatives");
    for e in examples.iter().take(20) {
        println!("  {e}");
    }
    assert_eq!(tp + tn + fp + fneg, 20_000);
    assert!(tp > 2_000, "{tp}");
    // The only names we block beyond the lists are the built-in circumvention names.
    assert!(popular_blocked_unlisted <= 3, "{examples:?}");
    assert!(
        fp <= 3 && fneg <= 3,
        "{fp} false positives, {fneg} false negatives: {examples:?}"
    );
}
