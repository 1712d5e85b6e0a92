//! TLS: a DNS-over-TLS upstream on loopback, with its own CA (`upstream.tls_ca`): answers come
//! over TLS, and without the CA the upstream's certificate is refused; and the dashboard over
//! HTTPS with the school's certificate.
//!
//! The certificates are made with the `openssl` command; without it the test is skipped
//! with a reason (and fails under `CI=true`).

use std::{net::SocketAddr, path::Path, process::Command, sync::Arc};

use crate::common::dns::{a_records, ask, scratch_dir, start_hedgerow_with};
use hedgerow::app::Overrides;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{rdata::A, RData, Record, RecordType},
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// A CA and a certificate for `dot.test` signed by it, in `dir`. `false` without `openssl`.
fn make_certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:dot.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Hedgerow test CA",
        ],
    ]
    .concat())
        && run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "dot.key",
                "-out",
                "dot.csr",
                "-subj",
                "/CN=dot.test",
            ],
        ]
        .concat())
        && run(&[
            "x509",
            "-req",
            "-in",
            "dot.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "dot.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ])
}

/// Answers every query over TLS with one A record, 192.0.2.99.
async fn dot_upstream(dir: &Path) -> SocketAddr {
    let chain = vec![CertificateDer::from_pem_file(dir.join("dot.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(dir.join("dot.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut len = [0u8; 2];
                while tls.read_exact(&mut len).await.is_ok() {
                    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
                    if tls.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let query = Message::from_vec(&buf).unwrap();
                    let mut response = query.clone().into_response();
                    response.add_answer(Record::from_rdata(
                        query.queries[0].name().clone(),
                        300,
                        RData::A(A::new(192, 0, 2, 99)),
                    ));
                    let bytes = response.to_vec().unwrap();
                    let framed = [&(bytes.len() as u16).to_be_bytes()[..], &bytes].concat();
                    if tls.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tls_upstream_with_its_own_ca() {
    let dir = scratch_dir("dot");
    if !crate::common::tools::openssl() {
        return;
    }
    assert!(
        make_certificates(&dir),
        "openssl could not make test certificates"
    );
    let upstream = dot_upstream(&dir).await;
    let group = "[[group]]\nname = \"local\"\nnetworks = [\"127.0.0.1/32\"]\n";
    let servers = format!("[upstream]\nservers = [\"tls://{upstream}#dot.test\"]\n");

    let trusted = format!(
        "{servers}tls_ca = \"{}\"\n{group}",
        dir.join("ca.pem").display()
    );
    let (app, _) = start_hedgerow_with(&trusted, None, Overrides::default()).await;
    let m = ask(app.dns_addrs()[0], "www.example.test.", RecordType::A).await;
    assert_eq!(a_records(&m), [std::net::Ipv4Addr::new(192, 0, 2, 99)]);

    // With the built-in web roots the same upstream is not trusted: SERVFAIL, no answer.
    let (app, _) =
        start_hedgerow_with(&format!("{servers}{group}"), None, Overrides::default()).await;
    let m = ask(app.dns_addrs()[0], "www.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

/// The dashboard over HTTPS with the school's certificate and key (`[dashboard] tls_cert`,
/// `tls_key`): a client that trusts the school's CA gets the sign-in page, whose cookie is
/// `Secure`; plain HTTP to the same port gets no page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_over_https_with_the_schools_certificate() {
    let dir = scratch_dir("dash-tls");
    if !crate::common::tools::openssl() {
        return;
    }
    assert!(
        make_certificates(&dir),
        "openssl could not make test certificates"
    );
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nhttp = \"127.0.0.1:0\"\n\
         [dashboard]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [[group]]\nname = \"local\"\nnetworks = [\"127.0.0.1/32\"]\n",
        dir.join("dot.pem").display(),
        dir.join("dot.key").display()
    );
    // Nothing is resolved here: an unreachable upstream only satisfies the configuration.
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (app, _) = start_hedgerow_with(&config, unused, Overrides::default()).await;
    let http = app.http_addr().expect("the HTTP listener");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("dot.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(b"GET /login HTTP/1.1\r\nHost: dot.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = Vec::new();
    let _ = tls.read_to_end(&mut page).await;
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Sign in"));
    let cookie = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie for the sign-in form");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));

    // Plain HTTP to the HTTPS port: no page comes back.
    let mut plain = tokio::net::TcpStream::connect(http).await.unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        plain.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("Sign in"),
        "no page over plain HTTP"
    );
}
