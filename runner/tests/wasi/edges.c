/* Edge cases of the path and fd calls: rights against open flags, append and holes,
 * trailing slashes on symlinks and directories, "." and "" as names, zero-length buffers. */
#include "check.h"

static void try_open(const char *label, __wasi_fd_t dir, __wasi_lookupflags_t lookup,
                     const char *path, __wasi_oflags_t oflags, __wasi_rights_t rights,
                     __wasi_fdflags_t fdflags) {
    __wasi_fd_t fd;
    __wasi_errno_t err = open_at(dir, lookup, path, oflags, rights, fdflags, &fd);
    if (err) {
        printf("%s: %d\n", label, err);
        return;
    }
    __wasi_fdstat_t st;
    (void)__wasi_fd_fdstat_get(fd, &st);
    __wasi_size_t n = 0;
    __wasi_errno_t w = write_str(fd, "W", &n);
    char buf[16];
    __wasi_size_t r = 0;
    __wasi_errno_t rd = __wasi_fd_pread(fd, &(__wasi_iovec_t){.buf = (uint8_t *)buf, .buf_len = sizeof buf}, 1, 0, &r);
    printf("%s: 0 type %d flags %d write %d read %d (%lu)\n", label, st.fs_filetype, st.fs_flags, w, rd, r);
    (void)__wasi_fd_close(fd);
}

static void stat_path(const char *label, __wasi_lookupflags_t lookup, const char *path) {
    __wasi_filestat_t st;
    __wasi_errno_t err = __wasi_path_filestat_get(RW, lookup, path, &st);
    printf("%s: %d type %d\n", label, err, err ? -1 : st.filetype);
}

