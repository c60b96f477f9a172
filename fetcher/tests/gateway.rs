//! `fetcher get` and init-container mode against scripted gateways on 127.0.0.1 and local
//! mirrors, plus self-tests of `support::TestGateway`.
//!
//! Every failure case checks that nothing is left at the target path and no temp file is left
//! in its directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha512};
use support::*;

const CAR_ACCEPT: &str = "application/vnd.ipld.car;version=1;order=dfs;dups=y";
const RAW_ACCEPT: &str = "application/vnd.ipld.raw";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh directory for the target; the target itself is `dir/out.bin`.
fn target() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.bin");
    (dir, out)
}

/// `fetcher get --retries 2 --backoff-ms 10 [extra] --gateway G... CID -o OUT`
fn get(gateways: &[String], extra: &[&str], cid: &str, out: &Path) -> Run {
    let mut cmd = fetcher_get();
    cmd.args(extra);
    for g in gateways {
        cmd.arg("--gateway").arg(g);
    }
    cmd.arg(cid).arg("-o").arg(out);
    run(&mut cmd)
}

#[track_caller]
fn expect_fetched(r: &Run, out: &Path, sha256: &str, gateways: &[&TestGateway]) {
    let logs: String = gateways
        .iter()
        .map(|g| format!("\ngateway {} saw:\n    {}", g.host(), g.log()))
        .collect();
    assert_eq!(r.code, Some(0), "expected success\n{}{logs}", r.describe());
    r.expect_quiet_stdout();
    assert_file_sha256(out, sha256, r);
    let name = out.file_name().unwrap().to_str().unwrap();
    assert_only_files(out.parent().unwrap(), &[name], r);
}

#[track_caller]
fn expect_failed(r: &Run, out: &Path, gateways: &[&TestGateway]) {
    let logs: String = gateways
        .iter()
        .map(|g| format!("\ngateway {} saw:\n    {}", g.host(), g.log()))
        .collect();
    assert_eq!(r.code, Some(1), "expected exit 1\n{}{logs}", r.describe());
    r.expect_quiet_stdout();
    assert_nothing_left(out, r);
}

fn v1_form(cid_v0: &str) -> String {
    parse_cid(cid_v0).unwrap().into_v1().unwrap().to_string()
}

