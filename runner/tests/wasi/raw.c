/* The raw ABI, with lengths given explicitly (wasi-libc's wrappers take C strings): paths
 * with a NUL inside, invalid UTF-8, empty names; flags and enum values at their edges. */
#include "check.h"
#include <stdint.h>

#define IMPORT(name) __attribute__((__import_module__("wasi_snapshot_preview1"), __import_name__(name)))

int32_t raw_path_open(int32_t fd, int32_t dirflags, const char *path, int32_t path_len,
                      int32_t oflags, int64_t base, int64_t inheriting, int32_t fdflags,
                      int32_t *out) IMPORT("path_open");
int32_t raw_path_filestat_get(int32_t fd, int32_t flags, const char *path, int32_t path_len,
                              void *out) IMPORT("path_filestat_get");
int32_t raw_path_create_directory(int32_t fd, const char *path, int32_t path_len)
    IMPORT("path_create_directory");
int32_t raw_path_symlink(const char *target, int32_t target_len, int32_t fd, const char *path,
                         int32_t path_len) IMPORT("path_symlink");
int32_t raw_fd_fdstat_set_flags(int32_t fd, int32_t flags) IMPORT("fd_fdstat_set_flags");
int32_t raw_fd_filestat_set_times(int32_t fd, int64_t atim, int64_t mtim, int32_t flags)
    IMPORT("fd_filestat_set_times");

static void open_raw(const char *label, const char *path, int32_t len, int32_t oflags,
                     int32_t fdflags) {
    int32_t fd = -1;
    int32_t err = raw_path_open(RW, 0, path, len, oflags, R_READ, R_READ, fdflags, &fd);
    printf("%s: %d\n", label, err);
    if (err == 0) (void)__wasi_fd_close(fd);
}

int main(void) {
    __wasi_filestat_t st;
    open_raw("NUL inside", "file.txt\0junk", 13, 0, 0);
    open_raw("NUL at end", "file.txt\0", 9, 0, 0);
    open_raw("prefix of a name", "file.txt", 4, 0, 0);
    open_raw("invalid UTF-8", "fil\xff.txt", 8, 0, 0);
    open_raw("empty", "file.txt", 0, 0, 0);
    open_raw("unicode name", "\xc3\xa9t\xc3\xa9.txt", 9, __WASI_OFLAGS_CREAT, 0);
    ERR("stat NUL inside", raw_path_filestat_get(RW, 0, "file.txt\0x", 10, &st));
    ERR("stat invalid UTF-8", raw_path_filestat_get(RW, 0, "\xfe", 1, &st));
    ERR("mkdir NUL inside", raw_path_create_directory(RW, "d\0x", 3));
    ERR("mkdir invalid UTF-8", raw_path_create_directory(RW, "d\xff", 2));
    ERR("symlink target NUL", raw_path_symlink("a\0b", 3, RW, "sl", 2));
    ERR("symlink target invalid UTF-8", raw_path_symlink("a\xff", 2, RW, "sl", 2));
    __wasi_fd_t fd;
    ERR("open", open_at(RW, 0, "file.txt", 0, R_RW, 0, &fd));
    ERR("set_flags all valid bits but sync", raw_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_APPEND | __WASI_FDFLAGS_NONBLOCK));
    ERR("set_times both now flags", raw_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_ATIM_NOW | __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set_times nothing", raw_fd_filestat_set_times(fd, 0, 0, 0));
    ERR("close", __wasi_fd_close(fd));
    ERR("stat unicode", __wasi_path_filestat_get(RW, 0, "\xc3\xa9t\xc3\xa9.txt", &st));
    return 0;
}
