/*
 * native_kernels KERNEL N: runs one kernel of kernels.c natively and prints its result as
 * a decimal integer (the same number the runner reports for kernels.wasm).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const struct {
    const char *name;
    int64_t (*fn)(int32_t);
} kernels[] = {
    {"fib_rec", fib_rec},
    {"loop_sum", loop_sum},
    {"mem_kernel", mem_kernel},
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s KERNEL N   (KERNEL: fib_rec, loop_sum, mem_kernel)\n", argv[0]);
        return 2;
    }
    char *end;
    errno = 0;
    long n = strtol(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[2] || n < INT32_MIN || n > INT32_MAX) {
        fprintf(stderr, "%s: N must be an i32, not %s\n", argv[0], argv[2]);
        return 2;
    }
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++) {
        if (strcmp(argv[1], kernels[i].name) == 0) {
            printf("%" PRId64 "\n", kernels[i].fn((int32_t)n));
            return 0;
        }
    }
    fprintf(stderr, "%s: unknown kernel %s (fib_rec, loop_sum, mem_kernel)\n", argv[0], argv[1]);
    return 2;
}
