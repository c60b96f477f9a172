//! Conversion between JSON task arguments and Wasm values, in both directions.
//!
//! Pure: values in, values out. Arguments are checked against the function's declared
//! signature *before* anything runs: the count first (extra arguments are an error, not
//! silently dropped as a plain zip would do), then each value's type and range, with errors
//! that name the argument index and the whole signature.
//!
//! Encoding of return values (lossless):
//! - `i32` and `i64` are JSON integers, read as signed (`-1`, not `4294967295`);
//! - finite `f32`/`f64` are JSON numbers in their shortest round-trip form;
//! - `+inf`/`-inf` are the strings `"inf"`/`"-inf"`; the canonical NaN is `"NaN"`; any other
//!   NaN is `"nan:0x…"` with its full bit pattern, so no payload is lost;
//! - `v128` is the string `"0x…"` (32 hex digits); a null reference is `null`, a non-null
//!   one `"funcref"` / `"externref"` (a reference has no meaning outside the store).
//!
//! The same strings are accepted as float arguments, so a result can be fed back in.

use std::fmt;

use serde_json::{Number, Value};
use wasmi::{FuncType, Val, ValType, F32, F64};

/// A function's parameter and result types, printed the way a reader expects:
/// `fib(i32) -> i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

impl Signature {
    pub fn new(name: &str, ty: &FuncType) -> Self {
        Self {
            name: name.to_owned(),
            params: ty.params().to_vec(),
            results: ty.results().to_vec(),
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |types: &[ValType]| {
            types
                .iter()
                .map(|t| type_name(*t))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "{}({})", self.name, list(&self.params))?;
        match self.results.len() {
            0 => Ok(()),
            1 => write!(f, " -> {}", list(&self.results)),
            _ => write!(f, " -> ({})", list(&self.results)),
        }
    }
}

/// The Wasm text-format name of a value type.
pub fn type_name(ty: ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::FuncRef => "funcref",
        ValType::ExternRef => "externref",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("`{signature}` takes {expected} argument(s), but {given} were given")]
    Count {
        signature: String,
        expected: usize,
        given: usize,
    },
    #[error("argument {index} of `{signature}`: expected {expected}, got {value}: {reason}")]
    Value {
        signature: String,
        index: usize,
        expected: &'static str,
        value: String,
        reason: String,
    },
}

/// Converts `args` to the parameter types of `signature`.
pub fn decode_args(signature: &Signature, args: &[Value]) -> Result<Vec<Val>, ArgError> {
    if args.len() != signature.params.len() {
        return Err(ArgError::Count {
            signature: signature.to_string(),
            expected: signature.params.len(),
            given: args.len(),
        });
    }
    args.iter()
        .zip(&signature.params)
        .enumerate()
        .map(|(index, (arg, ty))| {
            decode_value(*ty, arg).map_err(|reason| ArgError::Value {
                signature: signature.to_string(),
                index,
                expected: type_name(*ty),
                value: shorten(&arg.to_string(), 80),
                reason,
            })
        })
        .collect()
}

fn decode_value(ty: ValType, arg: &Value) -> Result<Val, String> {
    match ty {
        ValType::I32 => {
            let n = integer(arg)?;
            // Both readings of 32 bits are accepted: -1 and 4294967295 are the same i32.
            let v = i32::try_from(n)
                .or_else(|_| u32::try_from(n).map(|u| u as i32))
                .map_err(|_| format!("{n} is outside the i32 range {}..={}", i32::MIN, u32::MAX))?;
            Ok(Val::I32(v))
        }
        ValType::I64 => {
            let n = integer(arg)?;
            let v = i64::try_from(n)
                .or_else(|_| u64::try_from(n).map(|u| u as i64))
                .map_err(|_| format!("{n} is outside the i64 range {}..={}", i64::MIN, u64::MAX))?;
            Ok(Val::I64(v))
        }
        ValType::F32 => Ok(Val::F32(F32::from_bits(f32_bits(arg)?))),
        ValType::F64 => Ok(Val::F64(F64::from_bits(f64_bits(arg)?))),
        ValType::V128 | ValType::FuncRef | ValType::ExternRef => Err(format!(
            "{} parameters cannot be given from JSON",
            type_name(ty)
        )),
    }
}

/// A JSON integer as i128, which holds every value of both i64 and u64.
fn integer(arg: &Value) -> Result<i128, String> {
    let Value::Number(n) = arg else {
        return Err(format!("a {} is not an integer", json_kind(arg)));
    };
    if let Some(v) = n.as_i64() {
        Ok(i128::from(v))
    } else if let Some(v) = n.as_u64() {
        Ok(i128::from(v))
    } else {
        // serde_json keeps integers beyond u64 and every number with a fraction or
        // exponent as f64: neither fits an integer parameter exactly.
        Err(format!("{n} is not an integer within 64 bits"))
    }
}

