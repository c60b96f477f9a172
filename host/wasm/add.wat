;; add.wat: add(x, y) = x + y   (u64, wrapping on overflow)
;;   the old Go executor's add(u64,u64) entry; add(2, 3) = 5
;; Rebuild: make -C host/wasm
(module
  (memory (export "memory") 1)
  (func (export "add") (param $x i64) (param $y i64) (result i64)
    (i64.add (local.get $x) (local.get $y))))
