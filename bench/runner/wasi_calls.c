/* The WASI call-heavy benchmark: 100 000 small fd_writes to stdout, then 100 000
 * path_open/fd_close pairs on one file of the first preopen (fd 3). The calls are made
 * directly (wasi/api.h), so no libc buffering hides them; the host's cost per call is what
 * is measured. Prints the number of calls made; exits 1 on the first failed call. */
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

#define N 100000

int main(void) {
    static const char byte[] = ".";
    __wasi_ciovec_t iov = {.buf = (const uint8_t *)byte, .buf_len = 1};
    for (int i = 0; i < N; i++) {
        __wasi_size_t written;
        if (__wasi_fd_write(1, &iov, 1, &written) != 0 || written != 1) return 1;
    }
    const char *name = "bench-file";
    for (int i = 0; i < N; i++) {
        __wasi_fd_t fd;
        __wasi_errno_t err = __wasi_path_open(3, 0, name, 0, __WASI_RIGHTS_FD_READ,
                                              0, 0, &fd);
        if (err != 0) {
            fprintf(stderr, "path_open: errno %d\n", err);
            return 1;
        }
        if (__wasi_fd_close(fd) != 0) return 1;
    }
    printf("\n%d calls\n", 3 * N);
    return 0;
}