fn f64_bits(arg: &Value) -> Result<u64, String> {
    match arg {
        Value::Number(n) => n
            .as_f64()
            .map(f64::to_bits)
            .ok_or_else(|| format!("{n} is not representable as f64")),
        Value::String(s) => special_float(s, 64).ok_or_else(|| special_float_hint(s)),
        other => Err(format!("a {} is not a number", json_kind(other))),
    }
}

fn f32_bits(arg: &Value) -> Result<u32, String> {
    match arg {
        Value::Number(n) => {
            let v = n
                .as_f64()
                .ok_or_else(|| format!("{n} is not representable as f32"))?;
            let narrowed = v as f32;
            // Rounding, not a plain comparison with f32::MAX: the shortest decimal form of
            // f32::MAX (3.4028235e38) is itself a little above it and must still be accepted.
            if narrowed.is_infinite() {
                return Err(format!("{n} is outside the f32 range"));
            }
            Ok(narrowed.to_bits())
        }
        Value::String(s) => special_float(s, 32)
            .map(|bits| bits as u32)
            .ok_or_else(|| special_float_hint(s)),
        other => Err(format!("a {} is not a number", json_kind(other))),
    }
}

/// Parses the strings that stand for non-finite floats (see the module docs).
fn special_float(s: &str, width: u32) -> Option<u64> {
    let (inf, nan) = if width == 32 {
        (
            u64::from(f32::INFINITY.to_bits()),
            u64::from(F32_CANONICAL_NAN),
        )
    } else {
        (f64::INFINITY.to_bits(), F64_CANONICAL_NAN)
    };
    let sign = 1u64 << (width - 1);
    match s {
        "inf" | "+inf" | "Infinity" => Some(inf),
        "-inf" | "-Infinity" => Some(inf | sign),
        "NaN" | "nan" => Some(nan),
        _ => {
            let hex = s.strip_prefix("nan:0x")?;
            let bits = u64::from_str_radix(hex, 16).ok()?;
            let exponent_mask = inf;
            let fits = width == 64 || bits <= u64::from(u32::MAX);
            // Only a NaN bit pattern is accepted here: all exponent bits set, non-zero mantissa.
            let is_nan =
                bits & exponent_mask == exponent_mask && bits & !(exponent_mask | sign) != 0;
            (fits && is_nan).then_some(bits)
        }
    }
}

fn special_float_hint(s: &str) -> String {
    format!(
        "the string {:?} is not a float; use a JSON number, \"inf\", \"-inf\", \"NaN\" or \"nan:0x<bits>\"",
        shorten(s, 40)
    )
}

const F32_CANONICAL_NAN: u32 = 0x7fc0_0000;
const F64_CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

