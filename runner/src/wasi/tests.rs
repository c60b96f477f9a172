//! End-to-end tests: small WAT modules call the shim through a real wasmi
//! linker, exactly as a guest would.

use super::errno::*;
use super::*;
use std::path::Path;
use wasmi::{Engine, Instance, Linker, Module, Store, Val};

struct Host {
    wasi: WasiCtx,
}

/// Signatures of the preview1 imports the generated test modules may use.
const SIGNATURES: &[(&str, &str, &str)] = &[
    ("args_get", "i32 i32", "i32"),
    ("args_sizes_get", "i32 i32", "i32"),
    ("environ_get", "i32 i32", "i32"),
    ("environ_sizes_get", "i32 i32", "i32"),
    ("clock_res_get", "i32 i32", "i32"),
    ("clock_time_get", "i32 i64 i32", "i32"),
    ("random_get", "i32 i32", "i32"),
    ("fd_close", "i32", "i32"),
    ("fd_fdstat_get", "i32 i32", "i32"),
    ("fd_prestat_get", "i32 i32", "i32"),
    ("fd_prestat_dir_name", "i32 i32 i32", "i32"),
    ("fd_read", "i32 i32 i32 i32", "i32"),
    ("fd_write", "i32 i32 i32 i32", "i32"),
    ("fd_seek", "i32 i64 i32 i32", "i32"),
    ("fd_tell", "i32 i32", "i32"),
    ("fd_filestat_get", "i32 i32", "i32"),
    ("fd_readdir", "i32 i32 i32 i64 i32", "i32"),
    ("path_open", "i32 i32 i32 i32 i32 i64 i64 i32 i32", "i32"),
    ("path_filestat_get", "i32 i32 i32 i32 i32", "i32"),
    ("sched_yield", "", "i32"),
    ("poll_oneoff", "i32 i32 i32 i32", "i32"),
];

/// A module importing the named functions and exporting `memory` plus, for
/// each import, a Wasm function of the same name and type that forwards to
/// it (host functions need a Wasm caller to find the memory).
fn forwarding_module(names: &[&str]) -> String {
    let mut imports = String::new();
    let mut exports = String::new();
    for name in names {
        let (_, params, result) = SIGNATURES
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no signature for {name}"));
        let param_decl = if params.is_empty() {
            String::new()
        } else {
            format!("(param {params})")
        };
        imports.push_str(&format!(
            "(import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} {param_decl} (result {result})))\n"
        ));
        let gets: String = (0..params.split_whitespace().count())
            .map(|i| format!("local.get {i} "))
            .collect();
        exports.push_str(&format!(
            "(func (export \"{name}\") {param_decl} (result {result}) {gets} call ${name})\n"
        ));
    }
    format!("(module\n{imports}(memory (export \"memory\") 1)\n{exports})")
}

struct Guest {
    store: Store<Host>,
    instance: Instance,
}

impl Guest {
    fn from_wat(wat: &str, ctx: WasiCtx) -> Result<Self, wasmi::Error> {
        let engine = Engine::default();
        let wasm = wat::parse_str(wat).expect("test WAT parses");
        let module = Module::new(&engine, &wasm)?;
        let mut linker = <Linker<Host>>::new(&engine);
        add_to_linker(&mut linker, |h: &mut Host| &mut h.wasi)?;
        define_unsupported(&mut linker, &module)?;
        let mut store = Store::new(&engine, Host { wasi: ctx });
        let instance = linker.instantiate_and_start(&mut store, &module)?;
        Ok(Self { store, instance })
    }

    fn new(names: &[&str], config: WasiConfig) -> Self {
        let ctx = WasiCtx::new(config).expect("valid config");
        Self::from_wat(&forwarding_module(names), ctx).expect("instantiates")
    }

    fn try_call(&mut self, name: &str, args: &[Val]) -> Result<i32, wasmi::Error> {
        let func = self
            .instance
            .get_func(&self.store, name)
            .unwrap_or_else(|| panic!("export {name}"));
        let mut results = [Val::I32(0)];
        let n_results = func.ty(&self.store).results().len();
        func.call(&mut self.store, args, &mut results[..n_results])?;
        Ok(results[0].i32().unwrap_or(0))
    }

    /// Calls a forwarding export and returns the errno as u16.
    fn call(&mut self, name: &str, args: &[Val]) -> Errno {
        let raw = self.try_call(name, args).expect("call does not trap");
        Errno::try_from(raw).expect("errno fits u16")
    }

    fn memory(&self) -> wasmi::Memory {
        self.instance
            .get_memory(&self.store, "memory")
            .expect("memory export")
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) {
        let memory = self.memory();
        memory
            .write(&mut self.store, ptr as usize, bytes)
            .expect("in bounds");
    }

    fn read(&self, ptr: u32, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.memory()
            .read(&self.store, ptr as usize, &mut out)
            .expect("in bounds");
        out
    }

    fn u32_at(&self, ptr: u32) -> u32 {
        u32::from_le_bytes(self.read(ptr, 4).try_into().expect("4 bytes"))
    }

    fn u64_at(&self, ptr: u32) -> u64 {
        u64::from_le_bytes(self.read(ptr, 8).try_into().expect("8 bytes"))
    }

    /// Writes one iovec {buf, len} at `at`.
    fn iovec(&mut self, at: u32, buf: u32, len: u32) {
        let mut bytes = buf.to_le_bytes().to_vec();
        bytes.extend_from_slice(&len.to_le_bytes());
        self.write(at, &bytes);
    }

    /// `path_open` with `path` placed at 1024; the new fd is returned.
    fn open(
        &mut self,
        dirfd: u32,
        path: &str,
        oflags: u16,
        rights: u64,
        fdflags: u16,
    ) -> Result<u32, Errno> {
        self.write(1024, path.as_bytes());
        let errno = self.call(
            "path_open",
            &[
                i(dirfd),
                Val::I32(1), // SYMLINK_FOLLOW
                Val::I32(1024),
                i(path.len() as u32),
                Val::I32(i32::from(oflags)),
                Val::I64(rights as i64),
                Val::I64(0),
                Val::I32(i32::from(fdflags)),
                Val::I32(900),
            ],
        );
        if errno == SUCCESS {
            Ok(self.u32_at(900))
        } else {
            Err(errno)
        }
    }

