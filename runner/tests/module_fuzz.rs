//! Property tests: arbitrary bytes, and mutations of a real module, given to the runner as a
//! module, and arbitrary JSON as arguments. Any outcome is fine except a panic or a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;
use runner::entry::Request;
use runner::exec::{execute, Execution, Limits};
use runner::result::Status;
use runner::wasi::{CaptureBuffer, Determinism, OutputSink, StdinSource, WasiConfig};
use serde_json::Value;

fn execution(module: Vec<u8>, entry: Option<&str>, args: Option<Vec<Value>>) -> Execution {
    Execution {
        module,
        request: Request {
            entry: entry.map(str::to_owned),
            args,
            ..Request::default()
        },
        limits: Limits {
            fuel: Some(1_000_000),
            max_memory: 16 << 20,
            max_table_elements: 10_000,
            timeout: Some(Duration::from_secs(10)),
        },
        wasi: WasiConfig {
            args: vec!["fuzz.wasm".into()],
            env: Vec::new(),
            preopens: Vec::new(),
            stdin: StdinSource::Null,
            stdout: OutputSink::Capture(CaptureBuffer::new(1024)),
            stderr: OutputSink::Capture(CaptureBuffer::new(1024)),
            determinism: Determinism::Seeded([0; 32]),
        },
    }
}

fn fib() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/wasm/fib.wasm");
    std::fs::read(path).unwrap()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(Value::from("NaN")),
        Just(Value::from("nan:0x7ff0000000000001")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,4}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_a_module_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let outcome = execute(execution(bytes, Some("fib"), Some(vec![Value::from(3)])));
        prop_assert_ne!(outcome.status, Status::Error, "{:?}", outcome.error);
    }

    #[test]
    fn mutated_fib_never_panics(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut module = fib();
        for (at, byte) in flips {
            let i = at.index(module.len());
            module[i] = byte;
        }
        let outcome = execute(execution(module, Some("fib"), Some(vec![Value::from(10)])));
        prop_assert_ne!(outcome.status, Status::Error, "{:?}", outcome.error);
    }

    #[test]
    fn arbitrary_json_arguments_never_panic(args in prop::collection::vec(arb_json(), 0..4)) {
        let n = args.len();
        let outcome = execute(execution(fib(), Some("fib"), Some(args)));
        if n != 1 {
            prop_assert_eq!(outcome.status, Status::InvalidInput);
        }
    }
}