/// Encodes a returned Wasm value as JSON (see the module docs for the rules).
pub fn encode_value(val: &Val) -> Value {
    match val {
        Val::I32(v) => Value::from(*v),
        Val::I64(v) => Value::from(*v),
        Val::F32(v) => {
            let bits = v.to_bits();
            let f = f32::from_bits(bits);
            if f.is_nan() {
                nan_string(u64::from(bits), u64::from(F32_CANONICAL_NAN), 8)
            } else if f.is_infinite() {
                Value::from(if f > 0.0 { "inf" } else { "-inf" })
            } else {
                // f32's shortest decimal form, read back as f64, prints the same digits and
                // parses back to the same f32; a plain widening would print 0.10000000149011612.
                let widened: f64 = f.to_string().parse().unwrap_or(f64::from(f));
                Number::from_f64(widened).map_or(Value::Null, Value::Number)
            }
        }
        Val::F64(v) => {
            let bits = v.to_bits();
            let f = f64::from_bits(bits);
            if f.is_nan() {
                nan_string(bits, F64_CANONICAL_NAN, 16)
            } else if f.is_infinite() {
                Value::from(if f > 0.0 { "inf" } else { "-inf" })
            } else {
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
        }
        Val::V128(v) => Value::from(format!("0x{:032x}", v.as_u128())),
        Val::FuncRef(r) => {
            if r.is_null() {
                Value::Null
            } else {
                Value::from("funcref")
            }
        }
        Val::ExternRef(r) => {
            if r.is_null() {
                Value::Null
            } else {
                Value::from("externref")
            }
        }
    }
}

fn nan_string(bits: u64, canonical: u64, digits: usize) -> Value {
    if bits == canonical {
        Value::from("NaN")
    } else {
        Value::from(format!("nan:0x{bits:0digits$x}"))
    }
}

/// How a WASI command sees its arguments: `args` become `argv[1..]`, strings verbatim,
/// anything else as its JSON text.
pub fn to_argv(args: &[Value]) -> Vec<String> {
    args.iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(params: &[ValType], results: &[ValType]) -> Signature {
        Signature {
            name: "f".into(),
            params: params.to_vec(),
            results: results.to_vec(),
        }
    }

    fn one(ty: ValType, arg: Value) -> Result<Val, ArgError> {
        decode_args(&sig(&[ty], &[]), &[arg]).map(|mut v| v.remove(0))
    }

    fn as_i32(v: Val) -> i32 {
        match v {
            Val::I32(x) => x,
            other => unreachable!("not an i32: {other:?}"),
        }
    }

    fn as_i64(v: Val) -> i64 {
        match v {
            Val::I64(x) => x,
            other => unreachable!("not an i64: {other:?}"),
        }
    }

    #[test]
    fn signature_display_names_every_type() {
        let s = sig(&[ValType::I32, ValType::F64], &[ValType::I64]);
        assert_eq!(s.to_string(), "f(i32, f64) -> i64");
        assert_eq!(sig(&[], &[]).to_string(), "f()");
        assert_eq!(
            sig(&[], &[ValType::I32, ValType::I32]).to_string(),
            "f() -> (i32, i32)"
        );
    }

    #[test]
    fn i32_accepts_signed_and_unsigned_range() {
        assert_eq!(as_i32(one(ValType::I32, json!(12)).unwrap()), 12);
        assert_eq!(
            as_i32(one(ValType::I32, json!(-2147483648)).unwrap()),
            i32::MIN
        );
        assert_eq!(as_i32(one(ValType::I32, json!(4294967295u64)).unwrap()), -1);
        let err = one(ValType::I32, json!(4294967296u64)).unwrap_err();
        assert!(err.to_string().contains("outside the i32 range"), "{err}");
        let err = one(ValType::I32, json!(-2147483649i64)).unwrap_err();
        assert!(err.to_string().contains("argument 0 of `f(i32)`"), "{err}");
    }

    #[test]
    fn i64_accepts_full_u64_and_i64_range() {
        assert_eq!(as_i64(one(ValType::I64, json!(u64::MAX)).unwrap()), -1);
        assert_eq!(
            as_i64(one(ValType::I64, json!(i64::MIN)).unwrap()),
            i64::MIN
        );
        // Beyond u64 serde_json falls back to f64: rejected, not rounded.
        let big: Value = serde_json::from_str("18446744073709551616").unwrap();
        assert!(one(ValType::I64, big).is_err());
    }

    #[test]
    fn integers_reject_fractions_strings_and_other_kinds() {
        for bad in [
            json!(1.5),
            json!(12.0),
            json!("12"),
            json!(true),
            json!(null),
            json!([1]),
        ] {
            let err = one(ValType::I32, bad.clone()).unwrap_err();
            assert!(
                matches!(err, ArgError::Value { index: 0, .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn count_mismatch_names_signature_both_ways() {
        let s = sig(&[ValType::I64, ValType::I64], &[ValType::I64]);
        let err = decode_args(&s, &[json!(1), json!(2), json!(3)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`f(i64, i64) -> i64` takes 2 argument(s), but 3 were given"
        );
        assert!(decode_args(&s, &[json!(1)]).is_err());
    }

    #[test]
    fn error_names_the_failing_index() {
        let s = sig(&[ValType::I32, ValType::I32, ValType::I32], &[]);
        let err = decode_args(&s, &[json!(1), json!(2), json!("x")]).unwrap_err();
        assert!(matches!(err, ArgError::Value { index: 2, .. }));
        assert!(err
            .to_string()
            .starts_with("argument 2 of `f(i32, i32, i32)`: expected i32"));
    }

    #[test]
    fn floats_from_numbers_and_special_strings() {
        let f = |v| match one(ValType::F64, v).unwrap() {
            Val::F64(x) => x.to_bits(),
            other => unreachable!("{other:?}"),
        };
        assert_eq!(f(json!(1.5)), 1.5f64.to_bits());
        assert_eq!(f(json!(3)), 3.0f64.to_bits());
        assert_eq!(f(json!("-inf")), f64::NEG_INFINITY.to_bits());
        assert_eq!(f(json!("NaN")), F64_CANONICAL_NAN);
        assert_eq!(f(json!("nan:0x7ff0000000000001")), 0x7ff0_0000_0000_0001);
        // A hex pattern that is not a NaN (here: +inf) is refused.
        assert!(one(ValType::F64, json!("nan:0x7ff0000000000000")).is_err());
        assert!(one(ValType::F32, json!(1e39)).is_err());
        assert!(one(ValType::F32, json!("nan:0x7ff8000000000000")).is_err());
        assert!(one(ValType::F32, json!("pi")).is_err());
    }

    #[test]
    fn results_encode_losslessly() {
        assert_eq!(encode_value(&Val::I64(i64::MIN)), json!(i64::MIN));
        assert_eq!(encode_value(&Val::I32(-1)), json!(-1));
        assert_eq!(
            encode_value(&Val::F32(F32::from_float(0.1))).to_string(),
            "0.1"
        );
        assert_eq!(
            encode_value(&Val::F64(F64::from_float(-0.0))).to_string(),
            "-0.0"
        );
        assert_eq!(
            encode_value(&Val::F64(F64::from_float(f64::INFINITY))),
            json!("inf")
        );
        assert_eq!(
            encode_value(&Val::F32(F32::from_bits(F32_CANONICAL_NAN))),
            json!("NaN")
        );
        assert_eq!(
            encode_value(&Val::F32(F32::from_bits(0xffc0_0001))),
            json!("nan:0xffc00001")
        );
    }

    #[test]
    fn float_results_round_trip_through_arguments() {
        let samples_64 = [0.1, -0.0, 1e300, f64::MIN_POSITIVE, 5e-324];
        for x in samples_64 {
            let json = encode_value(&Val::F64(F64::from_float(x)));
            let text = json.to_string();
            let back = one(ValType::F64, serde_json::from_str(&text).unwrap()).unwrap();
            assert!(
                matches!(back, Val::F64(b) if b.to_bits() == x.to_bits()),
                "{x}"
            );
        }
        for bits in [
            0x3dcc_cccd_u32,
            0x0000_0001,
            0x7f7f_ffff,
            0xff80_0000,
            0x7fa0_0000,
        ] {
            let text = encode_value(&Val::F32(F32::from_bits(bits))).to_string();
            let back = one(ValType::F32, serde_json::from_str(&text).unwrap()).unwrap();
            assert!(
                matches!(back, Val::F32(b) if b.to_bits() == bits),
                "{bits:#x} via {text}"
            );
        }
    }

    #[test]
    fn argv_keeps_strings_verbatim() {
        assert_eq!(
            to_argv(&[json!("a b"), json!(3), json!({"k":1})]),
            vec!["a b".to_string(), "3".into(), "{\"k\":1}".into()]
        );
    }

    #[test]
    fn shorten_respects_char_boundaries() {
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("ab", 2), "ab");
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_json_never_panics(text in ".{0,64}", n in proptest::num::f64::ANY, i in proptest::num::i64::ANY) {
            let s = sig(&[ValType::I32, ValType::I64, ValType::F32, ValType::F64], &[]);
            let candidates = [
                Value::from(text.clone()),
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                Number::from_f64(n).map_or(Value::Null, Value::Number),
                Value::from(i),
            ];
            for a in &candidates {
                for b in &candidates {
                    let _ = decode_args(&s, &[a.clone(), b.clone(), a.clone(), b.clone()]);
                    let _ = decode_args(&s, std::slice::from_ref(a));
                }
            }
        }

        /// Every f64 and f32, NaN payloads and infinities included, survives the trip a
        /// result takes: encoded, written as JSON text, read back (by the coordinator, or as
        /// an argument) and decoded, bit for bit.
        #[test]
        fn every_float_survives_json_text_bit_for_bit(bits64 in proptest::num::u64::ANY, bits32 in proptest::num::u32::ANY) {
            let s = sig(&[ValType::F64, ValType::F32], &[]);
            let values = [
                encode_value(&Val::F64(F64::from_bits(bits64))),
                encode_value(&Val::F32(F32::from_bits(bits32))),
            ];
            let text = serde_json::to_string(&values).unwrap();
            let back: Vec<Value> = serde_json::from_str(&text).unwrap();
            let decoded = decode_args(&s, &back).unwrap();
            match (&decoded[0], &decoded[1]) {
                (Val::F64(a), Val::F32(b)) => {
                    proptest::prop_assert_eq!(a.to_bits(), bits64, "{}", text);
                    proptest::prop_assert_eq!(b.to_bits(), bits32, "{}", text);
                }
                other => proptest::prop_assert!(false, "{other:?}"),
            }
        }
    }
}