int main(void) {
    const __wasi_lookupflags_t F = __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW;
    const __wasi_oflags_t C = __WASI_OFLAGS_CREAT, T = __WASI_OFLAGS_TRUNC, X = __WASI_OFLAGS_EXCL;
    try_open("trunc with read right only", RW, 0, "file.txt", T, __WASI_RIGHTS_FD_READ, 0);
    try_open("creat with read right only", RW, 0, "c1.txt", C, __WASI_RIGHTS_FD_READ, 0);
    try_open("creat with no rights", RW, 0, "c2.txt", C, 0, 0);
    try_open("write right only", RW, 0, "c2.txt", 0, __WASI_RIGHTS_FD_WRITE, 0);
    try_open("append flag, write right", RW, 0, "c2.txt", 0, __WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_READ, __WASI_FDFLAGS_APPEND);
    try_open("append flag, read right", RW, 0, "c2.txt", 0, __WASI_RIGHTS_FD_READ, __WASI_FDFLAGS_APPEND);
    try_open("nonblock flag", RW, 0, "c2.txt", 0, __WASI_RIGHTS_FD_READ, __WASI_FDFLAGS_NONBLOCK);
    try_open("dsync flag", RW, 0, "c2.txt", 0, R_RW, __WASI_FDFLAGS_DSYNC);
    try_open("rsync flag", RW, 0, "c2.txt", 0, R_RW, __WASI_FDFLAGS_RSYNC);
    try_open("sync flag", RW, 0, "c2.txt", 0, R_RW, __WASI_FDFLAGS_SYNC);
    try_open("sync flag, missing file", RW, 0, "missing", 0, R_RW, __WASI_FDFLAGS_SYNC);
    try_open("sync flag, creat in ro", RO, 0, "new", C, R_RW, __WASI_FDFLAGS_SYNC);
    try_open("sync flag, read only", RW, 0, "c2.txt", 0, __WASI_RIGHTS_FD_READ, __WASI_FDFLAGS_SYNC);
    try_open(". creat excl", RW, 0, ".", C | X, R_READ, 0);
    try_open(". creat", RW, 0, ".", C, R_READ, 0);
    try_open("dir/ creat", RW, 0, "dir/", C, R_READ, 0);
    try_open("link_dir/ nofollow", RW, 0, "link_dir/", 0, R_READ, 0);
    try_open("link_in/ nofollow", RW, 0, "link_in/", 0, R_READ, 0);
    try_open("link_dangling creat excl follow", RW, F, "link_dangling", C | X, R_RW, 0);
    try_open("ro dir/", RO, 0, "dir/", 0, R_READ, 0);

    __wasi_fd_t fd;
    __wasi_filesize_t pos;
    __wasi_size_t n;
    ERR("open hole", open_at(RW, 0, "hole.bin", C, R_RW, 0, &fd));
    ERR("seek 10", __wasi_fd_seek(fd, 10, __WASI_WHENCE_SET, &pos));
    ERR("write at 10", write_str(fd, "end", &n));
    __wasi_filestat_t st;
    ERR("stat", __wasi_fd_filestat_get(fd, &st));
    VAL("size", st.size);
    ERR("set append", __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_APPEND));
    __wasi_ciovec_t ciov = {.buf = (const uint8_t *)"P", .buf_len = 1};
    ERR("pwrite at 0 while appending", __wasi_fd_pwrite(fd, &ciov, 1, 0, &n));
    ERR("stat", __wasi_fd_filestat_get(fd, &st));
    VAL("size", st.size);
    ERR("tell", __wasi_fd_tell(fd, &pos));
    VAL("pos", pos);
    ERR("write empty", __wasi_fd_write(fd, &(__wasi_ciovec_t){.buf = (const uint8_t *)"", .buf_len = 0}, 1, &n));
    VAL("n", n);
    ERR("write no iovecs", __wasi_fd_write(fd, &ciov, 0, &n));
    VAL("n", n);
    ERR("read no iovecs", __wasi_fd_read(fd, (__wasi_iovec_t *)&ciov, 0, &n));
    VAL("n", n);
    ERR("close", __wasi_fd_close(fd));

    ERR("mkdir .", __wasi_path_create_directory(RW, "."));
    ERR("mkdir ..", __wasi_path_create_directory(RW, ".."));
    ERR("mkdir empty", __wasi_path_create_directory(RW, ""));
    ERR("mkdir dir/./x", __wasi_path_create_directory(RW, "dir/./x"));
    ERR("rmdir dir/./x", __wasi_path_remove_directory(RW, "dir/./x"));
    ERR("rmdir link_dir/", __wasi_path_remove_directory(RW, "link_dir/"));
    ERR("rmdir empty/", __wasi_path_remove_directory(RW, "empty/"));
    ERR("unlink dir/", __wasi_path_unlink_file(RW, "dir/"));
    ERR("unlink link_dir/", __wasi_path_unlink_file(RW, "link_dir/"));
    ERR("unlink .", __wasi_path_unlink_file(RW, "."));
    ERR("rename . x", __wasi_path_rename(RW, ".", RW, "x"));
    ERR("rename x .", __wasi_path_rename(RW, "c2.txt", RW, "."));
    ERR("rename link_dir/ moved", __wasi_path_rename(RW, "link_dir/", RW, "moved"));
    ERR("rename dir/ dir2", __wasi_path_rename(RW, "dir/", RW, "dir2"));
    ERR("rename dir2 dir", __wasi_path_rename(RW, "dir2", RW, "dir"));
    ERR("rename same file", __wasi_path_rename(RW, "c2.txt", RW, "c2.txt"));
    ERR("rename empty", __wasi_path_rename(RW, "", RW, "x"));
    ERR("link dir/ ", __wasi_path_link(RW, 0, "file.txt", RW, "dir/"));
    ERR("symlink empty target", __wasi_path_symlink("", RW, "sl_empty"));
    ERR("symlink over link", __wasi_path_symlink("x", RW, "link_in"));
    char buf[8];
    ERR("readlink 0 buffer", __wasi_path_readlink(RW, "link_in", (uint8_t *)buf, 0, &n));
    VAL("n", n);
    ERR("readlink link_dir/", __wasi_path_readlink(RW, "link_dir/", (uint8_t *)buf, sizeof buf, &n));
    stat_path("stat link_dir/ nofollow", 0, "link_dir/");
    stat_path("stat link_in/ nofollow", 0, "link_in/");
    stat_path("stat dir/.", 0, "dir/.");
    stat_path("stat dir/sub/..", 0, "dir/sub/..");
    stat_path("stat empty", 0, "");
    ERR("set_times empty", __wasi_path_filestat_set_times(RW, 0, "", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set_times .", __wasi_path_filestat_set_times(RW, 0, ".", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set_times dangling nofollow", __wasi_path_filestat_set_times(RW, 0, "link_dangling", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set_times loop nofollow", __wasi_path_filestat_set_times(RW, 0, "loop1", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    return 0;
}