fn keys(cids: &[String]) -> Vec<BlockKey> {
    cids.iter().map(|c| key_of_str(c).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// Self-tests of TestGateway (plain TcpStream client, no binary needed)
// ---------------------------------------------------------------------------------------------

#[test]
fn support_gateway_serves_car_raw_and_plain() {
    let dag = Dag::v0("chunk-plus-1");
    let gw = TestGateway::serving(vec![dag.clone(), Dag::v1("hello-wasm")]);
    let root = &dag.root;

    let (status, headers, body) = http_get(
        gw.addr(),
        &format!("/ipfs/{root}?format=car"),
        Some(CAR_ACCEPT),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("application/vnd.ipld.car"));
    assert_eq!(
        header(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(
        Car::parse(&body).unwrap().blocks,
        dag.car.as_ref().unwrap().blocks
    );

    // CAR chosen by the Accept header alone, and by the CIDv1 form of the root.
    let (status, _, body2) = http_get(
        gw.addr(),
        &format!("/ipfs/{}", v1_form(root)),
        Some(CAR_ACCEPT),
    )
    .unwrap();
    assert_eq!((status, &body2), (200, &body));

    for cid in dag.dfs_cids() {
        let (status, headers, body) = http_get(
            gw.addr(),
            &format!("/ipfs/{cid}?format=raw"),
            Some(RAW_ACCEPT),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some(RAW_ACCEPT));
        assert_eq!(body, dag.store.get_str(&cid).unwrap().data);
    }

    let (status, _, body) = http_get(gw.addr(), &format!("/ipfs/{root}"), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&body), vector("chunk-plus-1").sha256);

    let hello = vector("hello-wasm");
    let (status, _, body) = http_get(gw.addr(), &format!("/ipfs/{}", hello.cidv1), None).unwrap();
    assert_eq!((status, body), (200, hello.content()));

    let (status, _, _) = http_get(
        gw.addr(),
        &format!("/ipfs/{}", vector("eleven").cidv0),
        None,
    )
    .unwrap();
    assert_eq!(status, 404);
    let (status, _, _) = http_get(gw.addr(), "/ipfs/not-a-cid", None).unwrap();
    assert_eq!(status, 400);
    let (status, _, _) = http_get(gw.addr(), "/ipns/whatever", None).unwrap();
    assert_eq!(status, 404);

    let reqs = gw.requests();
    assert_eq!(reqs.len(), 10);
    assert_eq!(reqs[0].kind, Kind::Car);
    assert_eq!(reqs[0].query, "format=car");
    assert_eq!(reqs[0].accept.as_deref(), Some(CAR_ACCEPT));
    assert_eq!(reqs[1].kind, Kind::Car);
    assert_eq!(reqs[2].kind, Kind::Raw);
    assert_eq!(reqs[5].kind, Kind::Plain);
    // v0 and v1 forms of the root count as the same CID
    assert_eq!(gw.requests_for(root).len(), 4);
    assert_eq!(gw.requests_for(&v1_form(root)).len(), 4);
}

#[test]
fn support_gateway_car_dups_modes() {
    let dag = Dag::v0("zeros-3chunks-plus-1");
    let root = dag.root.clone();
    for (dups, blocks, flag) in [(Dups::No, 3, "dups=n"), (Dups::Yes, 5, "dups=y")] {
        let gw = TestGateway::start(vec![dag.clone()], GatewayConfig::default().dups(dups));
        let (status, headers, body) = http_get(
            gw.addr(),
            &format!("/ipfs/{root}?format=car"),
            Some(CAR_ACCEPT),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert!(header(&headers, "content-type").unwrap().ends_with(flag));
        assert_eq!(Car::parse(&body).unwrap().blocks.len(), blocks);
    }
}

#[test]
fn support_gateway_refuses_formats() {
    let dag = Dag::v0("chunk-plus-1");
    let root = dag.root.clone();
    let car_q = format!("/ipfs/{root}?format=car");
    let raw_q = format!("/ipfs/{root}?format=raw");
    let plain = format!("/ipfs/{root}");

    let gw = TestGateway::start(
        vec![dag.clone()],
        GatewayConfig::default().offer(Offer::RawOnly),
    );
    assert_eq!(
        http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().0,
        406
    );
    assert_eq!(
        http_get(gw.addr(), &raw_q, Some(RAW_ACCEPT)).unwrap().0,
        200
    );
    assert_eq!(http_get(gw.addr(), &plain, None).unwrap().0, 200);

    let gw = TestGateway::start(
        vec![dag.clone()],
        GatewayConfig::default()
            .offer(Offer::PlainOnly)
            .refuse_status(501),
    );
    assert_eq!(
        http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().0,
        501
    );
    assert_eq!(
        http_get(gw.addr(), &raw_q, Some(RAW_ACCEPT)).unwrap().0,
        501
    );
    assert_eq!(http_get(gw.addr(), &plain, None).unwrap().0, 200);

    let gw = TestGateway::start(
        vec![dag.clone()],
        GatewayConfig::default().offer(Offer::Legacy),
    );
    for q in [&car_q, &raw_q, &plain] {
        let (status, headers, body) = http_get(gw.addr(), q, Some(CAR_ACCEPT)).unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(body, dag.file);
    }

    let gw = TestGateway::start(vec![dag], GatewayConfig::default().fault(Fault::NotFound));
    for q in [&car_q, &raw_q, &plain] {
        assert_eq!(http_get(gw.addr(), q, None).unwrap().0, 404);
    }
}

#[test]
fn support_gateway_content_faults() {
    let dag = Dag::v0("chunk-plus-1");
    let root = dag.root.clone();
    let car_q = format!("/ipfs/{root}?format=car");
    let good = dag.car.clone().unwrap();
    let start =
        |fault: Fault| TestGateway::start(vec![dag.clone()], GatewayConfig::default().fault(fault));

    let gw = start(Fault::CorruptBlock);
    let car = Car::parse(&http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().2).unwrap();
    assert!(car.blocks[..2].iter().all(Block::digest_matches));
    assert!(!car.blocks[2].digest_matches());
    let leaf = dag.corrupt_target().unwrap().cid_string();
    let raw = http_get(gw.addr(), &format!("/ipfs/{leaf}?format=raw"), None)
        .unwrap()
        .2;
    assert_ne!(
        sha256(&raw)[..],
        parse_cid(&leaf).unwrap().hash().digest()[..]
    );
    let first = dag.dfs_cids()[0].clone();
    let raw = http_get(gw.addr(), &format!("/ipfs/{first}?format=raw"), None)
        .unwrap()
        .2;
    assert_eq!(raw, good.blocks[0].data);

    let gw = start(Fault::WrongPlainBytes);
    let body = http_get(gw.addr(), &format!("/ipfs/{root}"), None)
        .unwrap()
        .2;
    assert_eq!(body.len(), dag.file.len());
    assert_ne!(body, dag.file);

    let gw = start(Fault::TruncatedCar);
    let (status, headers, body) = http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap();
    assert_eq!(status, 200);
    let declared: usize = header(&headers, "content-length").unwrap().parse().unwrap();
    assert_eq!(declared, good.to_bytes().len());
    assert!(body.len() < declared);
    assert!(Car::parse(&body).is_err());

    let gw = start(Fault::TruncatedCarEof);
    let (status, headers, body) = http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap();
    assert_eq!(status, 200);
    assert!(header(&headers, "content-length").is_none());
    assert!(Car::parse(&body).is_err());

    let gw = start(Fault::ExtraBlock);
    let car = Car::parse(&http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().2).unwrap();
    assert_eq!(car.blocks.len(), 4);
    assert_eq!(car.blocks[3], unrelated_block());

    let gw = start(Fault::MissingBlock(1));
    let car = Car::parse(&http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().2).unwrap();
    assert_eq!(
        car.blocks,
        vec![good.blocks[0].clone(), good.blocks[2].clone()]
    );

    let gw = start(Fault::FailFirst {
        status: 500,
        count: 2,
    });
    let statuses: Vec<u16> = (0..3)
        .map(|_| http_get(gw.addr(), &car_q, Some(CAR_ACCEPT)).unwrap().0)
        .collect();
    assert_eq!(statuses, [500, 500, 200]);
    let recorded: Vec<u16> = gw.requests().iter().map(|r| r.status).collect();
    assert_eq!(recorded, [500, 500, 200]);
}

#[test]
fn support_gateway_hangs_without_blocking_shutdown() {
    let dag = Dag::v0("chunk-plus-1");
    let root = dag.root.clone();

    // Hang before any response byte.
    let gw = TestGateway::start(
        vec![dag.clone()],
        GatewayConfig::default().fault(Fault::HangBeforeResponse),
    );
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    write!(s, "GET /ipfs/{root} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = s.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    let t = Instant::now();
    drop(gw);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        t.elapsed()
    );

    // Headers and half the body, then a stall.
    let gw = TestGateway::start(
        vec![dag],
        GatewayConfig::default().fault(Fault::HangMidBody),
    );
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    write!(s, "GET /ipfs/{root} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    let err = loop {
        match s.read(&mut chunk) {
            Ok(0) => panic!("connection closed instead of stalling"),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got.len() > 100_000 && got.len() < 200_000, "{}", got.len());
    let t = Instant::now();
    drop(gw);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "drop took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Successful fetches
// ---------------------------------------------------------------------------------------------

fn check_car_fetch(dag: Dag, sha256: &str) {
    let root = dag.root.clone();
    let gw = TestGateway::serving(vec![dag]);
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &root, &out);
    expect_fetched(&r, &out, sha256, &[&gw]);
    let reqs = gw.requests();
    assert_eq!(reqs.len(), 1, "one CAR request\n    {}", gw.log());
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, format!("/ipfs/{root}"));
    assert!(
        reqs[0].query.split('&').any(|p| p == "format=car"),
        "query {:?}",
        reqs[0].query
    );
    let accept = reqs[0].accept.clone().unwrap_or_default();
    assert!(
        accept.contains("application/vnd.ipld.car"),
        "Accept {accept:?}"
    );
}

#[test]
fn car_fetch_chunk_plus_1_v0() {
    check_car_fetch(Dag::v0("chunk-plus-1"), &vector("chunk-plus-1").sha256);
}

#[test]
fn car_fetch_mib_plus_7_v0() {
    check_car_fetch(Dag::v0("mib-plus-7"), &vector("mib-plus-7").sha256);
}

#[test]
fn car_fetch_chunk_plus_1_v1() {
    check_car_fetch(Dag::v1("chunk-plus-1"), &vector("chunk-plus-1").sha256);
}

#[test]
fn car_fetch_single_block_v0_and_v1() {
    check_car_fetch(Dag::v0("hello-wasm"), &vector("hello-wasm").sha256);
    check_car_fetch(Dag::v1("hello-wasm"), &vector("hello-wasm").sha256);
    check_car_fetch(Dag::v0("empty"), &vector("empty").sha256);
}

fn check_zeros(dups: Dups) {
    let v = vector("zeros-3chunks-plus-1");
    let gw = TestGateway::start(vec![Dag::v0(&v.name)], GatewayConfig::default().dups(dups));
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
    assert_eq!(gw.requests().len(), 1, "{}", gw.log());
}

#[test]
fn car_dups_y_zeros() {
    check_zeros(Dups::Yes);
}

#[test]
fn car_dups_n_zeros() {
    check_zeros(Dups::No);
}

#[test]
fn raw_fallback_after_406() {
    let dag = Dag::v0("chunk-plus-1");
    let root = dag.root.clone();
    let dfs = dag.dfs_cids();
    let gw = TestGateway::start(vec![dag], GatewayConfig::default().offer(Offer::RawOnly));
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &root, &out);
    expect_fetched(&r, &out, &vector("chunk-plus-1").sha256, &[&gw]);
    let reqs = gw.requests();
    assert_eq!(reqs[0].kind, Kind::Car, "CAR asked first\n    {}", gw.log());
    assert_eq!(reqs[0].status, 406);
    let raw: Vec<_> = reqs[1..].iter().collect();
    assert!(
        raw.iter().all(|r| r.kind == Kind::Raw
            && r.query.split('&').any(|p| p == "format=raw")
            && r.accept.as_deref().unwrap_or("").contains(RAW_ACCEPT)),
        "then raw requests with ?format=raw and Accept: {RAW_ACCEPT}\n    {}",
        gw.log()
    );
    let asked: Vec<BlockKey> = raw.iter().map(|r| r.key.clone().unwrap()).collect();
    assert_eq!(
        asked,
        keys(&dfs),
        "root then each child in DFS order\n    {}",
        gw.log()
    );
}

#[test]
fn raw_fallback_after_other_refusals() {
    // 400, 415 and 501 also mean "no CAR here"; and a 200 with another content type
    // (a gateway that ignores format and Accept) is covered by legacy_gateway_* below.
    let v = vector("chunk-plus-1");
    for status in [400, 415, 501] {
        let gw = TestGateway::start(
            vec![Dag::v1(&v.name)],
            GatewayConfig::default()
                .offer(Offer::RawOnly)
                .refuse_status(status),
        );
        let (_dir, out) = target();
        let r = get(&[gw.url()], &[], &v.cidv1, &out);
        expect_fetched(&r, &out, &v.sha256, &[&gw]);
        assert!(
            gw.requests().iter().skip(1).all(|r| r.kind == Kind::Raw),
            "refusal {status}\n    {}",
            gw.log()
        );
    }
}

#[test]
fn raw_fallback_zeros_with_repeated_leaf() {
    let v = vector("zeros-3chunks-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().offer(Offer::RawOnly),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
}

fn check_plain_fallback(dag: Dag, sha256: &str) {
    let root = dag.root.clone();
    let gw = TestGateway::start(vec![dag], GatewayConfig::default().offer(Offer::PlainOnly));
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &root, &out);
    expect_fetched(&r, &out, sha256, &[&gw]);
    let reqs = gw.requests();
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.kind, last.status),
        (Kind::Plain, 200),
        "ends with a plain GET\n    {}",
        gw.log()
    );
    assert!(
        reqs.iter().any(|r| r.kind == Kind::Car),
        "CAR was tried first\n    {}",
        gw.log()
    );
    assert!(
        reqs.iter().any(|r| r.kind == Kind::Raw),
        "raw was tried before plain\n    {}",
        gw.log()
    );
}

#[test]
fn plain_fallback_v0_multi_block() {
    check_plain_fallback(Dag::v0("mib-plus-7"), &vector("mib-plus-7").sha256);
}

#[test]
fn plain_fallback_v1_single_block() {
    check_plain_fallback(Dag::v1("hello-wasm"), &vector("hello-wasm").sha256);
}

#[test]
fn plain_fallback_v1_multi_block() {
    check_plain_fallback(Dag::v1("chunk-plus-1"), &vector("chunk-plus-1").sha256);
}

#[test]
fn plain_fallback_large_vectors() {
    // No CAR is committed for these; a plain GET is the only way, and the CID has to be
    // recomputed (46mib-plus-5 is a two-level DAG).
    for (name, v1) in [("5mib-plus-3", true), ("46mib-plus-5", false)] {
        let v = vector(name);
        let cid = if v1 { &v.cidv1 } else { &v.cidv0 };
        let gw = TestGateway::start(
            vec![Dag::plain_only(cid, v.content())],
            GatewayConfig::default().offer(Offer::PlainOnly),
        );
        let (_dir, out) = target();
        let r = get(&[gw.url()], &[], cid, &out);
        expect_fetched(&r, &out, &v.sha256, &[&gw]);
    }
}

#[test]
fn legacy_gateway_ignoring_format_falls_back_to_plain() {
    // 200 with application/octet-stream to every request, whatever format/Accept say.
    let v = vector("chunk-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().offer(Offer::Legacy),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
}

#[test]
fn gateway_url_without_ipfs_suffix() {
    let v = vector("chunk-plus-1");
    let gw = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
    assert!(gw
        .requests()
        .iter()
        .all(|r| r.path == format!("/ipfs/{}", v.cidv0)));
}

#[test]
fn gateway_url_with_ipfs_suffix() {
    let v = vector("chunk-plus-1");
    let gw = TestGateway::serving(vec![Dag::v1(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[gw.url_ipfs()], &[], &v.cidv1, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
    assert!(
        gw.requests()
            .iter()
            .all(|r| r.path == format!("/ipfs/{}", v.cidv1)),
        "{}",
        gw.log()
    );
}

#[test]
fn gateway_url_with_trailing_slash() {
    // Not in the contract; real deployments often write `.../ipfs/`.
    let v = vector("chunk-plus-1");
    let gw = TestGateway::serving(vec![Dag::v1(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[format!("{}/", gw.url_ipfs())], &[], &v.cidv1, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
}

#[test]
fn cid_path_pairs_two_at_once() {
    let a = vector("chunk-plus-1");
    let b = vector("hello-wasm");
    let gw = TestGateway::serving(vec![Dag::v0(&a.name), Dag::v1(&b.name)]);
    let dir = tempfile::tempdir().unwrap();
    let pa = dir.path().join("a.bin");
    let pb = dir.path().join("b.wasm");
    let r = run(fetcher_get()
        .arg("--gateway")
        .arg(gw.url())
        .arg(format!("{}={}", a.cidv0, pa.display()))
        .arg(format!("{}={}", b.cidv1, pb.display())));
    r.expect_success();
    assert_file_sha256(&pa, &a.sha256, &r);
    assert_file_sha256(&pb, &b.sha256, &r);
    assert_only_files(dir.path(), &["a.bin", "b.wasm"], &r);
}

#[test]
fn ipfs_gateway_env_comma_list() {
    let v = vector("chunk-plus-1");
    let missing = TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound));
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = run(fetcher_get()
        .env(
            "IPFS_GATEWAY",
            format!("{},{}", missing.url(), good.url_ipfs()),
        )
        .arg(&v.cidv0)
        .arg("-o")
        .arg(&out));
    expect_fetched(&r, &out, &v.sha256, &[&missing, &good]);
    assert_eq!(missing.requests().len(), 1, "{}", missing.log());
    assert_eq!(good.requests().len(), 1, "{}", good.log());
}

fn mirror_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    dir
}

#[test]
fn mirror_dir_addressable_by_v0_and_v1() {
    let wasm = vector("hello-wasm");
    let big = vector("mib-plus-7");
    let chunky = vector("chunk-plus-1");
    let mirror = mirror_with(&[
        ("module.wasm", &wasm.content()),
        ("big.bin", &big.content()),
        ("nested-name.dat", &chunky.content()),
    ]);
    for (cid, sha) in [
        (&wasm.cidv0, &wasm.sha256),
        (&wasm.cidv1, &wasm.sha256),
        (&big.cidv0, &big.sha256),
        (&big.cidv1, &big.sha256),
        (&chunky.cidv1, &chunky.sha256),
    ] {
        let (_dir, out) = target();
        let r = run(fetcher_get()
            .arg("--mirror")
            .arg(mirror.path())
            .arg(cid)
            .arg("-o")
            .arg(&out));
        expect_fetched(&r, &out, sha, &[]);
    }
}

#[test]
fn file_url_gateway_is_a_mirror() {
    let v = vector("chunk-plus-1");
    let mirror = mirror_with(&[("input.bin", &v.content())]);
    let url = format!("file://{}", mirror.path().display());
    let (_dir, out) = target();
    let r = get(std::slice::from_ref(&url), &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[]);
    // and through IPFS_GATEWAY
    let (_dir, out) = target();
    let r = run(fetcher_get()
        .env("IPFS_GATEWAY", &url)
        .arg(&v.cidv1)
        .arg("-o")
        .arg(&out));
    expect_fetched(&r, &out, &v.sha256, &[]);
}

#[test]
fn mirror_file_named_by_its_cid() {
    let v = vector("hello-world");
    let w = vector("chunk-exact");
    let mirror = mirror_with(&[(&v.cidv0, &v.content()), (&w.cidv1, &w.content())]);
    for (cid, sha) in [(&v.cidv0, &v.sha256), (&w.cidv1, &w.sha256)] {
        let (_dir, out) = target();
        let r = run(fetcher_get()
            .arg("--mirror")
            .arg(mirror.path())
            .arg(cid)
            .arg("-o")
            .arg(&out));
        expect_fetched(&r, &out, sha, &[]);
    }
}

#[test]
fn get_tries_every_pair_and_names_each_that_failed() {
    let here = vector("chunk-exact");
    let absent = vector("hello-world");
    let mirror = mirror_with(&[("here.bin", &here.content())]);
    let dir = tempfile::tempdir().unwrap();
    let (missing_out, good_out) = (dir.path().join("missing.bin"), dir.path().join("good.bin"));
    let r = run(fetcher_get()
        .arg("--mirror")
        .arg(mirror.path())
        .arg(format!("{}={}", absent.cidv0, missing_out.display()))
        .arg(format!("{}={}", here.cidv1, good_out.display())));
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(
        r.stderr.contains("1 of 2 fetches failed") && r.stderr.contains(&absent.cidv0),
        "{}",
        r.describe()
    );
    assert_file_sha256(&good_out, &here.sha256, &r);
    assert!(!missing_out.exists(), "nothing at a failed target");
}

fn init_container(gateway: &str, wasm_cid: &str, input_cid: Option<&str>, dir: &Path) -> Run {
    let mut cmd = fetcher();
    cmd.env("IPFS_GATEWAY", gateway)
        .env("WASM_CID", wasm_cid)
        .env("FETCH_DIR", dir);
    if let Some(input) = input_cid {
        cmd.env("INPUT_CID", input);
    }
    run(&mut cmd)
}

const INPUT_JSON: &[u8] = b"{\"n\": 30, \"label\": \"fib\"}\n";

#[test]
fn init_container_fetches_module_and_input() {
    let wasm = vector("hello-wasm");
    let input = Dag::single_block(INPUT_JSON, false);
    let gw = TestGateway::serving(vec![Dag::v1(&wasm.name), input.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let r = init_container(&gw.url(), &wasm.cidv1, Some(&input.root), dir.path());
    r.expect_success().expect_quiet_stdout();
    assert_file_sha256(&dir.path().join("module.wasm"), &wasm.sha256, &r);
    assert_eq!(
        std::fs::read(dir.path().join("input.json")).unwrap(),
        INPUT_JSON
    );
    assert_only_files(dir.path(), &["input.json", "module.wasm"], &r);
}

#[test]
fn init_container_without_input_cid() {
    let wasm = vector("chunk-plus-1");
    let gw = TestGateway::serving(vec![Dag::v0(&wasm.name)]);
    let dir = tempfile::tempdir().unwrap();
    let r = init_container(&gw.url_ipfs(), &wasm.cidv0, None, dir.path());
    r.expect_success();
    assert_file_sha256(&dir.path().join("module.wasm"), &wasm.sha256, &r);
    assert_only_files(dir.path(), &["module.wasm"], &r);
}

#[test]
fn init_container_comma_list_with_file_mirror() {
    let wasm = vector("hello-wasm");
    let mirror = mirror_with(&[("m.wasm", &wasm.content()), ("in.json", INPUT_JSON)]);
    let input_cid = Dag::single_block(INPUT_JSON, true).root;
    let missing = TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound));
    let dir = tempfile::tempdir().unwrap();
    let gateways = format!("{},file://{}", missing.url(), mirror.path().display());
    let r = init_container(&gateways, &wasm.cidv0, Some(&input_cid), dir.path());
    r.expect_success();
    assert_file_sha256(&dir.path().join("module.wasm"), &wasm.sha256, &r);
    assert_eq!(
        std::fs::read(dir.path().join("input.json")).unwrap(),
        INPUT_JSON
    );
    assert_only_files(dir.path(), &["input.json", "module.wasm"], &r);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[test]
fn corrupt_block_in_car_fails() {
    let dag = Dag::v0("chunk-plus-1");
    let root = dag.root.clone();
    let leaf_block = dag.corrupt_target().unwrap();
    let leaf = leaf_block.cid_string();
    let mut corrupted = leaf_block.clone();
    corrupt_block(&mut corrupted);
    let corrupted = corrupted.data;
    let gw = TestGateway::start(
        vec![dag],
        GatewayConfig::default().fault(Fault::CorruptBlock),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &root, &out);
    expect_failed(&r, &out, &[&gw]);
    // Names the CID, the gateway, and what was expected vs what came (as digests or CIDs).
    let expected_hex = hex(&sha256(&leaf_block.data));
    let got_hex = hex(&sha256(&corrupted));
    let got_cid = cid_v0_of(&corrupted).to_string();
    r.expect_stderr_mentions_any(&[&root, &leaf], "the CID")
        .expect_stderr_mentions(&gw.host(), "the gateway")
        .expect_stderr_mentions_any(&[&expected_hex, &leaf], "the expected digest")
        .expect_stderr_mentions_any(&[&got_hex, &got_cid], "the digest that came");
}

#[test]
fn corrupt_block_on_first_gateway_second_serves() {
    let v = vector("chunk-plus-1");
    let bad = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(Fault::CorruptBlock),
    );
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[bad.url(), good.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&bad, &good]);
    assert_eq!(
        bad.requests_for(&v.cidv0).len(),
        1,
        "the gateway that served wrong bytes is not asked again\n    {}",
        bad.log()
    );
    assert_eq!(bad.requests().len(), 1, "{}", bad.log());
}

#[test]
fn corrupt_raw_block_on_first_gateway_second_serves() {
    let v = vector("chunk-plus-1");
    let dag = Dag::v0(&v.name);
    let leaf = dag.corrupt_target().unwrap().cid_string();
    let bad = TestGateway::start(
        vec![dag],
        GatewayConfig::default()
            .offer(Offer::RawOnly)
            .fault(Fault::CorruptBlock),
    );
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[bad.url(), good.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&bad, &good]);
    assert_eq!(bad.requests_for(&leaf).len(), 1, "{}", bad.log());
    let raw_root = bad
        .requests_for(&v.cidv0)
        .iter()
        .filter(|r| r.kind == Kind::Raw)
        .count();
    assert!(raw_root <= 1, "{}", bad.log());
}

#[test]
fn wrong_plain_bytes_fail_naming_the_cid() {
    let v = vector("chunk-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default()
            .offer(Offer::PlainOnly)
            .fault(Fault::WrongPlainBytes),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_failed(&r, &out, &[&gw]);
    r.expect_stderr_mentions(&v.cidv0, "the CID")
        .expect_stderr_mentions(&gw.host(), "the gateway");
    let plain = gw
        .requests()
        .iter()
        .filter(|r| r.kind == Kind::Plain)
        .count();
    assert_eq!(
        plain,
        1,
        "wrong bytes are not asked for again\n    {}",
        gw.log()
    );
}

fn check_car_fault_fails(fault: Fault, name: &str, v1: bool) {
    let v = vector(name);
    let (dag, cid) = if v1 {
        (Dag::v1(name), &v.cidv1)
    } else {
        (Dag::v0(name), &v.cidv0)
    };
    let gw = TestGateway::start(vec![dag], GatewayConfig::default().fault(fault.clone()));
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], cid, &out);
    assert_eq!(
        r.code,
        Some(1),
        "{fault:?}: expected exit 1\n{}\n    {}",
        r.describe(),
        gw.log()
    );
    assert_nothing_left(&out, &r);
    r.expect_stderr_mentions(cid, "the CID");
}

#[test]
fn truncated_car_fails() {
    check_car_fault_fails(Fault::TruncatedCar, "chunk-plus-1", false);
}

#[test]
fn truncated_car_eof_delimited_fails() {
    check_car_fault_fails(Fault::TruncatedCarEof, "chunk-plus-1", true);
}

#[test]
fn car_with_extra_block_fails() {
    check_car_fault_fails(Fault::ExtraBlock, "chunk-plus-1", false);
}

#[test]
fn car_with_missing_block_fails() {
    check_car_fault_fails(Fault::MissingBlock(1), "mib-plus-7", false);
    check_car_fault_fails(Fault::MissingBlock(2), "chunk-plus-1", true);
}

#[test]
fn server_error_twice_then_success() {
    let v = vector("chunk-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(Fault::FailFirst {
            status: 500,
            count: 2,
        }),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
    let statuses: Vec<u16> = gw.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200], "two retries\n    {}", gw.log());
}

