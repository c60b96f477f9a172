/* path_* calls in the writable preopen: opening with every flag, creating, removing,
 * renaming, linking, symlinks, stats and times, with the POSIX errno of each misuse
 * (ENOTDIR, EISDIR, ENOTEMPTY, EEXIST, ELOOP, ENOENT) and the trailing-slash rules. */
#include "check.h"

static void open_close(const char *label, __wasi_fd_t dir, __wasi_lookupflags_t lookup,
                       const char *path, __wasi_oflags_t oflags, __wasi_rights_t rights) {
    __wasi_fd_t fd = 0;
    __wasi_errno_t err = open_at(dir, lookup, path, oflags, rights, 0, &fd);
    __wasi_fdstat_t st = {0};
    if (err == 0) {
        (void)__wasi_fd_fdstat_get(fd, &st);
        (void)__wasi_fd_close(fd);
    }
    printf("%s: %d type %d\n", label, err, err == 0 ? st.fs_filetype : -1);
}

static void stat_path(const char *label, __wasi_lookupflags_t lookup, const char *path) {
    __wasi_filestat_t st = {0};
    __wasi_errno_t err = __wasi_path_filestat_get(RW, lookup, path, &st);
    printf("%s: %d type %d size %lld nlink %lld\n", label, err, err ? -1 : st.filetype,
           err ? -1 : (long long)st.size, err ? -1 : (long long)st.nlink);
}

