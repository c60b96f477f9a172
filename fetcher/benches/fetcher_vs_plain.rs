//! The cost of verification: a 50 MiB module fetched over loopback as a verified CAR, as a
//! plain body checked by recomputing its CID, and as an unverified plain download of the
//! same bytes; and `fetcher cid` against `sha256sum` on the same file. Prints a Markdown
//! table; asserts only that every path delivers the same bytes.
//!
//! ```text
//! cargo build --release -p fetcher
//! cargo bench -p fetcher --bench fetcher_vs_plain      # or: make bench-fetcher
//! ```
//! `FETCHER_BIN` overrides `<target dir>/release/fetcher`; `FETCHER_BENCH_MIB` the size (50).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fetcher::car;
use fetcher::importer::{Importer, Params};

const RUNS: usize = 3;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fetcher_vs_plain: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("fetcher_vs_plain: run with `cargo bench` (make bench-fetcher); skipped");
        return Ok(());
    }
    let root_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("FETCHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // This bench runs from `<target dir>/release/deps/`: the fetcher is two up.
            std::env::current_exe()
                .ok()
                .and_then(|exe| Some(exe.parent()?.parent()?.join("fetcher")))
                .unwrap_or_else(|| root_dir.join("target/release/fetcher"))
        });
    if !bin.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release -p fetcher` first",
            bin.display()
        ));
    }
    let mib: usize = std::env::var("FETCHER_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let content = xorshift(mib << 20, 0x9e37_79b9_7f4a_7c15);
    let file = tmp.path().join("module.wasm");
    std::fs::write(&file, &content).map_err(|e| e.to_string())?;
    let mut imp = Importer::keeping_blocks(Params::V0);
    imp.write(&content);
    let (root, blocks) = imp.finish_with_blocks();
    let car = car::encode(&root, &blocks);
    let content = Arc::new(content);
    let with_car = serve(content.clone(), Arc::new(car.clone()), true)?;
    let plain_only = serve(content.clone(), Arc::new(car), false)?;
    eprintln!("{mib} MiB, root {root}, {} blocks", blocks.len());

    let out = tmp.path().join("out.wasm");
    let fetch = |port: u16| {
        let t = time(|| {
            let status = Command::new(&bin)
                .args(["get", &root.to_string(), "-o"])
                .arg(&out)
                .args(["--gateway", &format!("http://127.0.0.1:{port}")])
                .env("RUST_LOG", "warn")
                .status()
                .map_err(|e| e.to_string())?;
            status
                .success()
                .then_some(())
                .ok_or("fetcher get failed".to_string())
        })?;
        same(&out, &content)?;
        Ok::<_, String>(t)
    };
    let car_time = fetch(with_car)?;
    let plain_verified = fetch(plain_only)?;
    let unverified = time(|| download(with_car, &root.to_string(), &out))?;
    same(&out, &content)?;
    let cid_time = time(|| {
        let o = Command::new(&bin)
            .arg("cid")
            .arg(&file)
            .output()
            .map_err(|e| e.to_string())?;
        (String::from_utf8_lossy(&o.stdout).trim() == root.to_string())
            .then_some(())
            .ok_or("fetcher cid printed another CID".to_string())
    })?;
    let sha_time = time(|| {
        Command::new("sha256sum")
            .arg(&file)
            .output()
            .map_err(|e| format!("sha256sum: {e}"))
            .map(drop)
    })?;

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mibs = |d: Duration| mib as f64 / d.as_secs_f64();
    println!("\nfetcher: {mib} MiB over loopback, min of {RUNS} runs\n");
    println!("| measurement | time (ms) | MiB/s | vs baseline |");
    println!("| --- | ---: | ---: | ---: |");
    let u = ms(unverified);
    println!(
        "| unverified plain download (baseline) | {u:.1} | {:.0} | 1.00x |",
        mibs(unverified)
    );
    for (name, d) in [
        ("`fetcher get`, verified CAR", car_time),
        ("`fetcher get`, plain body + CID recomputed", plain_verified),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {:.2}x |",
            ms(d),
            mibs(d),
            ms(d) / u
        );
    }
    let s = ms(sha_time);
    println!(
        "| `sha256sum` (baseline) | {s:.1} | {:.0} | 1.00x |",
        mibs(sha_time)
    );
    println!(
        "| `fetcher cid` | {:.1} | {:.0} | {:.2}x |",
        ms(cid_time),
        mibs(cid_time),
        ms(cid_time) / s
    );
    Ok(())
}

fn time(mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn same(path: &Path, want: &[u8]) -> Result<(), String> {
    let got = std::fs::read(path).map_err(|e| e.to_string())?;
    (got == want)
        .then_some(())
        .ok_or(format!("{} differs from the content", path.display()))
}

fn xorshift(size: usize, mut x: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

/// A gateway on 127.0.0.1 serving one file: `?format=car` as a CAR when `car` is on, else
/// 406 for CAR and raw so the fetcher falls back to the plain body.
fn serve(content: Arc<Vec<u8>>, car: Arc<Vec<u8>>, offer_car: bool) -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (content, car) = (content.clone(), car.clone());
            std::thread::spawn(move || respond(stream, &content, &car, offer_car));
        }
    });
    Ok(port)
}

fn respond(mut stream: TcpStream, content: &[u8], car: &[u8], offer_car: bool) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let (status, ctype, body): (&str, &str, &[u8]) =
        if request.contains("format=car") || request.contains("format=raw") {
            if offer_car && request.contains("format=car") {
                ("200 OK", "application/vnd.ipld.car;version=1", car)
            } else {
                ("406 Not Acceptable", "text/plain", b"")
            }
        } else {
            ("200 OK", "application/octet-stream", content)
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
}

/// The unverified baseline: a plain GET streamed to a file, as curl would.
fn download(port: u16, cid: &str, out: &Path) -> Result<(), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /ipfs/{cid} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reader = BufReader::with_capacity(256 * 1024, s);
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| e.to_string())?);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    }
    file.flush().map_err(|e| e.to_string())
}