#[test]
fn too_many_requests_then_success() {
    let v = vector("hello-wasm");
    let gw = TestGateway::start(
        vec![Dag::v1(&v.name)],
        GatewayConfig::default().fault(Fault::FailFirst {
            status: 429,
            count: 1,
        }),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv1, &out);
    expect_fetched(&r, &out, &v.sha256, &[&gw]);
    let statuses: Vec<u16> = gw.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200], "one retry\n    {}", gw.log());
}

#[test]
fn server_errors_exhaust_retries_then_next_gateway() {
    let v = vector("chunk-plus-1");
    let failing = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(Fault::FailFirst {
            status: 503,
            count: 1000,
        }),
    );
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[failing.url(), good.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&failing, &good]);
    assert_eq!(
        failing.requests().len(),
        3,
        "1 attempt + --retries 2\n    {}",
        failing.log()
    );
}

#[test]
fn server_errors_everywhere_fail() {
    let v = vector("hello-wasm");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(Fault::FailFirst {
            status: 500,
            count: 1000,
        }),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], &v.cidv0, &out);
    expect_failed(&r, &out, &[&gw]);
    r.expect_stderr_mentions(&v.cidv0, "the CID");
}

const HANG_FLAGS: [&str; 6] = [
    "--idle-timeout",
    "1",
    "--total-timeout",
    "5",
    "--connect-timeout",
    "2",
];

