//! The task input and its arguments: `runner::input::parse_input` (the `input.json` a task
//! author writes), `runner::input::parse_args_json` (`ARGS_JSON` / `--args-json`), then
//! `runner::args::decode_args` against a signature of fuzzed Wasm types, and the result
//! encoding `runner::args::encode_value` on the way back.
//!
//! The first byte and the next few pick the signature; the rest is the JSON text.
//!
//! Checks, besides "no panic": the strict reader accepts a subset of what serde_json
//! accepts and reads the same values (it refuses only repeated keys); an input that parses
//! carries the `entry` and `args` its JSON holds; decoding checks the count first and names
//! a valid argument index; and every decoded value round-trips losslessly through
//! `encode_value`, both as a JSON value and as JSON text (what the result file holds is fed
//! back as an argument), which is the promise in the `args` module docs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::args::{decode_args, encode_value, ArgError, Signature};
use runner::input::{parse_args_json, parse_input, strict_from_slice, InputError};
use serde_json::Value;
use wasmi::{Val, ValType};

const TYPES: [ValType; 7] = [
    ValType::I32,
    ValType::I64,
    ValType::F32,
    ValType::F64,
    ValType::V128,
    ValType::FuncRef,
    ValType::ExternRef,
];

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    // Up to 7 parameter types, one byte each; mostly the four number types.
    let count = usize::from(shape % 8).min(rest.len());
    let (type_bytes, json) = rest.split_at(count);
    let params: Vec<ValType> = type_bytes
        .iter()
        .map(|b| TYPES[usize::from(*b) % if *b >= 0xf0 { 7 } else { 4 }])
        .collect();
    let signature = Signature {
        name: "f".into(),
        params,
        results: vec![ValType::I64],
    };

    strict_agrees_with_serde_json(json);

    match parse_input(json) {
        Ok(input) => {
            let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(json) else {
                panic!("an input that is not a JSON object was accepted");
            };
            assert_eq!(
                input.entry.as_deref(),
                map.get("entry").and_then(Value::as_str)
            );
            assert_eq!(
                input.args.as_ref(),
                map.get("args").and_then(Value::as_array)
            );
            if let Some(args) = &input.args {
                decode_and_round_trip(&signature, args);
            }
        }
        Err(InputError::NotAnObject(_)) => {
            assert!(!matches!(
                serde_json::from_slice::<Value>(json),
                Ok(Value::Object(_))
            ));
        }
        Err(_) => {}
    }
    if let Ok(text) = std::str::from_utf8(json) {
        if let Ok(args) = parse_args_json(text) {
            decode_and_round_trip(&signature, &args);
        }
    }
});

/// `strict_from_slice` is serde_json with repeated keys refused: where it succeeds serde_json
/// reads the same value, and where serde_json succeeds it fails only over a repeated key.
fn strict_agrees_with_serde_json(json: &[u8]) {
    let strict = strict_from_slice(json);
    let plain = serde_json::from_slice::<Value>(json);
    match (strict, plain) {
        (Ok(s), Ok(p)) => assert_eq!(s, p),
        (Ok(s), Err(e)) => panic!("strict accepted {s} which serde_json refuses: {e}"),
        (Err(e), Ok(_)) => assert!(
            e.to_string().contains("appears twice"),
            "strict refused what serde_json reads: {e}"
        ),
        (Err(_), Err(_)) => {}
    }
}

fn decode_and_round_trip(signature: &Signature, args: &[Value]) {
    match decode_args(signature, args) {
        Ok(vals) => {
            assert_eq!(vals.len(), signature.params.len());
            for (ty, val) in signature.params.iter().zip(&vals) {
                assert_eq!(val.ty(), *ty);
                round_trip(*ty, val);
            }
        }
        Err(ArgError::Count {
            expected, given, ..
        }) => {
            assert_eq!((expected, given), (signature.params.len(), args.len()));
            assert_ne!(expected, given);
        }
        Err(ArgError::Value { index, .. }) => {
            assert_eq!(args.len(), signature.params.len());
            assert!(index < args.len());
        }
    }
}

/// `val` encoded as a result and decoded as an argument of the same type is `val`, bit for
/// bit; through JSON text too.
fn round_trip(ty: ValType, val: &Val) {
    let one = |ty: ValType, v: Value| {
        let sig = Signature {
            name: "g".into(),
            params: vec![ty],
            results: Vec::new(),
        };
        decode_args(&sig, &[v]).map(|mut vals| vals.remove(0))
    };
    let encoded = encode_value(val);
    let back = one(ty, encoded.clone())
        .unwrap_or_else(|e| panic!("{val:?} encoded as {encoded} does not decode: {e}"));
    assert_eq!(bits(&back), bits(val), "{val:?} via {encoded}");
    let text = encoded.to_string();
    let reread = strict_from_slice(text.as_bytes()).expect("our own JSON");
    let back = one(ty, reread).unwrap_or_else(|e| panic!("{val:?} as text {text}: {e}"));
    assert_eq!(bits(&back), bits(val), "{val:?} via the text {text}");
}

fn bits(v: &Val) -> u64 {
    match v {
        Val::I32(x) => u64::from(*x as u32),
        Val::I64(x) => *x as u64,
        Val::F32(x) => u64::from(x.to_bits()),
        Val::F64(x) => x.to_bits(),
        other => panic!("decoded a {other:?}"),
    }
}