    /// Reads up to `len` bytes from `fd` through one iovec.
    fn read_fd(&mut self, fd: u32, len: u32) -> Result<Vec<u8>, Errno> {
        self.iovec(0, 4096, len);
        let errno = self.call("fd_read", &[i(fd), Val::I32(0), Val::I32(1), Val::I32(16)]);
        if errno != SUCCESS {
            return Err(errno);
        }
        let n = self.u32_at(16) as usize;
        Ok(self.read(4096, n))
    }

    fn write_fd(&mut self, fd: u32, data: &[u8]) -> Result<u32, Errno> {
        self.write(4096, data);
        self.iovec(0, 4096, data.len() as u32);
        let errno = self.call("fd_write", &[i(fd), Val::I32(0), Val::I32(1), Val::I32(16)]);
        if errno != SUCCESS {
            return Err(errno);
        }
        Ok(self.u32_at(16))
    }
}

fn i(v: u32) -> Val {
    Val::I32(v as i32)
}

fn config() -> WasiConfig {
    WasiConfig {
        args: vec!["prog".into()],
        env: Vec::new(),
        preopens: Vec::new(),
        stdin: StdinSource::Null,
        stdout: OutputSink::Capture(CaptureBuffer::new(1 << 16)),
        stderr: OutputSink::Capture(CaptureBuffer::new(1 << 16)),
        determinism: Determinism::Real,
    }
}

fn with_preopen(host: &Path, writable: bool) -> WasiConfig {
    WasiConfig {
        preopens: vec![Preopen {
            host: host.to_path_buf(),
            guest: "/data".into(),
            writable,
        }],
        ..config()
    }
}

const FS_FUNCS: &[&str] = &[
    "path_open",
    "fd_read",
    "fd_write",
    "fd_close",
    "fd_seek",
    "fd_tell",
    "fd_fdstat_get",
    "fd_filestat_get",
    "fd_readdir",
    "path_filestat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

const RIGHT_READ: u64 = 1 << 1;
const RIGHT_WRITE: u64 = 1 << 6;
const O_CREAT: u16 = 1;
const O_DIRECTORY: u16 = 2;
const O_EXCL: u16 = 4;
const O_TRUNC: u16 = 8;
const FDFLAG_APPEND: u16 = 1;

/// Reads the strings written by args_get/environ_get via their pointers.
fn strings(guest: &mut Guest, sizes_fn: &str, get_fn: &str) -> Vec<String> {
    assert_eq!(guest.call(sizes_fn, &[Val::I32(0), Val::I32(4)]), SUCCESS);
    let count = guest.u32_at(0);
    let size = guest.u32_at(4);
    assert_eq!(guest.call(get_fn, &[Val::I32(64), Val::I32(2048)]), SUCCESS);
    let block = guest.read(2048, size as usize);
    assert_eq!(block.last(), Some(&0), "last string is NUL-terminated");
    let mut out = Vec::new();
    for k in 0..count {
        let ptr = guest.u32_at(64 + 4 * k);
        let start = (ptr - 2048) as usize;
        let end = start + block[start..].iter().position(|&b| b == 0).expect("NUL");
        out.push(String::from_utf8(block[start..end].to_vec()).expect("utf8"));
    }
    out
}

#[test]
fn args_and_environ_round_trip_without_host_env() {
    let mut guest = Guest::new(
        &[
            "args_sizes_get",
            "args_get",
            "environ_sizes_get",
            "environ_get",
        ],
        WasiConfig {
            args: vec!["prog".into(), "a b".into(), "ünï".into(), String::new()],
            env: vec![
                ("FOO".into(), "bar=baz".into()),
                ("EMPTY".into(), String::new()),
            ],
            ..config()
        },
    );
    assert_eq!(
        strings(&mut guest, "args_sizes_get", "args_get"),
        ["prog", "a b", "ünï", ""]
    );
    let env = strings(&mut guest, "environ_sizes_get", "environ_get");
    assert_eq!(env, ["FOO=bar=baz", "EMPTY="]);
    assert!(!env.iter().any(|e| e.starts_with("PATH=")));
}

#[test]
fn config_errors_name_the_bad_value() {
    let bad_arg = WasiCtx::new(WasiConfig {
        args: vec!["a\0b".into()],
        ..config()
    });
    assert!(matches!(
        bad_arg,
        Err(WasiError::ArgContainsNul { index: 0, .. })
    ));
    let bad_env = WasiCtx::new(WasiConfig {
        env: vec![("A=B".into(), "x".into())],
        ..config()
    });
    assert!(matches!(bad_env, Err(WasiError::EnvName { ref name, .. }) if name == "A=B"));

    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing");
    let err = WasiCtx::new(with_preopen(&missing, false)).expect_err("missing dir");
    assert!(matches!(&err, WasiError::PreopenOpen { host, .. } if host == &missing));
    assert!(err.to_string().contains("missing"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    let err = WasiCtx::new(with_preopen(&file, false)).expect_err("not a dir");
    assert!(matches!(&err, WasiError::PreopenNotADirectory { host } if host == &file));
}

#[test]
fn clock_time_get_monotonic_and_realtime() {
    let mut guest = Guest::new(&["clock_time_get", "clock_res_get"], config());
    let mut last = 0;
    for _ in 0..100 {
        assert_eq!(
            guest.call("clock_time_get", &[Val::I32(1), Val::I64(0), Val::I32(8)]),
            SUCCESS
        );
        let now = guest.u64_at(8);
        assert!(now >= last, "monotonic went backwards: {now} < {last}");
        last = now;
    }
    assert_eq!(
        guest.call("clock_time_get", &[Val::I32(0), Val::I64(0), Val::I32(8)]),
        SUCCESS
    );
    // After 2020-01-01: real time, not virtual.
    assert!(guest.u64_at(8) > 1_577_836_800 * 1_000_000_000);
    // As wasmtime: no CPU-time clocks, and an id outside the enum traps.
    for id in 2..=3 {
        assert_eq!(
            guest.call("clock_time_get", &[Val::I32(id), Val::I64(0), Val::I32(8)]),
            EBADF
        );
    }
    assert!(guest
        .try_call("clock_time_get", &[Val::I32(9), Val::I64(0), Val::I32(8)])
        .is_err());
    assert_eq!(
        guest.call("clock_res_get", &[Val::I32(1), Val::I32(8)]),
        SUCCESS
    );
    assert!(guest.u64_at(8) > 0);
}

/// Random bytes and a sequence of clock readings for a seeded context.
fn seeded_observations(seed: [u8; 32]) -> (Vec<u8>, Vec<u64>) {
    let mut guest = Guest::new(
        &["random_get", "clock_time_get"],
        WasiConfig {
            determinism: Determinism::Seeded(seed),
            ..config()
        },
    );
    assert_eq!(
        guest.call("random_get", &[Val::I32(100), Val::I32(64)]),
        SUCCESS
    );
    let random = guest.read(100, 64);
    let mut times = Vec::new();
    for id in [0, 1, 1, 0, 1] {
        assert_eq!(
            guest.call("clock_time_get", &[Val::I32(id), Val::I64(0), Val::I32(8)]),
            SUCCESS
        );
        times.push(guest.u64_at(8));
    }
    (random, times)
}

#[test]
fn seeded_runs_are_reproducible() {
    let (random_a, times_a) = seeded_observations([7; 32]);
    let (random_b, times_b) = seeded_observations([7; 32]);
    let (random_c, _) = seeded_observations([8; 32]);
    assert_eq!(random_a, random_b);
    assert_eq!(times_a, times_b);
    assert_ne!(random_a, random_c);
    assert_ne!(random_a, vec![0; 64]);
    let start = SEEDED_REALTIME_START_NS;
    assert_eq!(start, 946_684_800 * 1_000_000_000);
    assert_eq!(
        times_a,
        [start, 1_000, 2_000, start + 3_000, 4_000],
        "each read advances virtual time by 1µs"
    );
}

#[test]
fn random_get_real_fills_and_checks_bounds() {
    let mut guest = Guest::new(&["random_get"], config());
    assert_eq!(
        guest.call("random_get", &[Val::I32(0), Val::I32(4096)]),
        SUCCESS
    );
    assert_ne!(guest.read(0, 4096), vec![0; 4096]);
    assert_eq!(
        guest.call("random_get", &[Val::I32(65_000), Val::I32(1000)]),
        EFAULT
    );
    assert_eq!(
        guest.call("random_get", &[Val::I32(-1), Val::I32(2)]),
        EFAULT
    );
}

#[test]
fn fd_write_capture_truncates_but_reports_full_length() {
    let stdout = CaptureBuffer::new(10);
    // Hand-written module in the shape of a real program's print routine.
    let wat = r#"
        (module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "run") (result i32)
            (i32.store (i32.const 0) (i32.const 100))   ;; iov.buf
            (i32.store (i32.const 4) (i32.const 100))   ;; iov.len
            (memory.fill (i32.const 100) (i32.const 65) (i32.const 100))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.load (i32.const 8))))
    "#;
    let ctx = WasiCtx::new(WasiConfig {
        stdout: OutputSink::Capture(stdout.clone()),
        ..config()
    })
    .expect("ctx");
    let mut guest = Guest::from_wat(wat, ctx).expect("instantiates");
    assert_eq!(guest.try_call("run", &[]).expect("runs"), 100);
    let captured = stdout.snapshot();
    assert_eq!(captured.bytes, vec![b'A'; 10]);
    assert_eq!(captured.total_bytes, 100);
}