fn check_hang_fails(fault: Fault) {
    let v = vector("chunk-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(fault),
    );
    let (_dir, out) = target();
    let r = get(&[gw.url()], &HANG_FLAGS, &v.cidv0, &out);
    assert!(
        r.elapsed < Duration::from_secs(30),
        "must give up, not hang ({:?})\n{}",
        r.elapsed,
        r.describe()
    );
    expect_failed(&r, &out, &[&gw]);
    r.expect_stderr_mentions(&v.cidv0, "the CID");
}

#[test]
fn hung_gateway_fails_within_timeouts() {
    check_hang_fails(Fault::HangBeforeResponse);
}

#[test]
fn stalled_body_fails_within_timeouts() {
    check_hang_fails(Fault::HangMidBody);
}

fn check_hang_then_good(fault: Fault) {
    let v = vector("chunk-plus-1");
    let hung = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(fault),
    );
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(
        &[hung.url(), good.url()],
        &["--idle-timeout", "1", "--total-timeout", "10"],
        &v.cidv0,
        &out,
    );
    assert!(r.elapsed < Duration::from_secs(30), "{}", r.describe());
    expect_fetched(&r, &out, &v.sha256, &[&hung, &good]);
}

#[test]
fn hung_first_gateway_good_second() {
    check_hang_then_good(Fault::HangBeforeResponse);
}

