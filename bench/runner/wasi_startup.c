/* The WASI start-up benchmark: a trivial command (wasi-libc's start-up, one line to stdout).
 * Measures the whole process: runtime start, module load, WASI set-up, one fd_write, exit. */
#include <stdio.h>

int main(void) {
    puts("ok");
    return 0;
}