#[test]
fn stderr_is_separate_and_stdin_null_is_eof() {
    let stdout = CaptureBuffer::new(100);
    let stderr = CaptureBuffer::new(100);
    let mut guest = Guest::new(
        &["fd_write", "fd_read"],
        WasiConfig {
            stdout: OutputSink::Capture(stdout.clone()),
            stderr: OutputSink::Capture(stderr.clone()),
            ..config()
        },
    );
    assert_eq!(guest.write_fd(2, b"oops"), Ok(4));
    assert_eq!(guest.write_fd(1, b"fine"), Ok(4));
    assert_eq!(stderr.snapshot().bytes, b"oops");
    assert_eq!(stdout.snapshot().bytes, b"fine");
    assert_eq!(guest.read_fd(0, 10), Ok(Vec::new()));
    assert_eq!(guest.write_fd(0, b"x"), Err(EBADF));
    assert_eq!(guest.read_fd(1, 10), Err(EBADF));
}

#[test]
fn preopens_are_enumerated_from_fd_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guest = Guest::new(FS_FUNCS, with_preopen(dir.path(), false));
    assert_eq!(
        guest.call("fd_prestat_get", &[Val::I32(3), Val::I32(0)]),
        SUCCESS
    );
    assert_eq!(guest.read(0, 1), [0], "tag is DIR");
    assert_eq!(guest.u32_at(4), 5, "name length of /data");
    assert_eq!(
        guest.call(
            "fd_prestat_dir_name",
            &[Val::I32(3), Val::I32(16), Val::I32(5)]
        ),
        SUCCESS
    );
    assert_eq!(guest.read(16, 5), b"/data");
    assert_eq!(
        guest.call(
            "fd_prestat_dir_name",
            &[Val::I32(3), Val::I32(16), Val::I32(2)]
        ),
        ENAMETOOLONG
    );
    assert_eq!(
        guest.call("fd_prestat_get", &[Val::I32(4), Val::I32(0)]),
        EBADF
    );
    assert_eq!(
        guest.call("fd_prestat_get", &[Val::I32(1), Val::I32(0)]),
        EBADF
    );
    // Captured stdio is no terminal (of unknown type, as in wasmtime); the preopen a dir.
    assert_eq!(
        guest.call("fd_fdstat_get", &[Val::I32(1), Val::I32(0)]),
        SUCCESS
    );
    assert_eq!(guest.read(0, 1), [0]);
    assert_eq!(
        guest.call("fd_fdstat_get", &[Val::I32(3), Val::I32(0)]),
        SUCCESS
    );
    assert_eq!(guest.read(0, 1), [3]);
    // As wasmtime: a preopen advertises the same fixed rights, writable or not (each
    // call checks); none of them is FD_WRITE on the directory itself.
    let (base, inheriting) = (guest.u64_at(8), guest.u64_at(16));
    assert_eq!(base, super::abi::rights::PREOPEN_BASE);
    assert_eq!(inheriting, super::abi::rights::PREOPEN_INHERITING);
    assert_eq!(base & RIGHT_WRITE, 0);
    // Closing a preopen is allowed; closing it twice is not.
    assert_eq!(guest.call("fd_close", &[Val::I32(3)]), SUCCESS);
    assert_eq!(guest.call("fd_close", &[Val::I32(3)]), EBADF);
    assert_eq!(
        guest.call("fd_prestat_get", &[Val::I32(3), Val::I32(0)]),
        EBADF
    );
}