#[test]
fn stalled_first_gateway_good_second() {
    check_hang_then_good(Fault::HangMidBody);
}

#[test]
fn not_found_on_first_gateway_second_serves() {
    let v = vector("chunk-plus-1");
    let missing = TestGateway::start(
        vec![Dag::v0(&v.name)],
        GatewayConfig::default().fault(Fault::NotFound),
    );
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[missing.url(), good.url()], &[], &v.cidv0, &out);
    expect_fetched(&r, &out, &v.sha256, &[&missing, &good]);
    assert_eq!(
        missing.requests().len(),
        1,
        "404 is not retried\n    {}",
        missing.log()
    );
}

#[test]
fn not_found_everywhere_fails_naming_the_cid() {
    let v = vector("chunk-plus-1");
    let a = TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound));
    let b = TestGateway::serving(vec![]);
    let (_dir, out) = target();
    let r = get(&[a.url(), b.url()], &[], &v.cidv1, &out);
    expect_failed(&r, &out, &[&a, &b]);
    r.expect_stderr_mentions(&v.cidv1, "the CID");
    assert_eq!(a.requests().len(), 1, "{}", a.log());
    assert_eq!(b.requests().len(), 1, "{}", b.log());
}

const CAP_NAMES: [&str; 4] = ["100KiB", "102400", "100 KiB", "100.0 KiB"];

