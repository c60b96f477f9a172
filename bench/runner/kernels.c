/*
 * Benchmark kernels for runner_vs_native (runner/benches/runner_vs_native.rs).
 * The same source is compiled natively (with native_main.c) and to kernels.wasm
 * (clang --target=wasm32-wasi -mexec-model=reactor); see the Makefile.
 */
#include <stdlib.h>

#include "kernels.h"

int64_t fib_rec(int32_t n) {
    if (n < 2) return n;
    return fib_rec(n - 1) + fib_rec(n - 2);
}

static inline uint64_t xorshift64(uint64_t x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

int64_t loop_sum(int32_t n) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    uint64_t acc = 0;
    for (int32_t i = 0; i < n; i++) {
        x = xorshift64(x);
        /* acc feeds back into itself, so the loop can neither be folded nor vectorised */
        acc += (x * (uint64_t)i) ^ (acc >> 3);
    }
    return (int64_t)acc;
}

int64_t mem_kernel(int32_t n) {
    if (n <= 0) return 0;
    size_t words = (size_t)n * 1024 / sizeof(uint32_t);
    uint32_t *a = malloc(words * sizeof(uint32_t));
    if (a == NULL) return -1;

    /* 1. sequential fill */
    for (size_t i = 0; i < words; i++) a[i] = (uint32_t)i;

    /* 2. Sattolo's shuffle: a random permutation that is one cycle (random writes) */
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (size_t i = words - 1; i > 0; i--) {
        x = xorshift64(x);
        size_t j = (size_t)((x >> 11) % i);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }

    /* 3. walk the cycle: every step a dependent random read */
    uint64_t sum = 0;
    uint32_t p = 0;
    for (size_t i = 0; i < words; i++) {
        sum += p;
        p = a[p];
    }

    /* 4. strided read-modify-write passes */
    for (size_t stride = 1; stride <= 4096; stride *= 16) {
        for (size_t start = 0; start < stride; start++) {
            for (size_t i = start; i < words; i += stride) {
                a[i] = a[i] * 2654435761u + (uint32_t)stride;
                sum ^= (uint64_t)a[i] << (i & 31);
            }
        }
    }

    free(a);
    return (int64_t)sum;
}