/// root/outside.txt, root/pre/{inside.txt, sub/, link_out, link_abs, link_in}
fn sandbox() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let pre = root.path().join("pre");
    std::fs::create_dir_all(pre.join("sub")).expect("mkdir");
    std::fs::write(root.path().join("outside.txt"), b"secret").expect("write");
    std::fs::write(pre.join("inside.txt"), b"hello").expect("write");
    std::os::unix::fs::symlink("../outside.txt", pre.join("link_out")).expect("symlink");
    std::os::unix::fs::symlink(root.path().join("outside.txt"), pre.join("link_abs"))
        .expect("symlink");
    std::os::unix::fs::symlink(root.path(), pre.join("link_dir_out")).expect("symlink");
    std::os::unix::fs::symlink("inside.txt", pre.join("link_in")).expect("symlink");
    std::os::unix::fs::symlink("../inside.txt", pre.join("sub/link_up")).expect("symlink");
    (root, pre)
}

#[test]
fn path_open_and_read_inside_preopen() {
    let (_root, pre) = sandbox();
    let mut guest = Guest::new(FS_FUNCS, with_preopen(&pre, false));
    let fd = guest
        .open(3, "inside.txt", 0, RIGHT_READ, 0)
        .expect("opens");
    assert!(fd > 3);
    assert_eq!(guest.read_fd(fd, 100), Ok(b"hello".to_vec()));
    assert_eq!(guest.read_fd(fd, 100), Ok(Vec::new()), "EOF");
    assert_eq!(guest.call("fd_fdstat_get", &[i(fd), Val::I32(0)]), SUCCESS);
    assert_eq!(guest.read(0, 1), [4], "REGULAR_FILE");
    assert_eq!(guest.call("fd_close", &[i(fd)]), SUCCESS);
    assert_eq!(guest.read_fd(fd, 1), Err(EBADF));
}

#[test]
fn escapes_from_the_preopen_fail() {
    let (_root, pre) = sandbox();
    let mut guest = Guest::new(FS_FUNCS, with_preopen(&pre, true));
    for path in [
        "../outside.txt",
        "/etc/passwd",
        "sub/../../outside.txt",
        "link_out",
        "link_abs",
        "link_dir_out/outside.txt",
        "sub/../..",
        "..",
    ] {
        let result = guest.open(3, path, 0, RIGHT_READ, 0);
        assert!(
            matches!(result, Err(ENOTCAPABLE | EPERM)),
            "{path}: {result:?}"
        );
        guest.write(1024, path.as_bytes());
        let errno = guest.call(
            "path_filestat_get",
            &[
                Val::I32(3),
                Val::I32(1),
                Val::I32(1024),
                i(path.len() as u32),
                Val::I32(0),
            ],
        );
        assert!(matches!(errno, ENOTCAPABLE | EPERM), "stat {path}: {errno}");
    }
    // Creating through an escaping path must fail too and create nothing.
    let result = guest.open(3, "../created.txt", O_CREAT, RIGHT_WRITE, 0);
    assert!(matches!(result, Err(ENOTCAPABLE | EPERM)), "{result:?}");
    assert!(!pre.parent().expect("parent").join("created.txt").exists());
    // A dangling symlink pointing outside must not let O_CREAT create there.
    std::os::unix::fs::symlink("../planted.txt", pre.join("dangling")).expect("symlink");
    let result = guest.open(3, "dangling", O_CREAT, RIGHT_WRITE, 0);
    assert!(matches!(result, Err(ENOTCAPABLE | EPERM)), "{result:?}");
    assert!(!pre.parent().expect("parent").join("planted.txt").exists());
    // A subdirectory fd is a sandbox of its own parent's: no climbing out.
    let sub = guest.open(3, "sub", O_DIRECTORY, 0, 0).expect("sub");
    let result = guest.open(sub, "../../outside.txt", 0, RIGHT_READ, 0);
    assert!(matches!(result, Err(ENOTCAPABLE | EPERM)), "{result:?}");
}

#[test]
fn dotdot_and_symlinks_that_stay_inside_work() {
    let (_root, pre) = sandbox();
    let mut guest = Guest::new(FS_FUNCS, with_preopen(&pre, false));
    for path in [
        "sub/../inside.txt",
        "./inside.txt",
        "link_in",
        "sub/link_up",
    ] {
        let fd = guest
            .open(3, path, 0, RIGHT_READ, 0)
            .unwrap_or_else(|e| panic!("{path}: errno {e}"));
        assert_eq!(guest.read_fd(fd, 100), Ok(b"hello".to_vec()), "{path}");
    }
    // The preopen itself, as wasi-libc asks for it when opening "/data".
    let fd = guest.open(3, ".", 0, RIGHT_READ, 0).expect("opens .");
    assert_eq!(guest.call("fd_fdstat_get", &[i(fd), Val::I32(0)]), SUCCESS);
    assert_eq!(guest.read(0, 1), [3], "DIRECTORY");
    let inner = guest
        .open(fd, "sub/../inside.txt", 0, RIGHT_READ, 0)
        .expect("via dir fd");
    assert_eq!(guest.read_fd(inner, 100), Ok(b"hello".to_vec()));
    // Without SYMLINK_FOLLOW a final symlink is refused (O_NOFOLLOW).
    guest.write(1024, b"link_in");
    let errno = guest.call(
        "path_open",
        &[
            Val::I32(3),
            Val::I32(0),
            Val::I32(1024),
            Val::I32(7),
            Val::I32(0),
            Val::I64(RIGHT_READ as i64),
            Val::I64(0),
            Val::I32(0),
            Val::I32(900),
        ],
    );
    assert_eq!(errno, ELOOP);
}