#[test]
fn size_cap_fails_naming_the_cap() {
    let v = vector("mib-plus-7");
    let gw = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = get(&[gw.url()], &["--max-size", "100KiB"], &v.cidv0, &out);
    expect_failed(&r, &out, &[&gw]);
    r.expect_stderr_mentions_any(&CAP_NAMES, "the size cap");
}

#[test]
fn size_cap_applies_to_plain_and_raw_too() {
    let v = vector("mib-plus-7");
    for offer in [Offer::RawOnly, Offer::PlainOnly] {
        let gw = TestGateway::start(
            vec![Dag::v0(&v.name)],
            GatewayConfig::default().offer(offer),
        );
        let (_dir, out) = target();
        let r = get(&[gw.url()], &["--max-size", "100KiB"], &v.cidv0, &out);
        expect_failed(&r, &out, &[&gw]);
        r.expect_stderr_mentions_any(&CAP_NAMES, "the size cap");
    }
}

#[test]
fn mirror_file_not_matching_its_cid_name_fails() {
    let named = vector("hello-world");
    let actual = vector("hello-wasm");
    let mirror = mirror_with(&[(&named.cidv0, &actual.content())]);
    let (_dir, out) = target();
    let r = run(fetcher_get()
        .arg("--mirror")
        .arg(mirror.path())
        .arg(&named.cidv0)
        .arg("-o")
        .arg(&out));
    expect_failed(&r, &out, &[]);
    r.expect_stderr_mentions(&named.cidv0, "the CID");
}

#[test]
fn unparsable_cid_is_a_usage_error() {
    let gw = TestGateway::serving(vec![]);
    for bad in ["not-a-cid", "QmThisIsNotBase58!!", "bafy", ""] {
        let (_dir, out) = target();
        let r = get(&[gw.url()], &[], bad, &out);
        r.expect_code(2);
        assert!(!out.exists(), "{}", r.describe());
    }
    assert!(gw.requests().is_empty(), "{}", gw.log());
}

fn check_unsupported(cid: &str, names: &[&str], what: &str) {
    let gw = TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound));
    let (_dir, out) = target();
    let r = get(&[gw.url()], &[], cid, &out);
    assert!(
        matches!(r.code, Some(1 | 2)),
        "{cid} must be rejected\n{}",
        r.describe()
    );
    assert_nothing_left(&out, &r);
    r.expect_stderr_mentions_any(names, what);
}

#[test]
fn unsupported_codec_is_rejected_naming_it() {
    let cid = cid_with(CODEC_DAG_CBOR, MH_SHA2_256, &sha256(b"\xa0")).to_string();
    assert!(cid.starts_with("bafyrei"), "{cid}");
    check_unsupported(&cid, &["dag-cbor", "0x71"], "the codec");
}

#[test]
fn unsupported_hash_is_rejected_naming_it() {
    let digest = Sha512::digest(b"hello world\n");
    let cid = cid_with(CODEC_RAW, MH_SHA2_512, &digest).to_string();
    check_unsupported(&cid, &["sha2-512", "sha512", "sha-512", "0x13"], "the hash");
}

#[test]
fn init_container_fails_when_module_is_corrupt() {
    let wasm = vector("chunk-plus-1");
    let gw = TestGateway::start(
        vec![Dag::v0(&wasm.name)],
        GatewayConfig::default().fault(Fault::CorruptBlock),
    );
    let dir = tempfile::tempdir().unwrap();
    let r = init_container(&gw.url(), &wasm.cidv0, None, dir.path());
    r.expect_code(1);
    assert!(dir_entries(dir.path()).is_empty(), "{}", r.describe());
}

