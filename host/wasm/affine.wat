;; affine.wat: affine(a, x, b) = a*x + b   (i64, wrapping on overflow)
;;   affine(13, 9, 2) = 13*9 + 2 = 119
;; Rebuild: make -C host/wasm
(module
  (memory (export "memory") 1)
  (func (export "affine") (param $a i64) (param $x i64) (param $b i64) (result i64)
    (i64.add
      (i64.mul (local.get $a) (local.get $x))
      (local.get $b))))