#[test]
fn read_only_preopen_refuses_writes_writable_one_allows_them() {
    let (_root, pre) = sandbox();
    let mut ro = Guest::new(FS_FUNCS, with_preopen(&pre, false));
    // EPERM, as wasmtime answers.
    assert_eq!(ro.open(3, "new.txt", O_CREAT, RIGHT_WRITE, 0), Err(EPERM));
    assert_eq!(ro.open(3, "new.txt", O_CREAT, RIGHT_READ, 0), Err(EPERM));
    assert_eq!(ro.open(3, "inside.txt", 0, RIGHT_WRITE, 0), Err(EPERM));
    assert_eq!(ro.open(3, "inside.txt", O_TRUNC, RIGHT_READ, 0), Err(EPERM));
    // APPEND without FD_WRITE opens for reading only: writes through it fail.
    let fd = ro
        .open(3, "inside.txt", 0, RIGHT_READ, FDFLAG_APPEND)
        .expect("opens for reading");
    assert_eq!(ro.write_fd(fd, b"nope"), Err(EBADF));
    assert!(!pre.join("new.txt").exists());
    // Subdirectories of a read-only preopen are read-only too.
    let sub = ro.open(3, "sub", O_DIRECTORY, 0, 0).expect("sub");
    assert_eq!(ro.open(sub, "x", O_CREAT, RIGHT_WRITE, 0), Err(EPERM));
    let fd = ro.open(3, "inside.txt", 0, RIGHT_READ, 0).expect("read ok");
    assert_eq!(ro.write_fd(fd, b"nope"), Err(EBADF));
    assert_eq!(
        std::fs::read(pre.join("inside.txt")).expect("read"),
        b"hello"
    );

    let mut rw = Guest::new(FS_FUNCS, with_preopen(&pre, true));
    let fd = rw
        .open(
            3,
            "sub/new.txt",
            O_CREAT | O_EXCL,
            RIGHT_READ | RIGHT_WRITE,
            0,
        )
        .expect("create");
    assert_eq!(rw.write_fd(fd, b"data"), Ok(4));
    assert_eq!(
        std::fs::read(pre.join("sub/new.txt")).expect("read"),
        b"data"
    );
    assert_eq!(
        rw.open(3, "sub/new.txt", O_CREAT | O_EXCL, RIGHT_WRITE, 0),
        Err(EEXIST)
    );
    let fd = rw
        .open(3, "sub/new.txt", 0, RIGHT_WRITE, FDFLAG_APPEND)
        .expect("append");
    assert_eq!(rw.write_fd(fd, b"+more"), Ok(5));
    assert_eq!(
        std::fs::read(pre.join("sub/new.txt")).expect("read"),
        b"data+more"
    );
    let fd = rw
        .open(3, "sub/new.txt", O_TRUNC, RIGHT_WRITE, 0)
        .expect("truncate");
    assert_eq!(rw.write_fd(fd, b"x"), Ok(1));
    assert_eq!(std::fs::read(pre.join("sub/new.txt")).expect("read"), b"x");
    // Opened read-only on a writable preopen: still no writing through it.
    let fd = rw.open(3, "inside.txt", 0, RIGHT_READ, 0).expect("open");
    assert_eq!(rw.write_fd(fd, b"nope"), Err(EBADF));
    assert_eq!(rw.call("fd_fdstat_get", &[i(fd), Val::I32(0)]), SUCCESS);
    assert_eq!(rw.u64_at(8) & RIGHT_WRITE, 0);
}

/// Parses a fd_readdir buffer into (d_next, namlen, d_type, name) records.
fn parse_dirents(buf: &[u8]) -> Vec<(u64, u32, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 24 <= buf.len() {
        let next = u64::from_le_bytes(buf[at..at + 8].try_into().expect("8"));
        let namlen = u32::from_le_bytes(buf[at + 16..at + 20].try_into().expect("4"));
        let kind = buf[at + 20];
        let end = (at + 24 + namlen as usize).min(buf.len());
        out.push((next, namlen, kind, buf[at + 24..end].to_vec()));
        at = end;
    }
    out
}

#[test]
fn fd_readdir_lists_sorted_names_and_resumes_by_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["zeta", "alpha", "Mid", "beta"] {
        std::fs::write(dir.path().join(name), b"").expect("write");
    }
    std::fs::create_dir(dir.path().join("dir")).expect("mkdir");
    let mut guest = Guest::new(FS_FUNCS, with_preopen(dir.path(), false));
    let readdir = |guest: &mut Guest, fd: u32, len: u32, cookie: u64| {
        let errno = guest.call(
            "fd_readdir",
            &[
                i(fd),
                Val::I32(2048),
                i(len),
                Val::I64(cookie as i64),
                Val::I32(16),
            ],
        );
        assert_eq!(errno, SUCCESS);
        let used = guest.u32_at(16);
        guest.read(2048, used as usize)
    };
    let all = parse_dirents(&readdir(&mut guest, 3, 4096, 0));
    let names: Vec<&[u8]> = all.iter().map(|e| &e.3[..]).collect();
    let expected: [&[u8]; 7] = [b".", b"..", b"Mid", b"alpha", b"beta", b"dir", b"zeta"];
    assert_eq!(names, expected);
    assert_eq!(all[5].2, 3, "dir is DIRECTORY");
    assert_eq!(all[6].2, 4, "zeta is REGULAR_FILE");
    assert_eq!(
        all.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7]
    );

    // A buffer ending inside an entry is filled completely (bufused == len).
    let partial = readdir(&mut guest, 3, 30, 0);
    assert_eq!(partial.len(), 30);
    assert_eq!(parse_dirents(&partial)[0].3, b".");
    // Resume from the cookie of the entry before "beta".
    let rest = parse_dirents(&readdir(&mut guest, 3, 4096, 4));
    let names: Vec<&[u8]> = rest.iter().map(|e| &e.3[..]).collect();
    let expected: [&[u8]; 3] = [b"beta", b"dir", b"zeta"];
    assert_eq!(names, expected);
    assert!(
        readdir(&mut guest, 3, 4096, 7).is_empty(),
        "end of directory"
    );

    // wasi-libc may open a directory without O_DIRECTORY; it must be a dir fd.
    let fd = guest.open(3, "dir", 0, RIGHT_READ, 0).expect("opens dir");
    assert_eq!(guest.call("fd_fdstat_get", &[i(fd), Val::I32(0)]), SUCCESS);
    assert_eq!(guest.read(0, 1), [3]);
    assert_eq!(parse_dirents(&readdir(&mut guest, fd, 4096, 0)).len(), 2);
    // As wasmtime: reading a directory fd, or listing a file, is EBADF.
    assert_eq!(guest.read_fd(fd, 10), Err(EBADF));
    let file = guest.open(3, "zeta", 0, RIGHT_READ, 0).expect("file");
    assert_eq!(
        guest.call(
            "fd_readdir",
            &[
                i(file),
                Val::I32(2048),
                Val::I32(100),
                Val::I64(0),
                Val::I32(16)
            ]
        ),
        EBADF
    );
}

