/* fd_readdir: every entry once, resumption by cookie, buffers too small for one entry,
 * and a directory changed while it is being read; errno on files and closed fds. Names
 * are printed sorted, since hosts may list in any order. */
#include "check.h"
#include <stdlib.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

/* Reads the whole directory with buffers of `size` bytes, resuming at each d_next. */
static void list(const char *label, __wasi_fd_t fd, size_t size) {
    static char names[64][64];
    static char *sorted[64];
    static uint8_t buf[4096];
    int count = 0, calls = 0;
    __wasi_dircookie_t cookie = 0;
    for (;;) {
        __wasi_size_t used;
        __wasi_errno_t err = __wasi_fd_readdir(fd, buf, size, cookie, &used);
        calls++;
        if (err) {
            printf("%s: readdir %d\n", label, err);
            return;
        }
        size_t at = 0, progress = 0;
        while (at + sizeof(__wasi_dirent_t) <= used) {
            __wasi_dirent_t d;
            memcpy(&d, buf + at, sizeof d);
            if (at + sizeof d + d.d_namlen > used) break; /* truncated: ask again from here */
            if (count < 64) {
                snprintf(names[count], 64, "%.*s/%d", (int)d.d_namlen, (char *)buf + at + sizeof d,
                         d.d_type);
                count++;
            }
            cookie = d.d_next;
            at += sizeof d + d.d_namlen;
            progress = 1;
        }
        if (used < size) break;
        if (!progress) {
            printf("%s: buffer of %zu too small for one entry\n", label, size);
            return;
        }
    }
    for (int i = 0; i < count; i++) sorted[i] = names[i];
    qsort(sorted, count, sizeof *sorted, cmp);
    printf("%s: %d entries:", label, count);
    for (int i = 0; i < count; i++) printf(" %s", sorted[i]);
    printf("\n");
}

int main(void) {
    __wasi_fd_t fd, file;
    __wasi_size_t used;
    uint8_t buf[256];
    list("rw big buffer", RW, 4096);
    list("rw 64-byte buffer", RW, 64);
    list("rw 40-byte buffer", RW, 40);
    list("ro", RO, 4096);
    ERR("open dir", open_at(RW, 0, "dir", __WASI_OFLAGS_DIRECTORY, R_READ, 0, &fd));
    list("dir", fd, 4096);
    ERR("readdir 10-byte buffer", __wasi_fd_readdir(fd, buf, 10, 0, &used));
    VAL("used", used);
    ERR("readdir 0-byte buffer", __wasi_fd_readdir(fd, buf, 0, 0, &used));
    VAL("used", used);
    ERR("readdir cookie past end", __wasi_fd_readdir(fd, buf, sizeof buf, 1000, &used));
    VAL("used", used);
    ERR("readdir cookie 1", __wasi_fd_readdir(fd, buf, sizeof buf, 1, &used));
    __wasi_dirent_t d;
    memcpy(&d, buf, sizeof d);
    printf("first after cookie 1: %.*s next %llu\n", (int)d.d_namlen, (char *)buf + sizeof d,
           (unsigned long long)d.d_next);
    ERR("create while listed", open_at(fd, 0, "added.txt", __WASI_OFLAGS_CREAT, R_RW, 0, &file));
    ERR("close", __wasi_fd_close(file));
    list("dir after create", fd, 4096);
    ERR("close dir", __wasi_fd_close(fd));
    ERR("open empty", open_at(RW, 0, "empty", __WASI_OFLAGS_DIRECTORY, R_READ, 0, &fd));
    list("empty", fd, 4096);
    ERR("close", __wasi_fd_close(fd));
    ERR("readdir closed", __wasi_fd_readdir(fd, buf, sizeof buf, 0, &used));
    ERR("open file", open_at(RW, 0, "file.txt", 0, R_READ, 0, &file));
    ERR("readdir file", __wasi_fd_readdir(file, buf, sizeof buf, 0, &used));
    ERR("readdir stdin", __wasi_fd_readdir(0, buf, sizeof buf, 0, &used));
    return 0;
}
