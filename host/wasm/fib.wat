;; fib.wat: iterative Fibonacci.
;;   fib(n) = n for n < 2, fib(n-1) + fib(n-2) otherwise (wrapping i64)
;;   fib(0) = 0, fib(1) = 1, fib(12) = 144
;; Negative n is treated like 0. Rebuild: make -C host/wasm
(module
  (memory (export "memory") 1)
  (func (export "fib") (param $n i32) (result i64)
    (local $a i64)   ;; fib(i)
    (local $b i64)   ;; fib(i+1)
    (local $t i64)
    (local.set $a (i64.const 0))
    (local.set $b (i64.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.le_s (local.get $n) (i32.const 0)))
        (local.set $t (i64.add (local.get $a) (local.get $b)))
        (local.set $a (local.get $b))
        (local.set $b (local.get $t))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $a)))
