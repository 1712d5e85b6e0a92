//! Swapping compiled lists under load, rejecting a corrupt artifact, and refusing to start
//! unfiltered.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::common::dns::{ask, scratch_dir, start_hedgerow, Upstream};
use hedgerow::{
    app::{Hedgerow, Overrides},
    config::Config,
    lists,
    lists::configured::compile_options,
};
use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::common::games::{config_text, write_lists};

/// An upstream and Hedgerow with one category (`games` = games.test) blocked for 127.0.0.1;
/// returns them with the lists folder and the configuration file.
async fn start(tag: &str) -> (Upstream, Hedgerow, PathBuf, PathBuf) {
    let up = Upstream::start().await;
    let dir = scratch_dir(tag);
    write_lists(&dir, "games.test\n");
    let (app, cfg) = start_hedgerow(&config_text(&dir), up.addr).await;
    (up, app, dir, cfg)
}

fn recompile(config_path: &Path) {
    let config = Config::from_file(config_path).unwrap();
    lists::compile(&compile_options(&config).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_swap_under_load_without_a_failed_query() {
    let (up, app, dir, cfg) = start("swap").await;
    let dns = app.dns_addrs()[0];
    assert_eq!(
        ask(dns, "games.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let m = crate::common::dns::udp_query(
                    dns,
                    "www.example.test.",
                    RecordType::A,
                    Default::default(),
                )
                .await;
                match m {
                    Some(m) if m.metadata.response_code == ResponseCode::NoError => {
                        answered.fetch_add(1, Ordering::SeqCst)
                    }
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    // Swap five times while the load runs: games.test and school.test alternate.
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let list = if round % 2 == 0 {
            "school.test\n"
        } else {
            "games.test\n"
        };
        write_lists(&dir, list);
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || recompile(&cfg))
            .await
            .unwrap();
        // mtime granularity: make sure the watcher sees a change.
        app.reload_lists_if_changed().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let (ok, bad) = (
        answered.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst),
    );
    assert!(ok > 100, "only {ok} queries answered");
    assert_eq!(
        bad, 0,
        "{bad} queries failed during the swaps ({ok} answered)"
    );
    // The last compile listed school.test only.
    assert_eq!(
        ask(dns, "school.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(up.seen.count("games.test", RecordType::A), 0);
    ask(dns, "games.test.", RecordType::A).await;
    assert_eq!(
        up.seen.count("games.test", RecordType::A),
        1,
        "games.test is no longer listed"
    );
    crate::common::dns::assert_metric(&app, "hedgerow_list_reloads_total{outcome=\"ok\"}");
    // New lists on disk are a list reload, not a configuration reload.
    let text = app.metrics().encode();
    assert!(
        !text.contains("hedgerow_config_reloads_total{outcome="),
        "counted as a configuration reload:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_artifact_is_rejected_and_the_old_lists_stay() {
    let (_up, app, _dir, cfg) = start("corrupt").await;
    let dns = app.dns_addrs()[0];
    let artifact = cfg.parent().unwrap().join("data/lists");
    // A damaged artifact arrives (a botched copy from another machine, a bad disk): same
    // size, flipped bytes, renamed into place over the good one.
    let replace_with = |damage: &dyn Fn(&mut Vec<u8>)| {
        let staging = artifact.with_extension("incoming");
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        for entry in std::fs::read_dir(&artifact).unwrap() {
            let entry = entry.unwrap();
            let mut bytes = std::fs::read(entry.path()).unwrap();
            if entry.file_name() == "categories.fst" {
                damage(&mut bytes);
            }
            std::fs::write(staging.join(entry.file_name()), bytes).unwrap();
        }
        let old = artifact.with_extension("previous");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&artifact, &old).unwrap();
        std::fs::rename(&staging, &artifact).unwrap();
    };
    replace_with(&|b| {
        let mid = b.len() / 2;
        b[mid] ^= 0xff;
    });
    let err = app.reload().await.unwrap_err().to_string();
    assert!(err.contains("categories.fst"), "{err}");
    assert_eq!(
        ask(dns, "play.games.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain,
        "old lists still in force"
    );
    crate::common::dns::assert_metric(&app, "hedgerow_list_reloads_total{outcome=\"error\"} 1");
    // Truncated.
    replace_with(&|b| b.truncate(10));
    let err = app.reload().await.unwrap_err().to_string();
    assert!(err.contains("categories.fst"), "{err}");
    assert_eq!(
        ask(dns, "play.games.test.", RecordType::A)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    let m = ask(dns, "www.example.test.", RecordType::A).await;
    assert_eq!(
        crate::common::dns::a_records(&m),
        [Ipv4Addr::new(192, 0, 2, 10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_artifact_means_no_start_and_says_what_to_run() {
    let dir = scratch_dir("nostart");
    write_lists(&dir, "games.test\n");
    let path = dir.join("h.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\ndata_dir = \"{}\"\n[upstream]\nservers = [\"127.0.0.1:9\"]\n[lists]\nmanifest = \"{}\"\n",
            dir.join("data").display(),
            dir.join("lists.toml").display()
        ),
    )
    .unwrap();
    let err = match Hedgerow::start(Some(path), Overrides::default()).await {
        Ok(_) => panic!("started without lists"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("no compiled lists") && err.contains("hedgerow lists compile"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_groups_across_a_reload() {
    let (_up, app, _dir, cfg) = start("relabel").await;
    let dns = app.dns_addrs()[0];
    ask(dns, "www.example.test.", RecordType::A).await;
    // A new group takes over the client's address, and the old one moves down the file.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let (head, _) = text.split_once("[[group]]").unwrap();
    let text = format!(
        "{head}[[group]]\nname = \"staff\"\nnetworks = [\"127.0.0.1/32\"]\n\
         [[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\nblock_categories = [\"games\"]\n"
    );
    std::fs::write(&cfg, text).unwrap();
    app.reload().await.unwrap();
    ask(dns, "www.example.test.", RecordType::A).await;
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_queries_total{disposition=\"forwarded\",group=\"pupils\",qtype=\"A\"} 1",
    );
    crate::common::dns::assert_metric(
        &app,
        "hedgerow_queries_total{disposition=\"cached\",group=\"staff\",qtype=\"A\"} 1",
    );
    // A configuration reload is counted as one; the lists, unchanged, were not reopened.
    crate::common::dns::assert_metric(&app, "hedgerow_config_reloads_total{outcome=\"ok\"} 1");
    let text = app.metrics().encode();
    assert!(
        !text.contains("hedgerow_list_reloads_total{outcome=\"ok\"}"),
        "lists counted as reloaded:\n{text}"
    );
}
