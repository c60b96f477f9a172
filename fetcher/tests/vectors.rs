//! `fetcher cid` and `fetcher verify-car` against the IPFS test vectors, plus self-tests of the
//! vector generators and the test CAR reader/writer in `support`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use support::*;

// ---------------------------------------------------------------------------------------------
// Self-tests of the support code (no binary needed)
// ---------------------------------------------------------------------------------------------

#[test]
fn support_vectors_regenerate_to_their_sha256() {
    assert!(vectors().len() >= 12, "vectors.json has every vector");
    for v in vectors() {
        let data = v.generate();
        assert_eq!(data.len() as u64, v.size, "{}", v.name);
        assert_eq!(sha256_hex(&data), v.sha256, "{}: sha256", v.name);
        assert!(v.kubo_agrees && v.kubo_cidv0 == v.cidv0, "{}", v.name);
    }
    // The README's worked example.
    assert_eq!(
        &vector("eleven").content()[..],
        &[0x17, 0x25, 0x50, 0xf6, 0xae, 0x9d, 0x88, 0xdd, 0x9d, 0x20, 0x2d]
    );
}

fn check_committed_car(v: &Vector, file: &str, root: &str, blocks: usize) {
    let path = data_dir().join(file);
    let bytes = std::fs::read(&path).unwrap();
    let car = Car::parse(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(car.root(), root, "{file}: header root");
    assert_eq!(car.header_roots().len(), 1, "{file}: one root");
    assert_eq!(car.blocks.len(), blocks, "{file}: block count (dups=n)");
    assert_eq!(
        car.blocks[0].cid_string(),
        root,
        "{file}: first block is the root"
    );
    for b in &car.blocks {
        assert!(
            b.digest_matches(),
            "{file}: block {} digest",
            b.cid_string()
        );
    }
    // Writing it back gives the same bytes.
    assert_eq!(car.to_bytes(), bytes, "{file}: round trip");
    // The header is what `car_header` builds.
    assert_eq!(car.header, car_header(&car.root_bytes()), "{file}: header");
    // The committed order is DFS pre-order without duplicates.
    let dfs = car.reordered(false);
    assert_eq!(dfs.blocks, car.blocks, "{file}: DFS order");
    // The file reassembled from the DAG is the vector's content.
    let file_bytes = car.store().file_bytes(&car.root_bytes()).unwrap();
    assert_eq!(
        sha256_hex(&file_bytes),
        v.sha256,
        "{file}: reassembled file"
    );
}

#[test]
fn support_car_reader_reads_every_committed_car() {
    let mut seen = 0;
    for v in vectors() {
        if let Some(car) = &v.car {
            check_committed_car(v, car, &v.cidv0, v.cidv0_blocks);
            assert_eq!(
                std::fs::metadata(data_dir().join(car)).unwrap().len(),
                v.car_bytes.unwrap()
            );
            seen += 1;
        }
        if let Some(car) = &v.car_v1 {
            check_committed_car(v, car, &v.cidv1, v.cidv1_blocks);
            assert_eq!(
                std::fs::metadata(data_dir().join(car)).unwrap().len(),
                v.car_v1_bytes.unwrap()
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 18, "every committed CAR was read");
}

#[test]
fn support_single_block_builder_matches_vectors() {
    for name in [
        "empty",
        "one-byte",
        "eleven",
        "hello-wasm",
        "hello-world",
        "chunk-exact",
    ] {
        let v = vector(name);
        let content = v.content();
        let d0 = Dag::single_block(&content, false);
        assert_eq!(d0.root, v.cidv0, "{name} v0");
        assert_eq!(
            d0.car.as_ref().unwrap().to_bytes(),
            std::fs::read(v.car_path().unwrap()).unwrap(),
            "{name}: CAR built from content equals the committed one"
        );
        let d1 = Dag::single_block(&content, true);
        assert_eq!(d1.root, v.cidv1, "{name} v1");
        assert_eq!(
            d1.car.as_ref().unwrap().to_bytes(),
            std::fs::read(v.car_v1_path().unwrap()).unwrap(),
            "{name}: v1 CAR"
        );
    }
}

#[test]
fn support_car_variants() {
    let car = Car::load("zeros-3chunks-plus-1.car");
    assert_eq!(car.blocks.len(), 3);
    let dups = car.reordered(true);
    // root, then four leaves of which the first three are the same block
    assert_eq!(dups.blocks.len(), 5);
    assert_eq!(dups.blocks[1], dups.blocks[2]);
    assert_eq!(dups.blocks[2], dups.blocks[3]);
    assert_ne!(dups.blocks[3], dups.blocks[4]);
    assert_eq!(Car::parse(&dups.to_bytes()).unwrap().blocks, dups.blocks);
    assert_eq!(dups.reordered(false).blocks, car.blocks);

    let corrupted = car.with_corrupted_block(2);
    assert!(!corrupted.blocks[2].digest_matches());
    assert_eq!(corrupted.to_bytes().len(), car.to_bytes().len());
    // Corruption only touches file bytes: every block of every committed CAR still parses to
    // the same links and the same amount of file data, so only the hash can tell.
    for v in vectors() {
        for file in [&v.car, &v.car_v1].into_iter().flatten() {
            let car = Car::load(file);
            for (i, b) in car.blocks.iter().enumerate() {
                let bad = &car.with_corrupted_block(i).blocks[i];
                assert!(!bad.digest_matches(), "{file} block {i}");
                assert_eq!(bad.links().unwrap(), b.links().unwrap(), "{file} block {i}");
                if b.codec() == CODEC_DAG_PB {
                    let good_data = dag_pb_unixfs_data(&b.data).unwrap();
                    let bad_data = dag_pb_unixfs_data(&bad.data).unwrap();
                    assert_eq!(bad_data.len(), good_data.len(), "{file} block {i}");
                    if !good_data.is_empty() {
                        assert_ne!(bad_data, good_data, "{file} block {i}");
                    }
                }
            }
        }
    }

    let truncated = car.truncated_bytes();
    assert!(truncated.len() < car.to_bytes().len());
    assert!(
        Car::parse(&truncated).is_err(),
        "truncated CAR must not parse"
    );

    let extra = car.with_extra_block(unrelated_block());
    assert_eq!(extra.blocks.len(), 4);
    assert!(extra.blocks[3].digest_matches());
    let missing = car.without_block(1);
    assert_eq!(missing.blocks.len(), 2);
    assert!(missing.store().file_bytes(&car.root_bytes()).is_err());
}

// ---------------------------------------------------------------------------------------------
// fetcher cid
// ---------------------------------------------------------------------------------------------

fn check_cid_for_every_vector(v1: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for v in vectors() {
        let path = write_vector(v, dir.path(), &format!("{}.bin", v.name));
        let expected = if v1 { &v.cidv1 } else { &v.cidv0 };
        let mut cmd = fetcher();
        cmd.arg("cid");
        if v1 {
            cmd.args(["--cid-version", "1"]);
        }
        let r = run(cmd.arg(&path));
        if r.code != Some(0) || r.stdout != format!("{expected}\n") {
            failures.push(format!(
                "{}: expected stdout {expected:?}\\n\n{}",
                v.name,
                r.describe()
            ));
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn cid_v0_reproduces_every_vector() {
    check_cid_for_every_vector(false);
}

#[test]
fn cid_v1_reproduces_every_vector() {
    check_cid_for_every_vector(true);
}

#[test]
fn cid_many_files_print_one_line_each_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "hello-world",
        "chunk-plus-1",
        "empty",
        "zeros-3chunks-plus-1",
        "eleven",
        "hello-world",
    ];
    let paths: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| write_vector(vector(n), dir.path(), &format!("{i}-{n}")))
        .collect();
    for v1 in [false, true] {
        let mut cmd = fetcher();
        cmd.arg("cid");
        if v1 {
            cmd.args(["--cid-version", "1"]);
        }
        let r = run(cmd.args(&paths));
        r.expect_success();
        let expected: String = names
            .iter()
            .map(|n| {
                let v = vector(n);
                format!("{}\n", if v1 { &v.cidv1 } else { &v.cidv0 })
            })
            .collect();
        assert_eq!(r.stdout, expected, "v1={v1}\n{}", r.describe());
    }
}

// ---------------------------------------------------------------------------------------------
// fetcher verify-car
// ---------------------------------------------------------------------------------------------

fn verify_car(car: &Path, cid: &str, out: Option<&Path>) -> Run {
    let mut cmd = fetcher();
    cmd.arg("verify-car").arg(car).arg(cid);
    if let Some(out) = out {
        cmd.arg("-o").arg(out);
    }
    let r = run(&mut cmd);
    r.expect_quiet_stdout();
    r
}

#[test]
fn verify_car_accepts_every_committed_car() {
    let mut checked = 0;
    for v in vectors() {
        for (car, cid) in [(v.car_path(), &v.cidv0), (v.car_v1_path(), &v.cidv1)] {
            let Some(car) = car else { continue };
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().join("out");
            let r = verify_car(&car, cid, Some(&out));
            r.expect_success();
            assert_file_sha256(&out, &v.sha256, &r);
            assert_only_files(dir.path(), &["out"], &r);
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn verify_car_without_output_only_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let v = vector("chunk-plus-1");
    let r = run(fetcher()
        .current_dir(dir.path())
        .arg("verify-car")
        .arg(v.car_path().unwrap())
        .arg(&v.cidv0));
    r.expect_success();
    assert!(dir_entries(dir.path()).is_empty(), "{}", r.describe());
}

#[test]
fn verify_car_rejects_another_vectors_cid() {
    let pairs = [
        ("hello-world", "hello-wasm", false),
        ("chunk-plus-1", "chunk-exact", false),
        ("chunk-exact", "chunk-plus-1", true),
        ("mib-plus-7", "zeros-3chunks-plus-1", false),
        ("empty", "one-byte", true),
    ];
    for (car_of, cid_of, v1) in pairs {
        let car_v = vector(car_of);
        let cid_v = vector(cid_of);
        let (car, cid) = if v1 {
            (car_v.car_v1_path().unwrap(), &cid_v.cidv1)
        } else {
            (car_v.car_path().unwrap(), &cid_v.cidv0)
        };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let r = verify_car(&car, cid, Some(&out));
        r.expect_code(1);
        assert_nothing_left(&out, &r);
    }
}

fn check_variant_rejected(car_bytes: &[u8], cid: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("variant.car");
    std::fs::write(&car, car_bytes).unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("file");
    let r = verify_car(&car, cid, Some(&out));
    assert_eq!(r.code, Some(1), "{what} must be rejected\n{}", r.describe());
    assert_nothing_left(&out, &r);
}

#[test]
fn verify_car_accepts_dups_y() {
    let v = vector("zeros-3chunks-plus-1");
    let dups = Car::load(v.car.as_deref().unwrap()).reordered(true);
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("dups-y.car");
    dups.write(&car);
    let out = dir.path().join("out");
    let r = verify_car(&car, &v.cidv0, Some(&out));
    r.expect_success();
    assert_file_sha256(&out, &v.sha256, &r);
}

#[test]
fn verify_car_rejects_corrupted_block() {
    let v = vector("chunk-plus-1");
    let car = Car::load(v.car.as_deref().unwrap());
    for i in 0..car.blocks.len() {
        check_variant_rejected(
            &car.with_corrupted_block(i).to_bytes(),
            &v.cidv0,
            &format!("block {i} corrupted"),
        );
    }
}

#[test]
fn verify_car_rejects_truncated_car() {
    let v = vector("chunk-plus-1");
    let car = Car::load(v.car_v1.as_deref().unwrap());
    check_variant_rejected(&car.truncated_bytes(), &v.cidv1, "CAR cut mid-frame");
    let bytes = car.to_bytes();
    check_variant_rejected(&bytes[..car.header.len()], &v.cidv1, "CAR with header only");
}

#[test]
fn verify_car_rejects_extra_block() {
    let v = vector("chunk-plus-1");
    let car = Car::load(v.car.as_deref().unwrap()).with_extra_block(unrelated_block());
    check_variant_rejected(&car.to_bytes(), &v.cidv0, "CAR with an extra block");
}

#[test]
fn verify_car_rejects_missing_block() {
    let v = vector("mib-plus-7");
    let car = Car::load(v.car.as_deref().unwrap());
    check_variant_rejected(
        &car.without_block(2).to_bytes(),
        &v.cidv0,
        "CAR without a middle leaf",
    );
    check_variant_rejected(
        &car.without_block(car.blocks.len() - 1).to_bytes(),
        &v.cidv0,
        "CAR without its last leaf",
    );
}

#[test]
fn verify_car_unparsable_cid_is_usage_error() {
    let v = vector("hello-world");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = verify_car(&v.car_path().unwrap(), "not-a-cid", Some(&out));
    r.expect_code(2);
    assert!(!out.exists());
}
