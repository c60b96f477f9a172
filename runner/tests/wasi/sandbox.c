/* The sandbox: no path leaves its preopen (`..` past the root, absolute paths, symlinks
 * absolute, relative, dangling or looping, hard links and renames out of it), and nothing
 * beneath the read-only preopen changes. The files left behind are compared too. */
#include "check.h"

static void try_open(const char *label, __wasi_fd_t dir, __wasi_lookupflags_t lookup,
                     const char *path, __wasi_oflags_t oflags, __wasi_rights_t rights) {
    __wasi_fd_t fd;
    __wasi_errno_t err = open_at(dir, lookup, path, oflags, rights, 0, &fd);
    if (err == 0) {
        char buf[32] = {0};
        __wasi_size_t n = 0;
        (void)read_buf(fd, buf, sizeof buf - 1, &n);
        printf("%s: 0 read %lu\n", label, n);
        (void)__wasi_fd_close(fd);
    } else {
        printf("%s: %d\n", label, err);
    }
}

int main(void) {
    const __wasi_lookupflags_t F = __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW;
    const __wasi_oflags_t C = __WASI_OFLAGS_CREAT;
    __wasi_filestat_t st;
    __wasi_fd_t fd;

    /* escapes by path */
    try_open("..", RW, 0, "..", 0, R_READ);
    try_open("../outside/secret.txt", RW, 0, "../outside/secret.txt", 0, R_READ);
    try_open("dir/../../outside/secret.txt", RW, 0, "dir/../../outside/secret.txt", 0, R_READ);
    try_open("dir/../file.txt (inside)", RW, 0, "dir/../file.txt", 0, R_READ);
    try_open("dir/sub/../../file.txt (inside)", RW, 0, "dir/sub/../../file.txt", 0, R_READ);
    try_open("/etc/passwd", RW, 0, "/etc/passwd", 0, R_READ);
    try_open("/rw/file.txt", RW, 0, "/rw/file.txt", 0, R_READ);
    try_open("create ../escape.txt", RW, 0, "../escape.txt", C, R_RW);
    ERR("mkdir ../escape", __wasi_path_create_directory(RW, "../escape"));
    ERR("stat ..", __wasi_path_filestat_get(RW, 0, "..", &st));
    ERR("stat /etc", __wasi_path_filestat_get(RW, 0, "/etc", &st));

    /* escapes by symlink */
    try_open("link_out follow", RW, F, "link_out", 0, R_READ);
    try_open("link_out nofollow", RW, 0, "link_out", 0, R_READ);
    try_open("link_abs follow", RW, F, "link_abs", 0, R_READ);
    try_open("link_up follow", RW, F, "link_up", __WASI_OFLAGS_DIRECTORY, R_READ);
    try_open("link_up/outside/secret.txt", RW, F, "link_up/outside/secret.txt", 0, R_READ);
    try_open("link_dangling follow", RW, F, "link_dangling", 0, R_READ);
    try_open("create through dangling", RW, F, "link_dangling", C, R_RW);
    try_open("loop1 follow", RW, F, "loop1", 0, R_READ);
    try_open("link_in follow (inside)", RW, F, "link_in", 0, R_READ);
    ERR("stat link_out follow", __wasi_path_filestat_get(RW, F, "link_out", &st));
    ERR("stat link_abs follow", __wasi_path_filestat_get(RW, F, "link_abs", &st));
    ERR("stat link_out nofollow", __wasi_path_filestat_get(RW, 0, "link_out", &st));
    ERR("symlink to absolute", __wasi_path_symlink("/etc/passwd", RW, "new_abs"));
    try_open("open new_abs", RW, F, "new_abs", 0, R_READ);
    ERR("symlink to ..", __wasi_path_symlink("../outside/secret.txt", RW, "new_out"));
    try_open("open new_out", RW, F, "new_out", 0, R_READ);
    ERR("set times through link_out", __wasi_path_filestat_set_times(RW, F, "link_out", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("mkdir through link_up", __wasi_path_create_directory(RW, "link_up/made"));

    /* hard links and renames out of a preopen */
    ERR("link ../outside/secret.txt in", __wasi_path_link(RW, 0, "../outside/secret.txt", RW, "stolen"));
    ERR("link file.txt out", __wasi_path_link(RW, 0, "file.txt", RW, "../outside/planted"));
    ERR("link link_out", __wasi_path_link(RW, 0, "link_out", RW, "link_out_copy"));
    ERR("rename file.txt out", __wasi_path_rename(RW, "file.txt", RW, "../outside/moved"));
    ERR("rename secret in", __wasi_path_rename(RW, "../outside/secret.txt", RW, "moved"));
    ERR("unlink ../outside/secret.txt", __wasi_path_unlink_file(RW, "../outside/secret.txt"));
    ERR("rmdir ../outside", __wasi_path_remove_directory(RW, "../outside"));

    /* across preopens */
    ERR("rename rw -> ro", __wasi_path_rename(RW, "dir/a.txt", RO, "a.txt"));
    ERR("rename ro -> rw", __wasi_path_rename(RO, "file.txt", RW, "from_ro.txt"));
    ERR("link ro -> rw", __wasi_path_link(RO, 0, "file.txt", RW, "linked_from_ro.txt"));
    ERR("link rw -> ro", __wasi_path_link(RW, 0, "file.txt", RO, "linked_from_rw.txt"));

    /* the read-only preopen */
    try_open("ro read", RO, 0, "file.txt", 0, R_READ);
    try_open("ro open for write", RO, 0, "file.txt", 0, R_RW);
    try_open("ro create", RO, 0, "new.txt", C, R_RW);
    try_open("ro create read-only", RO, 0, "new.txt", C, R_READ);
    try_open("ro truncate", RO, 0, "file.txt", __WASI_OFLAGS_TRUNC, R_READ);
    try_open("ro link_out follow", RO, F, "link_out", 0, R_READ);
    try_open("ro ..", RO, 0, "../rw/file.txt", 0, R_READ);
    ERR("ro mkdir", __wasi_path_create_directory(RO, "made"));
    ERR("ro rmdir", __wasi_path_remove_directory(RO, "dir"));
    ERR("ro unlink", __wasi_path_unlink_file(RO, "file.txt"));
    ERR("ro rename", __wasi_path_rename(RO, "file.txt", RO, "renamed.txt"));
    ERR("ro symlink", __wasi_path_symlink("file.txt", RO, "sl"));
    ERR("ro link", __wasi_path_link(RO, 0, "file.txt", RO, "hard"));
    ERR("ro set times", __wasi_path_filestat_set_times(RO, 0, "file.txt", 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("ro stat", __wasi_path_filestat_get(RO, 0, "file.txt", &st));
    VAL("size", st.size);
    ERR("ro open", open_at(RO, 0, "file.txt", 0, R_READ, 0, &fd));
    __wasi_size_t n;
    ERR("ro write fd", write_str(fd, "x", &n));
    ERR("ro set_size fd", __wasi_fd_filestat_set_size(fd, 0));
    ERR("ro set_times fd", __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("ro allocate fd", __wasi_fd_allocate(fd, 0, 1));
    ERR("ro close", __wasi_fd_close(fd));
    ERR("ro open dir", open_at(RO, 0, "dir", __WASI_OFLAGS_DIRECTORY, R_READ, 0, &fd));
    ERR("ro subdir mkdir", __wasi_path_create_directory(fd, "made"));
    try_open("ro subdir create", fd, 0, "new.txt", C, R_RW);
    ERR("ro subdir set_times", __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    ERR("ro subdir close", __wasi_fd_close(fd));
    ERR("ro set_times preopen", __wasi_fd_filestat_set_times(RO, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));
    return 0;
}
