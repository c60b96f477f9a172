/* The benchmark kernels, compiled both natively (native_main.c) and to kernels.wasm. */
#ifndef BENCH_KERNELS_H
#define BENCH_KERNELS_H

#include <stdint.h>

#ifdef __wasm__
#define KERNEL_EXPORT(name) __attribute__((export_name(name)))
#else
#define KERNEL_EXPORT(name)
#endif

/* Naive doubly-recursive Fibonacci: fib_rec(0) = 0, fib_rec(1) = 1. */
KERNEL_EXPORT("fib_rec") int64_t fib_rec(int32_t n);

/* A tight integer loop of n steps over an xorshift state: no closed form to fold. */
KERNEL_EXPORT("loop_sum") int64_t loop_sum(int32_t n);

/* A buffer of n KiB: fill, shuffle into one cycle, walk the cycle, strided passes; returns a
 * checksum, or -1 when the buffer cannot be allocated. */
KERNEL_EXPORT("mem_kernel") int64_t mem_kernel(int32_t n);

#endif