#[test]
fn init_container_fails_when_input_is_missing() {
    let wasm = vector("hello-wasm");
    let gw = TestGateway::serving(vec![Dag::v0(&wasm.name)]);
    let dir = tempfile::tempdir().unwrap();
    let input_cid = vector("eleven").cidv1.clone();
    let r = init_container(&gw.url(), &wasm.cidv0, Some(&input_cid), dir.path());
    r.expect_code(1);
    r.expect_stderr_mentions(&input_cid, "the missing CID");
    assert!(!dir.path().join("input.json").exists(), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------
// One bad gateway does not block the others (size and time)
// ---------------------------------------------------------------------------------------------

/// The three response modes a bad gateway can answer in.
const MODES: [Offer; 3] = [Offer::Car, Offer::RawOnly, Offer::PlainOnly];

/// What a gateway in a generated line-up does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Good,
    /// An endless body in this mode.
    Endless(Offer),
    /// A plain body declaring a Content-Length of 1 GiB.
    LiesAboutSize,
    /// One byte every 100 ms (a CAR).
    Drip,
    /// Half the CAR, then nothing (the idle timeout, 30 s, never trips first).
    StallMidBody,
    /// The request read, never answered.
    StallBeforeResponse,
}

fn start_role(role: Role, dags: Vec<Dag>) -> TestGateway {
    let cfg = GatewayConfig::default();
    let cfg = match role {
        Role::Good => cfg,
        Role::Endless(offer) => cfg.offer(offer).fault(Fault::EndlessBody),
        Role::LiesAboutSize => cfg
            .offer(Offer::PlainOnly)
            .fault(Fault::DeclaredLength(1 << 30)),
        Role::Drip => cfg.fault(Fault::Drip(Duration::from_millis(100))),
        Role::StallMidBody => cfg.fault(Fault::HangMidBody),
        Role::StallBeforeResponse => cfg.fault(Fault::HangBeforeResponse),
    };
    TestGateway::start(dags, cfg)
}

/// Every distinct order of `roles`.
fn orders(roles: &[Role]) -> Vec<Vec<Role>> {
    if roles.len() <= 1 {
        return vec![roles.to_vec()];
    }
    let mut out: Vec<Vec<Role>> = Vec::new();
    for (i, first) in roles.iter().enumerate() {
        let mut rest = roles.to_vec();
        rest.remove(i);
        for mut tail in orders(&rest) {
            tail.insert(0, *first);
            if !out.contains(&tail) {
                out.push(tail);
            }
        }
    }
    out
}

/// Fetches `v` (CIDv0) through gateways playing `roles`, in order; checks the file came and
/// the good gateway was asked. Line-ups run in parallel, each against its own gateways.
fn check_lineups(name: &str, lineups: &[Vec<Role>], flags: &[&str]) {
    let v = vector(name);
    std::thread::scope(|scope| {
        for roles in lineups {
            scope.spawn(move || {
                let gws: Vec<TestGateway> = roles
                    .iter()
                    .map(|r| start_role(*r, vec![Dag::v0(&v.name)]))
                    .collect();
                let urls: Vec<String> = gws.iter().map(TestGateway::url).collect();
                let (_dir, out) = target();
                let r = get(&urls, flags, &v.cidv0, &out);
                let all: Vec<&TestGateway> = gws.iter().collect();
                assert!(
                    r.elapsed < Duration::from_secs(90),
                    "{roles:?}: must not hang\n{}",
                    r.describe()
                );
                assert_eq!(r.code, Some(0), "{roles:?}\n{}", r.describe());
                expect_fetched(&r, &out, &v.sha256, &all);
                let good = roles.iter().position(|r| *r == Role::Good).unwrap();
                assert!(
                    !gws[good].requests().is_empty(),
                    "{roles:?}: the good gateway was asked"
                );
            });
        }
    });
}

/// Regression: a body over --max-size was `TooLarge`, fatal for the CID, so the good
/// gateway after it was never asked.
#[test]
fn endless_body_gives_way_to_the_next_gateway_in_every_mode() {
    let mut lineups = Vec::new();
    for mode in MODES {
        let bad = Role::Endless(mode);
        lineups.extend(orders(&[bad, Role::Good]));
        lineups.push(vec![bad, bad, Role::Good]);
    }
    lineups.extend(orders(&[
        Role::LiesAboutSize,
        Role::Endless(Offer::PlainOnly),
        Role::Good,
    ]));
    check_lineups("chunk-plus-1", &lineups, &["--max-size", "1MiB"]);
}

/// Every gateway over the cap: the error names each gateway, what it sent and the cap.
#[test]
fn all_gateways_over_the_cap_are_each_named_with_the_cap() {
    // A single raw block (CIDv1): plain and raw bodies count against the cap as they come.
    let v = vector("hello-wasm");
    for (mode, what) in [
        (Offer::PlainOnly, "the plain body"),
        (Offer::RawOnly, "a raw block"),
    ] {
        let gws = [
            start_role(Role::Endless(mode), vec![Dag::v1(&v.name)]),
            start_role(Role::Endless(mode), vec![Dag::v1(&v.name)]),
        ];
        let (_dir, out) = target();
        let urls = [gws[0].url(), gws[1].url()];
        let r = get(&urls, &["--max-size", "64KiB"], &v.cidv1, &out);
        expect_failed(&r, &out, &[&gws[0], &gws[1]]);
        let err = error_lines(&r);
        for gw in &gws {
            let entry = format!(
                "{}: too large: {what}: more than the size cap of 65536 bytes (--max-size)",
                gw.url()
            );
            assert!(
                err.contains(&entry),
                "{mode:?}: {entry:?}\n{}",
                r.describe()
            );
            assert_eq!(
                gw.requests().iter().filter(|q| q.status == 200).count(),
                1,
                "{mode:?}: over the cap is not retried\n    {}",
                gw.log()
            );
        }
    }
    // A lying Content-Length is caught before the body is read.
    let gws = [
        start_role(Role::LiesAboutSize, vec![Dag::v1(&v.name)]),
        start_role(Role::LiesAboutSize, vec![Dag::v1(&v.name)]),
    ];
    let (_dir, out) = target();
    let r = get(
        &[gws[0].url(), gws[1].url()],
        &["--max-size", "64KiB"],
        &v.cidv1,
        &out,
    );
    expect_failed(&r, &out, &[&gws[0], &gws[1]]);
    for gw in &gws {
        let entry = format!("{}: too large: the plain body (Content-Length 1073741824): more than the size cap of 65536 bytes", gw.url());
        assert!(
            error_lines(&r).contains(&entry),
            "{entry:?}\n{}",
            r.describe()
        );
    }
    // An endless CAR fails verification within one frame (a frame is at most 2 MiB), long
    // before it could pass the cap: that is bad data, and each gateway is named for it.
    let gws = [
        start_role(Role::Endless(Offer::Car), vec![Dag::v1(&v.name)]),
        start_role(Role::Endless(Offer::Car), vec![Dag::v1(&v.name)]),
    ];
    let (_dir, out) = target();
    let r = get(
        &[gws[0].url(), gws[1].url()],
        &["--max-size", "64KiB"],
        &v.cidv1,
        &out,
    );
    expect_failed(&r, &out, &[&gws[0], &gws[1]]);
    for gw in &gws {
        let entry = format!("{}: bad data: ", gw.url());
        assert!(
            error_lines(&r).contains(&entry),
            "{entry:?}\n{}",
            r.describe()
        );
    }
}

/// A verified root declaring more than the cap ends the CID at once: every gateway would
/// send the same DAG, so the second is not asked.
#[test]
fn a_verified_root_over_the_cap_is_not_asked_of_the_next_gateway() {
    let v = vector("mib-plus-7");
    for mode in [Offer::Car, Offer::RawOnly] {
        let first =
            TestGateway::start(vec![Dag::v0(&v.name)], GatewayConfig::default().offer(mode));
        let second = TestGateway::serving(vec![Dag::v0(&v.name)]);
        let (_dir, out) = target();
        let r = get(
            &[first.url(), second.url()],
            &["--max-size", "100KiB"],
            &v.cidv0,
            &out,
        );
        expect_failed(&r, &out, &[&first, &second]);
        let err = error_lines(&r);
        assert!(
            err.contains(&format!("the file is at least {} bytes", v.size))
                && err.contains("102400"),
            "{mode:?}: names the declared size and the cap\n{}",
            r.describe()
        );
        assert!(
            second.requests().is_empty(),
            "{mode:?}\n    {}",
            second.log()
        );
    }
}

/// Regression: a dripping or stalled gateway used up --total-timeout (a drip never trips the
/// idle timeout), and the good gateway after it was never asked. Every order of one or two
/// slow gateways and a good one.
#[test]
fn slow_gateways_leave_the_others_their_share_in_every_order() {
    let mut lineups = Vec::new();
    for slow in [Role::Drip, Role::StallMidBody, Role::StallBeforeResponse] {
        lineups.extend(orders(&[slow, Role::Good]));
    }
    lineups.extend(orders(&[Role::Drip, Role::StallMidBody, Role::Good]));
    lineups.push(vec![
        Role::StallBeforeResponse,
        Role::Drip,
        Role::Endless(Offer::PlainOnly),
        Role::Good,
    ]);
    check_lineups(
        "chunk-plus-1",
        &lineups,
        &["--total-timeout", "4", "--max-size", "1MiB"],
    );
}

/// Every gateway too slow: the error names each one as too slow, within the total timeout.
#[test]
fn all_gateways_too_slow_are_each_named() {
    let v = vector("chunk-plus-1");
    let gws = [
        start_role(Role::Drip, vec![Dag::v0(&v.name)]),
        start_role(Role::StallMidBody, vec![Dag::v0(&v.name)]),
    ];
    let (_dir, out) = target();
    let r = get(
        &[gws[0].url(), gws[1].url()],
        &["--total-timeout", "3"],
        &v.cidv0,
        &out,
    );
    assert!(r.elapsed < Duration::from_secs(60), "{}", r.describe());
    expect_failed(&r, &out, &[&gws[0], &gws[1]]);
    let err = error_lines(&r);
    for gw in &gws {
        let entry = format!("{}: too slow: ", gw.url());
        assert!(err.contains(&entry), "{entry:?}\n{}", r.describe());
        assert_eq!(err.matches(&gw.url()).count(), 1, "{}", r.describe());
    }
}

/// A slow but honest gateway cut off at its first share gets a second turn with the time
/// the quick failures after it left: it alone can still deliver within the total timeout.
#[test]
fn a_slow_honest_gateway_gets_a_second_turn() {
    // 30 bytes, a plain body only, one byte every 100 ms: about 3 s. With 4 gateways and
    // 8 s, its first share is 2 s (cut off); the three 404s take next to nothing; the
    // second turn has about 6 s.
    let content = b"a slow but honest gateway....\n".to_vec();
    let dag = Dag::single_block(&content, true);
    let slow = TestGateway::start(
        vec![dag.clone()],
        GatewayConfig::default()
            .offer(Offer::PlainOnly)
            .fault(Fault::Drip(Duration::from_millis(100))),
    );
    let missing: Vec<TestGateway> = (0..3)
        .map(|_| TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound)))
        .collect();
    let mut urls = vec![slow.url()];
    urls.extend(missing.iter().map(TestGateway::url));
    let (_dir, out) = target();
    let r = get(&urls, &["--total-timeout", "8"], &dag.root, &out);
    let mut all = vec![&slow];
    all.extend(missing.iter());
    expect_fetched(&r, &out, &sha256_hex(&content), &all);
    let plain = slow
        .requests()
        .iter()
        .filter(|q| q.kind == Kind::Plain)
        .count();
    assert_eq!(
        plain,
        2,
        "cut off once, then a second turn\n    {}",
        slow.log()
    );
}