#[test]
fn fd_seek_and_fd_tell() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("digits"), b"0123456789").expect("write");
    let mut guest = Guest::new(FS_FUNCS, with_preopen(dir.path(), false));
    let fd = guest.open(3, "digits", 0, RIGHT_READ, 0).expect("open");
    let seek = |guest: &mut Guest, offset: i64, whence: i32| {
        let errno = guest.call(
            "fd_seek",
            &[i(fd), Val::I64(offset), Val::I32(whence), Val::I32(8)],
        );
        (errno == SUCCESS).then(|| guest.u64_at(8)).ok_or(errno)
    };
    assert_eq!(seek(&mut guest, 3, 0), Ok(3));
    assert_eq!(guest.read_fd(fd, 2), Ok(b"34".to_vec()));
    assert_eq!(guest.call("fd_tell", &[i(fd), Val::I32(8)]), SUCCESS);
    assert_eq!(guest.u64_at(8), 5);
    assert_eq!(seek(&mut guest, -1, 2), Ok(9));
    assert_eq!(seek(&mut guest, -2, 1), Ok(7));
    assert_eq!(seek(&mut guest, -20, 1), Err(EINVAL));
    assert_eq!(seek(&mut guest, -1, 0), Err(EINVAL));
    // A whence outside the enum traps, as in wasmtime.
    assert!(guest
        .try_call("fd_seek", &[i(fd), Val::I64(0), Val::I32(3), Val::I32(8)])
        .is_err());
    assert_eq!(
        guest.call(
            "fd_seek",
            &[Val::I32(1), Val::I64(0), Val::I32(0), Val::I32(8)]
        ),
        ESPIPE
    );
    assert_eq!(guest.call("fd_tell", &[Val::I32(0), Val::I32(8)]), ESPIPE);
}

#[test]
fn filestat_reports_size_and_hides_host_ids_when_seeded() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ten"), b"0123456789").expect("write");
    let stat = |guest: &mut Guest| {
        guest.write(1024, b"ten");
        let errno = guest.call(
            "path_filestat_get",
            &[
                Val::I32(3),
                Val::I32(1),
                Val::I32(1024),
                Val::I32(3),
                Val::I32(256),
            ],
        );
        assert_eq!(errno, SUCCESS);
        guest.read(256, 64)
    };
    let field = |raw: &[u8], at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().expect("8"));

    let mut real = Guest::new(FS_FUNCS, with_preopen(dir.path(), false));
    let raw = stat(&mut real);
    assert_eq!(raw[16], 4, "REGULAR_FILE");
    assert_eq!(field(&raw, 32), 10, "size");
    assert_eq!(field(&raw, 24), 1, "nlink");
    assert_ne!(field(&raw, 8), 0, "host inode visible in real mode");
    assert_ne!(field(&raw, 48), 0, "mtim visible in real mode");

    let mut seeded = Guest::new(
        FS_FUNCS,
        WasiConfig {
            determinism: Determinism::Seeded([1; 32]),
            ..with_preopen(dir.path(), false)
        },
    );
    let raw = stat(&mut seeded);
    assert_eq!(field(&raw, 32), 10);
    for at in [40, 48, 56] {
        assert_eq!(field(&raw, at), 0, "time at {at} is hidden");
    }
    // Device 1, and inode numbers in the order files are first seen.
    assert_eq!(field(&raw, 0), 1, "dev");
    assert_eq!(field(&raw, 8), 1, "the first file seen is inode 1");
    assert_eq!(field(&stat(&mut seeded), 8), 1, "and stays so");
    // fd_filestat_get agrees.
    let fd = seeded.open(3, "ten", 0, RIGHT_READ, 0).expect("open");
    assert_eq!(
        seeded.call("fd_filestat_get", &[i(fd), Val::I32(256)]),
        SUCCESS
    );
    assert_eq!(field(&seeded.read(256, 64), 32), 10);
    assert_eq!(
        seeded.call("fd_filestat_get", &[Val::I32(1), Val::I32(256)]),
        SUCCESS
    );
    // A captured stream is no terminal: of unknown type, as in wasmtime.
    assert_eq!(seeded.read(256 + 16, 1), [0]);
    // Missing file → ENOENT; filestat buffer out of bounds → EFAULT.
    seeded.write(1024, b"nope");
    assert_eq!(
        seeded.call(
            "path_filestat_get",
            &[
                Val::I32(3),
                Val::I32(1),
                Val::I32(1024),
                Val::I32(4),
                Val::I32(0)
            ]
        ),
        ENOENT
    );
    assert_eq!(
        seeded.call("fd_filestat_get", &[i(fd), Val::I32(65_500)]),
        EFAULT
    );
}

#[test]
fn unknown_fds_are_ebadf() {
    let mut guest = Guest::new(FS_FUNCS, config());
    assert_eq!(guest.call("fd_close", &[Val::I32(99)]), EBADF);
    assert_eq!(guest.call("fd_close", &[Val::I32(-1)]), EBADF);
    assert_eq!(guest.read_fd(42, 10), Err(EBADF));
    assert_eq!(guest.write_fd(42, b"x"), Err(EBADF));
    assert_eq!(
        guest.call("fd_fdstat_get", &[Val::I32(77), Val::I32(0)]),
        EBADF
    );
    assert_eq!(
        guest.call("fd_filestat_get", &[Val::I32(77), Val::I32(0)]),
        EBADF
    );
    assert_eq!(
        guest.call(
            "fd_seek",
            &[Val::I32(77), Val::I64(0), Val::I32(0), Val::I32(8)]
        ),
        EBADF
    );
    assert_eq!(guest.open(77, "x", 0, RIGHT_READ, 0), Err(EBADF));
    // A stream is no directory to open beneath: EBADF, as in wasmtime.
    assert_eq!(guest.open(1, "x", 0, RIGHT_READ, 0), Err(EBADF));
}

