/* Shared by the WASI test programs: each check prints one line, "label: result", so that a
 * run under the runner and one under wasmtime can be compared line by line. Results of raw
 * preview1 calls are their errno numbers (0 = success), as the witx defines them. */
#ifndef CHECK_H
#define CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

/* The preopens every program is given: read-only at /ro (fd 3), read-write at /rw (fd 4). */
#define RO 3
#define RW 4

/* Line-buffered, so that what was printed before a trap is not lost. */
__attribute__((constructor)) static void line_buffered_stdout(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
}

#define ERR(label, call) printf("%s: %d\n", (label), (int)(call))
#define VAL(label, value) printf("%s: %lld\n", (label), (long long)(value))

static inline __wasi_errno_t open_at(__wasi_fd_t dir, __wasi_lookupflags_t lookup,
                                     const char *path, __wasi_oflags_t oflags,
                                     __wasi_rights_t rights, __wasi_fdflags_t fdflags,
                                     __wasi_fd_t *fd) {
    return __wasi_path_open(dir, lookup, path, oflags, rights, rights, fdflags, fd);
}

#define R_READ (__WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL | \
                __WASI_RIGHTS_FD_FILESTAT_GET | __WASI_RIGHTS_FD_READDIR)
#define R_RW (R_READ | __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_FILESTAT_SET_SIZE | \
              __WASI_RIGHTS_FD_FILESTAT_SET_TIMES | __WASI_RIGHTS_FD_SYNC | __WASI_RIGHTS_FD_DATASYNC)

static inline __wasi_errno_t write_str(__wasi_fd_t fd, const char *s, __wasi_size_t *n) {
    __wasi_ciovec_t iov = {.buf = (const uint8_t *)s, .buf_len = strlen(s)};
    return __wasi_fd_write(fd, &iov, 1, n);
}

static inline __wasi_errno_t read_buf(__wasi_fd_t fd, char *buf, __wasi_size_t len,
                                      __wasi_size_t *n) {
    __wasi_iovec_t iov = {.buf = (uint8_t *)buf, .buf_len = len};
    return __wasi_fd_read(fd, &iov, 1, n);
}

#endif