#[test]
fn a_mirror_file_over_the_cap_gives_way_to_a_gateway() {
    let v = vector("chunk-plus-1");
    // A file named by the CID but larger than the cap (and not the content).
    let mirror = mirror_with(&[(&v.cidv0, &vec![1u8; 2 << 20])]);
    let good = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let (_dir, out) = target();
    let r = run(fetcher_get()
        .args(["--max-size", "1MiB", "--mirror"])
        .arg(mirror.path())
        .arg("--gateway")
        .arg(good.url())
        .arg(&v.cidv0)
        .arg("-o")
        .arg(&out));
    expect_fetched(&r, &out, &v.sha256, &[&good]);
}

// ---------------------------------------------------------------------------------------------
// What the binary prints when it fails
// ---------------------------------------------------------------------------------------------

/// The lines the binary logged at ERROR level: its error, as a person reads it.
fn error_lines(r: &Run) -> String {
    r.stderr
        .lines()
        .filter(|l| l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One ERROR line naming `cid` and `path` exactly once each, and no part of the message
/// twice (the regression: anyhow's `{:#}` appended a source the message already held).
#[track_caller]
fn expect_one_error_naming(r: &Run, cid: &str, path: &Path) -> String {
    let err = error_lines(r);
    let path = path.display().to_string();
    assert_eq!(err.lines().count(), 1, "one error line\n{}", r.describe());
    assert_eq!(
        err.matches(cid).count(),
        1,
        "the CID once\n{}",
        r.describe()
    );
    assert_eq!(
        err.matches(&path).count(),
        1,
        "the path once\n{}",
        r.describe()
    );
    let message = err.split_once(" ERROR ").map_or(err.as_str(), |(_, m)| m);
    let parts: Vec<&str> = message.split(": ").filter(|p| p.len() > 3).collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(part),
            "{part:?} is said twice\n{}",
            r.describe()
        );
    }
    err
}

#[test]
fn get_errors_say_what_with_which_cid_and_path_once() {
    let v = vector("hello-wasm");
    let gw = TestGateway::serving(vec![Dag::v0(&v.name)]);
    let dir = tempfile::tempdir().unwrap();

    // An output path under a regular file, and an output path that is a directory.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let under_a_file = dir.path().join("file").join("out.wasm");
    let a_directory = dir.path().join("a-directory");
    std::fs::create_dir(&a_directory).unwrap();
    for (out, why) in [
        (&under_a_file, "not a directory"),
        (&a_directory, "Is a directory"),
    ] {
        let r = get(&[gw.url()], &[], &v.cidv0, out);
        r.expect_code(1);
        let err = expect_one_error_naming(&r, &v.cidv0, out);
        assert!(
            err.contains(&format!("fetching {} to {}", v.cidv0, out.display())),
            "{}",
            r.describe()
        );
        assert!(err.contains(why), "says why: {why:?}\n{}", r.describe());
    }
    assert!(
        gw.requests().is_empty(),
        "nothing asked for an unwritable path\n    {}",
        gw.log()
    );

    // A CID no gateway has: each gateway named once, with why.
    let absent = vector("eleven");
    let a = TestGateway::start(vec![], GatewayConfig::default().fault(Fault::NotFound));
    let b = TestGateway::serving(vec![]);
    let (_d, out) = target();
    let r = get(&[a.url(), b.url()], &[], &absent.cidv1, &out);
    expect_failed(&r, &out, &[&a, &b]);
    let err = expect_one_error_naming(&r, &absent.cidv1, &out);
    for g in [&a, &b] {
        let entry = format!("{}: not found (HTTP 404", g.url());
        assert!(err.contains(&entry), "{entry:?}\n{}", r.describe());
    }

    // A bad CID: bad usage, the input named once, as given.
    let (_d, out) = target();
    let r = get(&[gw.url()], &[], "not-a-cid", &out);
    r.expect_code(2);
    let err = expect_one_error_naming(&r, "not-a-cid", &out);
    assert!(err.contains("not a CID"), "{}", r.describe());
}