#[test]
fn out_of_bounds_pointers_are_efault_not_panics() {
    let stdout = CaptureBuffer::new(100);
    let mut guest = Guest::new(
        FS_FUNCS,
        WasiConfig {
            stdout: OutputSink::Capture(stdout.clone()),
            ..config()
        },
    );
    let write = |guest: &mut Guest, iovs: i32, n: i32, out: i32| {
        guest.call(
            "fd_write",
            &[Val::I32(1), Val::I32(iovs), Val::I32(n), Val::I32(out)],
        )
    };
    // iovec array outside memory, also at the wrap-around boundary.
    assert_eq!(write(&mut guest, 65_532, 1, 16), EFAULT);
    assert_eq!(write(&mut guest, -4, 1, 16), EFAULT);
    // iovec whose buffer lies outside memory.
    guest.iovec(0, 65_000, 1_000);
    assert_eq!(write(&mut guest, 0, 1, 16), EFAULT);
    guest.iovec(0, u32::MAX, 2);
    assert_eq!(write(&mut guest, 0, 1, 16), EFAULT);
    // nwritten pointer outside memory: nothing may be written first.
    guest.iovec(0, 100, 5);
    assert_eq!(write(&mut guest, 0, 1, 70_000), EFAULT);
    assert_eq!(stdout.snapshot().total_bytes, 0);
    // Too many iovecs.
    assert_eq!(write(&mut guest, 0, 5_000, 16), EINVAL);
    // fd_read into a buffer outside memory.
    guest.iovec(0, 65_535, 2);
    assert_eq!(
        guest.call(
            "fd_read",
            &[Val::I32(0), Val::I32(0), Val::I32(1), Val::I32(16)]
        ),
        EFAULT
    );
    // A path outside memory.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guest = Guest::new(FS_FUNCS, with_preopen(dir.path(), false));
    assert_eq!(
        guest.call(
            "path_open",
            &[
                Val::I32(3),
                Val::I32(0),
                Val::I32(65_530),
                Val::I32(100),
                Val::I32(0),
                Val::I64(0),
                Val::I64(0),
                Val::I32(0),
                Val::I32(0),
            ]
        ),
        EFAULT
    );
}

#[test]
fn path_open_result_pointer_checked_before_opening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut guest = Guest::new(FS_FUNCS, with_preopen(dir.path(), true));
    guest.write(1024, b"made.txt");
    let errno = guest.call(
        "path_open",
        &[
            Val::I32(3),
            Val::I32(1),
            Val::I32(1024),
            Val::I32(8),
            Val::I32(i32::from(O_CREAT)),
            Val::I64(RIGHT_WRITE as i64),
            Val::I64(0),
            Val::I32(0),
            Val::I32(65_535),
        ],
    );
    assert_eq!(errno, EFAULT);
    assert!(!dir.path().join("made.txt").exists());
}

#[test]
fn define_unsupported_stubs_unknown_wasi_imports() {
    let wat = r#"
        (module
          (import "wasi_snapshot_preview1" "sock_accept"
            (func $sock_accept (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "made_up_errno"
            (func $made_up_errno (param i32 i64) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "made_up_void"
            (func $made_up_void (param i32)))
          (memory (export "memory") 1)
          (func (export "accept") (result i32)
            (call $sock_accept (i32.const 3) (i32.const 0) (i32.const 0)))
          (func (export "made_up") (result i32)
            (call $made_up_errno (i32.const 3) (i64.const 0)))
          (func (export "write_nothing") (result i32)
            (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8)))
          (func (export "void") (call $made_up_void (i32.const 1))))
    "#;
    let ctx = WasiCtx::new(config()).expect("ctx");
    let mut guest = Guest::from_wat(wat, ctx).expect("instantiates despite unknown imports");
    assert_eq!(guest.try_call("made_up", &[]).expect("no trap"), 52);
    // The real implementations were kept, not replaced by stubs: there is no fd 3, and
    // nothing to write.
    assert_eq!(
        guest.try_call("accept", &[]).expect("no trap"),
        i32::from(EBADF)
    );
    assert_eq!(guest.try_call("write_nothing", &[]).expect("no trap"), 0);
    let error = guest.try_call("void", &[]).expect_err("traps");
    assert!(
        error
            .to_string()
            .contains("WASI function `made_up_void` is not supported by this runner"),
        "{error}"
    );
}

#[test]
fn imports_from_other_modules_are_left_alone() {
    let wat = r#"
        (module
          (import "env" "host_thing" (func (param i32)))
          (memory (export "memory") 1))
    "#;
    let ctx = WasiCtx::new(config()).expect("ctx");
    let error = Guest::from_wat(wat, ctx)
        .err()
        .expect("instantiation fails");
    assert!(error.to_string().contains("host_thing"), "{error}");
}

#[test]
fn proc_exit_reports_the_status() {
    let wat = r#"
        (module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "run") (result i32) (call $exit (i32.const 7)) (i32.const 0)))
    "#;
    let ctx = WasiCtx::new(config()).expect("ctx");
    let mut guest = Guest::from_wat(wat, ctx).expect("instantiates");
    let error = guest.try_call("run", &[]).expect_err("exits");
    assert_eq!(error.i32_exit_status(), Some(7));
}

#[test]
fn missing_memory_export_traps_with_a_clear_message() {
    let wat = r#"
        (module
          (import "wasi_snapshot_preview1" "args_sizes_get"
            (func $f (param i32 i32) (result i32)))
          (memory 1)
          (func (export "run") (result i32) (call $f (i32.const 0) (i32.const 4))))
    "#;
    let ctx = WasiCtx::new(config()).expect("ctx");
    let mut guest = Guest::from_wat(wat, ctx).expect("instantiates");
    let error = guest.try_call("run", &[]).expect_err("traps");
    assert!(error.to_string().contains("`memory`"), "{error}");
}

/// Writes a relative (or absolute) clock subscription at `at`.
fn clock_subscription(
    guest: &mut Guest,
    at: u32,
    userdata: u64,
    clock: u32,
    timeout: u64,
    abstime: bool,
) {
    let mut sub = [0u8; 48];
    sub[0..8].copy_from_slice(&userdata.to_le_bytes());
    sub[8] = 0; // EVENTTYPE_CLOCK
    sub[16..20].copy_from_slice(&clock.to_le_bytes());
    sub[24..32].copy_from_slice(&timeout.to_le_bytes());
    sub[40..42].copy_from_slice(&u16::from(abstime).to_le_bytes());
    guest.write(at, &sub);
}

