//! The store benches' query names: the shared sample workload's, or made-up ones when the
//! shared data is absent.

#[path = "../../tests/it/common/shared_data.rs"]
mod shared_data;

/// Names from the shared workload, or made-up ones when it is absent.
pub fn names() -> Vec<String> {
    let from_file = shared_data::shared_data()
        .and_then(|d| std::fs::read_to_string(d.join("workload/sample-20k.dnsperf")).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if from_file.is_empty() {
        (0..20_000)
            .map(|i| format!("host{}.site{}.example", i % 7, i))
            .collect()
    } else {
        from_file
    }
}
