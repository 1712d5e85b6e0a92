//! "A pupil must not be able to blow memory up or switch filtering off": the cache's memory
//! budget, lists that never fail open, configurations that cannot open the resolver, and the
//! smaller guards (hostile upstream records, CHAOS queries, IPv6 rate limits).

use std::net::SocketAddr;

use crate::common::dns::{start_hedgerow, tcp_query, Upstream, Zone};
use hedgerow::app::Hedgerow;
use hickory_proto::{
    op::ResponseCode,
    rr::{rdata::TXT, Name, RData, Record, RecordType},
};

const LOCAL: &str =
    "[rate_limit]\nqps = 0\n[[group]]\nname = \"local\"\nnetworks = [\"127.0.0.1/32\"]\n";

/// The value of an unlabelled metric in `/metrics`.
fn metric(app: &Hedgerow, name: &str) -> f64 {
    let text = app.metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in:\n{text}"))
}

/// `count` TXT records of `len` bytes each for `owner`: too big for UDP, so over TCP.
fn big_txt(zone: &mut Zone, owner: &str, count: usize, len: usize) {
    let name = Name::from_ascii(owner).unwrap();
    let records = (0..count)
        .map(|i| {
            let text = format!("{i:04}{}", "t".repeat(len - 4));
            Record::from_rdata(name.clone(), 300, RData::TXT(TXT::new(vec![text])))
        })
        .collect();
    zone.insert(
        (owner.trim_end_matches('.').to_string(), RecordType::TXT),
        records,
    );
}

fn txt_strings(m: &hickory_proto::op::Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

const NAMES: usize = 300;
const BUDGET: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stays_inside_its_memory_budget_with_large_answers() {
    let mut zone = crate::common::dns::zone();
    for i in 0..NAMES {
        big_txt(&mut zone, &format!("big{i}.example.test."), 10, 200);
    }
    // ~75 KiB of records once held: served, never cached.
    big_txt(&mut zone, "huge.example.test.", 60, 250);
    let up = Upstream::with_zone(zone).await;
    let config = format!("{LOCAL}[cache]\nmax_bytes = {BUDGET}\nmax_entry_bytes = 32768\n");
    let (app, _) = start_hedgerow(&config, up.addr).await;
    let dns: SocketAddr = app.dns_addrs()[0];

    for i in 0..NAMES {
        let m = tcp_query(dns, &format!("big{i}.example.test."), RecordType::TXT).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let texts = txt_strings(&m);
        assert_eq!(texts.len(), 10, "big{i}: every record served");
        assert!(texts.iter().all(|t| t.len() == 200), "big{i}: {texts:?}");
        let bytes = metric(&app, "hedgerow_cache_bytes");
        assert!(
            bytes <= BUDGET as f64,
            "after {} names the cache holds {bytes} bytes",
            i + 1
        );
    }
    let entries = metric(&app, "hedgerow_cache_entries");
    let bytes = metric(&app, "hedgerow_cache_bytes");
    assert!(entries > 10.0, "the budget still caches: {entries} entries");
    assert!(
        entries < NAMES as f64,
        "the budget evicted: {entries} entries, {bytes} bytes"
    );
    // The most recent name is still answered from the cache, and correctly.
    // (The upstream counts a UDP try and the TCP retry per resolution.)
    let last = format!("big{}.example.test.", NAMES - 1);
    let asked = up.seen.count(&last, RecordType::TXT);
    let again = tcp_query(dns, &last, RecordType::TXT).await;
    assert_eq!(txt_strings(&again).len(), 10);
    assert_eq!(up.seen.count(&last, RecordType::TXT), asked, "a cache hit");

    // Above max_entry_bytes: answered in full every time, never cached.
    let mut asked = Vec::new();
    for _ in 0..2 {
        let m = tcp_query(dns, "huge.example.test.", RecordType::TXT).await;
        assert_eq!(txt_strings(&m).len(), 60);
        asked.push(up.seen.count("huge.example.test.", RecordType::TXT));
    }
    assert!(asked[1] > asked[0], "asked upstream each time: {asked:?}");
    assert!(metric(&app, "hedgerow_cache_uncached_large_total") >= 2.0);
}