int main(void) {
    const __wasi_lookupflags_t F = __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW;
    const __wasi_oflags_t C = __WASI_OFLAGS_CREAT, D = __WASI_OFLAGS_DIRECTORY,
                          X = __WASI_OFLAGS_EXCL, T = __WASI_OFLAGS_TRUNC;

    /* path_open */
    open_close("open .", RW, 0, ".", 0, R_READ);
    open_close("open . dir", RW, 0, ".", D, R_READ);
    open_close("open ./.", RW, 0, "./.", D, R_READ);
    open_close("open dir/..", RW, 0, "dir/..", D, R_READ);
    open_close("open file", RW, 0, "file.txt", 0, R_READ);
    open_close("open file as dir", RW, 0, "file.txt", D, R_READ);
    open_close("open file/", RW, 0, "file.txt/", 0, R_READ);
    open_close("open file/.", RW, 0, "file.txt/.", 0, R_READ);
    open_close("open dir/", RW, 0, "dir/", 0, R_READ);
    open_close("open dir//a.txt", RW, 0, "dir//a.txt", 0, R_READ);
    open_close("open missing", RW, 0, "missing", 0, R_READ);
    open_close("open missing/x", RW, 0, "missing/x", 0, R_READ);
    open_close("open file/x", RW, 0, "file.txt/x", 0, R_READ);
    open_close("open dir for write", RW, 0, "dir", 0, R_RW);
    open_close("open dir trunc", RW, 0, "dir", T, R_RW);
    open_close("creat dir flag", RW, 0, "newdir", C | D, R_READ);
    open_close("creat excl existing", RW, 0, "file.txt", C | X, R_RW);
    open_close("creat excl new", RW, 0, "new.txt", C | X, R_RW);
    open_close("creat existing", RW, 0, "new.txt", C, R_RW);
    open_close("creat trailing slash", RW, 0, "new2.txt/", C, R_RW);
    open_close("creat in missing dir", RW, 0, "nodir/new.txt", C, R_RW);
    open_close("creat excl on symlink", RW, 0, "link_in", C | X, R_RW);
    open_close("creat excl on dangling", RW, 0, "link_dangling", C | X, R_RW);
    open_close("nofollow symlink", RW, 0, "link_in", 0, R_READ);
    open_close("follow symlink", RW, F, "link_in", 0, R_READ);
    open_close("nofollow symlink dir", RW, 0, "link_dir", D, R_READ);
    open_close("follow symlink dir", RW, F, "link_dir", D, R_READ);
    open_close("symlink in middle", RW, 0, "link_dir/a.txt", 0, R_READ);
    open_close("dangling follow", RW, F, "link_dangling", 0, R_READ);
    open_close("loop follow", RW, F, "loop1", 0, R_READ);
    open_close("loop nofollow", RW, 0, "loop1", 0, R_READ);
    open_close("empty path", RW, 0, "", 0, R_READ);
    open_close("on a file fd", 0, 0, "x", 0, R_READ);
    __wasi_fd_t f;
    ERR("open file for fd", open_at(RW, 0, "file.txt", 0, R_READ, 0, &f));
    open_close("path_open with file as dir fd", f, 0, "x", 0, R_READ);
    ERR("mkdir with file as dir fd", __wasi_path_create_directory(f, "x"));
    ERR("close", __wasi_fd_close(f));
    open_close("closed dir fd", 77, 0, "x", 0, R_READ);
    ERR("truncate via open", open_at(RW, 0, "new.txt", T, R_RW, 0, &f));
    ERR("write", write_str(f, "0123456789", &(__wasi_size_t){0}));
    ERR("close", __wasi_fd_close(f));
    stat_path("stat new.txt", 0, "new.txt");
    ERR("truncate again", open_at(RW, 0, "new.txt", T, R_RW, 0, &f));
    ERR("close", __wasi_fd_close(f));
    stat_path("stat new.txt", 0, "new.txt");

    /* directories */
    ERR("mkdir", __wasi_path_create_directory(RW, "made"));
    ERR("mkdir existing", __wasi_path_create_directory(RW, "made"));
    ERR("mkdir over file", __wasi_path_create_directory(RW, "file.txt"));
    ERR("mkdir nested missing", __wasi_path_create_directory(RW, "nope/made"));
    ERR("mkdir trailing slash", __wasi_path_create_directory(RW, "made2/"));
    ERR("mkdir inside", __wasi_path_create_directory(RW, "made/inner"));
    ERR("rmdir non-empty", __wasi_path_remove_directory(RW, "made"));
    ERR("rmdir file", __wasi_path_remove_directory(RW, "file.txt"));
    ERR("rmdir missing", __wasi_path_remove_directory(RW, "missing"));
    ERR("rmdir symlink to dir", __wasi_path_remove_directory(RW, "link_dir"));
    ERR("rmdir .", __wasi_path_remove_directory(RW, "."));
    ERR("rmdir inner/", __wasi_path_remove_directory(RW, "made/inner/"));
    ERR("rmdir made", __wasi_path_remove_directory(RW, "made"));
    ERR("rmdir made2", __wasi_path_remove_directory(RW, "made2"));
    ERR("rmdir empty", __wasi_path_remove_directory(RW, "empty"));

    /* unlink */
    ERR("unlink dir", __wasi_path_unlink_file(RW, "dir"));
    ERR("unlink missing", __wasi_path_unlink_file(RW, "missing"));
    ERR("unlink file/", __wasi_path_unlink_file(RW, "new.txt/"));
    ERR("unlink symlink", __wasi_path_unlink_file(RW, "link_dangling"));
    ERR("unlink symlink to dir", __wasi_path_unlink_file(RW, "link_dir"));
    ERR("unlink file", __wasi_path_unlink_file(RW, "new.txt"));
    ERR("unlink again", __wasi_path_unlink_file(RW, "new.txt"));

    /* rename */
    ERR("mkdir r1", __wasi_path_create_directory(RW, "r1"));
    ERR("mkdir r2", __wasi_path_create_directory(RW, "r2"));
    ERR("mkdir r2/full", __wasi_path_create_directory(RW, "r2/full"));
    ERR("creat r.txt", open_at(RW, 0, "r.txt", C, R_RW, 0, &f));
    ERR("close", __wasi_fd_close(f));
    ERR("rename file->file", __wasi_path_rename(RW, "r.txt", RW, "s.txt"));
    ERR("rename missing", __wasi_path_rename(RW, "r.txt", RW, "t.txt"));
    ERR("rename file->dir", __wasi_path_rename(RW, "s.txt", RW, "r1"));
    ERR("rename dir->file", __wasi_path_rename(RW, "r1", RW, "s.txt"));
    ERR("rename dir->nonempty dir", __wasi_path_rename(RW, "r1", RW, "r2"));
    ERR("rename dir->empty dir", __wasi_path_rename(RW, "r1", RW, "r2/full"));
    ERR("rename dir into itself", __wasi_path_rename(RW, "r2", RW, "r2/full/x"));
    ERR("rename file/ ", __wasi_path_rename(RW, "s.txt/", RW, "u.txt"));
    ERR("rename to file/", __wasi_path_rename(RW, "s.txt", RW, "u.txt/"));
    ERR("rename dir/ to dir2/", __wasi_path_rename(RW, "r2/", RW, "r3/"));
    ERR("rename over existing file", __wasi_path_rename(RW, "s.txt", RW, "file.txt"));
    ERR("rename symlink", __wasi_path_rename(RW, "link_in", RW, "link_moved"));
    ERR("rename into subdir", __wasi_path_rename(RW, "file.txt", RW, "dir/moved.txt"));
    ERR("rename back", __wasi_path_rename(RW, "dir/moved.txt", RW, "file.txt"));

    /* symlink / readlink */
    char buf[64];
    __wasi_size_t n;
    ERR("symlink", __wasi_path_symlink("file.txt", RW, "sl"));
    ERR("symlink existing", __wasi_path_symlink("file.txt", RW, "sl"));
    ERR("symlink over dir", __wasi_path_symlink("file.txt", RW, "dir"));
    ERR("symlink dangling", __wasi_path_symlink("no/where", RW, "sl2"));
    ERR("symlink in missing dir", __wasi_path_symlink("x", RW, "nodir/sl"));
    ERR("symlink trailing slash", __wasi_path_symlink("x", RW, "sl3/"));
    memset(buf, 0, sizeof buf);
    ERR("readlink", __wasi_path_readlink(RW, "sl", (uint8_t *)buf, sizeof buf, &n));
    printf("readlink %lu: %.*s\n", n, (int)n, buf);
    ERR("readlink short", __wasi_path_readlink(RW, "sl", (uint8_t *)buf, 3, &n));
    printf("readlink %lu: %.*s\n", n, (int)n, buf);
    ERR("readlink dangling", __wasi_path_readlink(RW, "sl2", (uint8_t *)buf, sizeof buf, &n));
    ERR("readlink file", __wasi_path_readlink(RW, "file.txt", (uint8_t *)buf, sizeof buf, &n));
    ERR("readlink missing", __wasi_path_readlink(RW, "missing", (uint8_t *)buf, sizeof buf, &n));
    ERR("readlink dir", __wasi_path_readlink(RW, "dir", (uint8_t *)buf, sizeof buf, &n));
    ERR("readlink link/", __wasi_path_readlink(RW, "sl/", (uint8_t *)buf, sizeof buf, &n));
    ERR("read through symlink", open_at(RW, F, "sl", 0, R_READ, 0, &f));
    ERR("read", read_buf(f, buf, sizeof buf, &n));
    printf("read %lu: %.*s", n, (int)n, buf);
    ERR("close", __wasi_fd_close(f));

    /* hard links */
    ERR("link", __wasi_path_link(RW, 0, "file.txt", RW, "hard.txt"));
    stat_path("stat hard.txt", 0, "hard.txt");
    ERR("link existing", __wasi_path_link(RW, 0, "file.txt", RW, "hard.txt"));
    ERR("link missing", __wasi_path_link(RW, 0, "missing", RW, "hard2.txt"));
    ERR("link dir", __wasi_path_link(RW, 0, "dir", RW, "hard_dir"));
    ERR("link follow", __wasi_path_link(RW, F, "sl", RW, "hard3.txt"));
    ERR("link symlink itself", __wasi_path_link(RW, 0, "sl", RW, "hard4"));
    ERR("link into subdir", __wasi_path_link(RW, 0, "file.txt", RW, "dir/hard5.txt"));
    ERR("link trailing slash", __wasi_path_link(RW, 0, "file.txt", RW, "hard6/"));

    /* stats */
    stat_path("stat file", 0, "file.txt");
    stat_path("stat dir", 0, "dir");
    stat_path("stat .", 0, ".");
    stat_path("stat symlink nofollow", 0, "sl");
    stat_path("stat symlink follow", F, "sl");
    stat_path("stat dangling nofollow", 0, "sl2");
    stat_path("stat dangling follow", F, "sl2");
    stat_path("stat loop follow", F, "loop1");
    stat_path("stat file/", 0, "file.txt/");
    stat_path("stat dir/", 0, "dir/");
    stat_path("stat missing", 0, "missing");
    stat_path("stat link_dir/a.txt", 0, "link_dir/a.txt");

    /* times */
    __wasi_filestat_t st;
    ERR("set times", __wasi_path_filestat_set_times(RW, F, "file.txt", 5000000000ull, 6000000000ull,
                                                     __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    ERR("stat", __wasi_path_filestat_get(RW, 0, "file.txt", &st));
    VAL("atim", st.atim);
    VAL("mtim", st.mtim);
    ERR("set mtime only via symlink", __wasi_path_filestat_set_times(RW, F, "sl", 0, 7000000000ull, __WASI_FSTFLAGS_MTIM));
    ERR("stat", __wasi_path_filestat_get(RW, 0, "file.txt", &st));
    VAL("atim", st.atim);
    VAL("mtim", st.mtim);
    ERR("set symlink's own times", __wasi_path_filestat_set_times(RW, 0, "sl", 0, 8000000000ull, __WASI_FSTFLAGS_MTIM));
    ERR("stat link", __wasi_path_filestat_get(RW, 0, "sl", &st));
    VAL("mtim", st.mtim);
    ERR("stat target", __wasi_path_filestat_get(RW, 0, "file.txt", &st));
    VAL("mtim", st.mtim);
    ERR("set times dir", __wasi_path_filestat_set_times(RW, 0, "dir", 0, 9000000000ull, __WASI_FSTFLAGS_MTIM));
    ERR("set times both", __wasi_path_filestat_set_times(RW, 0, "dir", 0, 1, __WASI_FSTFLAGS_MTIM | __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set times missing", __wasi_path_filestat_set_times(RW, 0, "missing", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("set times dangling follow", __wasi_path_filestat_set_times(RW, F, "sl2", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    return 0;
}