#[test]
fn poll_oneoff_relative_clock_sleeps_and_reports_one_event() {
    let mut guest = Guest::new(&["poll_oneoff", "sched_yield"], config());
    clock_subscription(&mut guest, 0, 0xfeed, 1, 1_000_000, false);
    guest.write(100, &[0xff; 32]);
    let start = std::time::Instant::now();
    let errno = guest.call(
        "poll_oneoff",
        &[Val::I32(0), Val::I32(100), Val::I32(1), Val::I32(200)],
    );
    assert_eq!(errno, SUCCESS);
    assert!(start.elapsed() >= std::time::Duration::from_millis(1));
    assert_eq!(guest.u32_at(200), 1, "nevents");
    assert_eq!(guest.u64_at(100), 0xfeed, "userdata");
    assert_eq!(guest.read(108, 2), [0, 0], "error");
    assert_eq!(guest.read(110, 1), [0], "type CLOCK");
    // A lone relative sleep reports nbytes 1, as wasmtime's does; the rest is zeroed.
    assert_eq!(guest.read(112, 4), [0; 4], "padding");
    assert_eq!(guest.u64_at(116), 1, "nbytes");
    assert_eq!(guest.read(124, 8), [0; 8], "flags and padding");
    assert_eq!(
        guest.call(
            "poll_oneoff",
            &[Val::I32(0), Val::I32(100), Val::I32(0), Val::I32(200)]
        ),
        EINVAL
    );
    assert_eq!(guest.call("sched_yield", &[]), SUCCESS);
}

#[test]
fn poll_oneoff_seeded_advances_virtual_time_and_answers_fds() {
    let mut guest = Guest::new(
        &["poll_oneoff", "clock_time_get"],
        WasiConfig {
            determinism: Determinism::Seeded([0; 32]),
            ..config()
        },
    );
    // Sleep for an hour of virtual time: returns at once.
    let hour = 3_600 * 1_000_000_000u64;
    clock_subscription(&mut guest, 0, 1, 1, hour, false);
    clock_subscription(&mut guest, 48, 2, 1, 2 * hour, false);
    let start = std::time::Instant::now();
    assert_eq!(
        guest.call(
            "poll_oneoff",
            &[Val::I32(0), Val::I32(1000), Val::I32(2), Val::I32(200)]
        ),
        SUCCESS
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(guest.u32_at(200), 1, "only the earlier timeout fired");
    assert_eq!(guest.u64_at(1000), 1);
    assert_eq!(
        guest.call("clock_time_get", &[Val::I32(1), Val::I64(0), Val::I32(8)]),
        SUCCESS
    );
    assert_eq!(guest.u64_at(8), hour);

    // Absolute deadline on the realtime clock, already in the past → at once.
    clock_subscription(&mut guest, 0, 3, 0, 5, true);
    assert_eq!(
        guest.call(
            "poll_oneoff",
            &[Val::I32(0), Val::I32(1000), Val::I32(1), Val::I32(200)]
        ),
        SUCCESS
    );
    assert_eq!(guest.u32_at(200), 1);
    assert_eq!(guest.u64_at(1000), 3);

    // An fd subscription on stdin (at end of input): ready without waiting on the clock.
    let mut sub = [0u8; 48];
    sub[0..8].copy_from_slice(&9u64.to_le_bytes());
    sub[8] = 1; // FD_READ, fd 0 at 16
    guest.write(0, &sub);
    clock_subscription(&mut guest, 48, 4, 1, hour, false);
    assert_eq!(
        guest.call(
            "poll_oneoff",
            &[Val::I32(0), Val::I32(1000), Val::I32(2), Val::I32(200)]
        ),
        SUCCESS
    );
    assert_eq!(guest.u32_at(200), 1);
    assert_eq!(guest.u64_at(1000), 9);
    assert_eq!(guest.read(1008, 2), [0, 0], "no error");
    assert_eq!(guest.read(1010, 1), [1]);
    // On a closed fd the whole call fails, as in wasmtime.
    sub[16..20].copy_from_slice(&42u32.to_le_bytes());
    guest.write(0, &sub);
    assert_eq!(
        guest.call(
            "poll_oneoff",
            &[Val::I32(0), Val::I32(1000), Val::I32(1), Val::I32(200)]
        ),
        EBADF
    );
}

#[test]
fn seeded_inode_numbers_tell_files_apart_and_agree_with_readdir() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["b", "a"] {
        std::fs::write(dir.path().join(name), name).expect("write");
    }
    std::fs::hard_link(dir.path().join("a"), dir.path().join("c")).expect("link");
    let mut guest = Guest::new(
        FS_FUNCS,
        WasiConfig {
            determinism: Determinism::Seeded([3; 32]),
            ..with_preopen(dir.path(), false)
        },
    );
    let errno = guest.call(
        "fd_readdir",
        &[i(3), Val::I32(2048), i(4096), Val::I64(0), Val::I32(16)],
    );
    assert_eq!(errno, SUCCESS);
    let used = guest.u32_at(16) as usize;
    let raw = guest.read(2048, used);
    let mut inos = Vec::new();
    let mut at = 0;
    while at + 24 <= raw.len() {
        let ino = u64::from_le_bytes(raw[at + 8..at + 16].try_into().expect("8"));
        let namlen = u32::from_le_bytes(raw[at + 16..at + 20].try_into().expect("4")) as usize;
        inos.push((raw[at + 24..at + 24 + namlen].to_vec(), ino));
        at += 24 + namlen;
    }
    // ".", "..", then a, b, c sorted: the directory is 1, a 2, b 3, and c is a's inode.
    let expected: Vec<(Vec<u8>, u64)> = vec![
        (b".".to_vec(), 1),
        (b"..".to_vec(), 1),
        (b"a".to_vec(), 2),
        (b"b".to_vec(), 3),
        (b"c".to_vec(), 2),
    ];
    assert_eq!(inos, expected);
    // path_filestat_get agrees.
    guest.write(1024, b"b");
    let errno = guest.call(
        "path_filestat_get",
        &[
            i(3),
            Val::I32(0),
            Val::I32(1024),
            Val::I32(1),
            Val::I32(256),
        ],
    );
    assert_eq!(errno, SUCCESS);
    assert_eq!(guest.u64_at(256 + 8), 3);
}
