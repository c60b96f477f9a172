/* fd_* calls on files, directories and stdio: reads, writes, positions, stats, flags,
 * rights, sizes, renumbering and closing, with the errno of each misuse. */
#include "check.h"

int main(void) {
    __wasi_fd_t fd, fd2, dirfd;
    __wasi_size_t n;
    __wasi_filesize_t pos;
    char buf[64];

    ERR("open rw/fds.txt creat", open_at(RW, 0, "fds.txt", __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC, R_RW, 0, &fd));
    VAL("fd", fd);
    ERR("write", write_str(fd, "hello world\n", &n));
    VAL("written", n);
    ERR("tell", __wasi_fd_tell(fd, &pos));
    VAL("pos", pos);
    ERR("seek set 6", __wasi_fd_seek(fd, 6, __WASI_WHENCE_SET, &pos));
    VAL("pos", pos);
    memset(buf, 0, sizeof buf);
    ERR("read", read_buf(fd, buf, 5, &n));
    printf("read %lu: %.*s\n", n, (int)n, buf);
    ERR("seek cur -3", __wasi_fd_seek(fd, -3, __WASI_WHENCE_CUR, &pos));
    VAL("pos", pos);
    ERR("seek end 0", __wasi_fd_seek(fd, 0, __WASI_WHENCE_END, &pos));
    VAL("pos", pos);
    ERR("seek set -1", __wasi_fd_seek(fd, -1, __WASI_WHENCE_SET, &pos));
    ERR("seek cur -100", __wasi_fd_seek(fd, -100, __WASI_WHENCE_CUR, &pos));
    ERR("seek past end", __wasi_fd_seek(fd, 100, __WASI_WHENCE_SET, &pos));
    VAL("pos", pos);
    ERR("read at eof", read_buf(fd, buf, 8, &n));
    VAL("n", n);
    ERR("seek 0", __wasi_fd_seek(fd, 0, __WASI_WHENCE_SET, &pos));

    /* pread / pwrite leave the position alone */
    __wasi_iovec_t iov = {.buf = (uint8_t *)buf, .buf_len = 5};
    ERR("pread 0", __wasi_fd_pread(fd, &iov, 1, 0, &n));
    printf("pread %lu: %.*s\n", n, (int)n, buf);
    ERR("pread 6", __wasi_fd_pread(fd, &iov, 1, 6, &n));
    printf("pread %lu: %.*s\n", n, (int)n, buf);
    ERR("pread past end", __wasi_fd_pread(fd, &iov, 1, 1000, &n));
    VAL("n", n);
    __wasi_ciovec_t ciov = {.buf = (const uint8_t *)"HELLO", .buf_len = 5};
    ERR("pwrite 0", __wasi_fd_pwrite(fd, &ciov, 1, 0, &n));
    VAL("n", n);
    ERR("tell after pwrite", __wasi_fd_tell(fd, &pos));
    VAL("pos", pos);
    ERR("pwrite 20 (extends)", __wasi_fd_pwrite(fd, &ciov, 1, 20, &n));

    /* stats and sizes */
    __wasi_filestat_t st;
    ERR("filestat", __wasi_fd_filestat_get(fd, &st));
    VAL("size", st.size);
    VAL("filetype", st.filetype);
    VAL("nlink", st.nlink);
    ERR("set_size 4", __wasi_fd_filestat_set_size(fd, 4));
    ERR("filestat", __wasi_fd_filestat_get(fd, &st));
    VAL("size", st.size);
    ERR("set_size 10 (zero fill)", __wasi_fd_filestat_set_size(fd, 10));
    ERR("pread all", __wasi_fd_pread(fd, &(__wasi_iovec_t){.buf = (uint8_t *)buf, .buf_len = 64}, 1, 0, &n));
    VAL("n", n);
    VAL("byte 5", buf[5]);
    ERR("set_times", __wasi_fd_filestat_set_times(fd, 1000000000ull, 2000000000ull,
                                                  __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_MTIM));
    ERR("filestat", __wasi_fd_filestat_get(fd, &st));
    VAL("atim", st.atim);
    VAL("mtim", st.mtim);
    ERR("set_times atim+atim_now", __wasi_fd_filestat_set_times(fd, 1, 1, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW));
    ERR("set_times mtim_now", __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW));

    /* advise, allocate, sync */
    ERR("advise", __wasi_fd_advise(fd, 0, 10, __WASI_ADVICE_SEQUENTIAL));
    ERR("allocate", __wasi_fd_allocate(fd, 0, 100));
    ERR("datasync", __wasi_fd_datasync(fd));
    ERR("sync", __wasi_fd_sync(fd));

    /* fdstat, flags, rights */
    __wasi_fdstat_t fst;
    ERR("fdstat", __wasi_fd_fdstat_get(fd, &fst));
    VAL("filetype", fst.fs_filetype);
    VAL("flags", fst.fs_flags);
    VAL("has read", (fst.fs_rights_base & __WASI_RIGHTS_FD_READ) != 0);
    VAL("has write", (fst.fs_rights_base & __WASI_RIGHTS_FD_WRITE) != 0);
    ERR("set_flags append", __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_APPEND));
    ERR("fdstat", __wasi_fd_fdstat_get(fd, &fst));
    VAL("flags", fst.fs_flags);
    ERR("write appended", write_str(fd, "tail", &n));
    ERR("filestat", __wasi_fd_filestat_get(fd, &st));
    VAL("size", st.size);
    ERR("set_flags sync", __wasi_fd_fdstat_set_flags(fd, __WASI_FDFLAGS_SYNC));
    ERR("set_flags none", __wasi_fd_fdstat_set_flags(fd, 0));
    ERR("set_rights drop write", __wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_READ, 0));
    ERR("set_rights add", __wasi_fd_fdstat_set_rights(fd, (__wasi_rights_t)0x3fffffff, 0));
    ERR("set_rights closed", __wasi_fd_fdstat_set_rights(99, 0, 0));

    /* a read-only fd */
    ERR("open ro", open_at(RW, 0, "fds.txt", 0, __WASI_RIGHTS_FD_READ, 0, &fd2));
    VAL("fd2", fd2);
    ERR("write on read-only fd", write_str(fd2, "x", &n));
    ERR("fdstat ro", __wasi_fd_fdstat_get(fd2, &fst));
    VAL("has write", (fst.fs_rights_base & __WASI_RIGHTS_FD_WRITE) != 0);
    ERR("set_size on read-only fd", __wasi_fd_filestat_set_size(fd2, 0));
    ERR("pwrite on read-only fd", __wasi_fd_pwrite(fd2, &ciov, 1, 0, &n));

    /* a write-only fd */
    __wasi_fd_t wfd;
    ERR("open wo", open_at(RW, 0, "fds.txt", 0, __WASI_RIGHTS_FD_WRITE, 0, &wfd));
    ERR("read on write-only fd", read_buf(wfd, buf, 4, &n));
    ERR("close wo", __wasi_fd_close(wfd));

    /* renumber */
    ERR("renumber fd2 -> fd", __wasi_fd_renumber(fd2, fd));
    ERR("read old number", read_buf(fd2, buf, 4, &n));
    ERR("read new number", read_buf(fd, buf, 5, &n));
    printf("read %lu: %.*s\n", n, (int)n, buf);
    ERR("renumber to closed", __wasi_fd_renumber(fd, 77));
    ERR("renumber from closed", __wasi_fd_renumber(77, fd));
    ERR("renumber to self", __wasi_fd_renumber(fd, fd));

    /* directories as fds */
    ERR("open dir", open_at(RW, 0, "dir", __WASI_OFLAGS_DIRECTORY, R_READ, 0, &dirfd));
    VAL("dirfd", dirfd);
    ERR("read on dir", read_buf(dirfd, buf, 4, &n));
    ERR("write on dir", write_str(dirfd, "x", &n));
    ERR("seek on dir", __wasi_fd_seek(dirfd, 0, __WASI_WHENCE_SET, &pos));
    ERR("tell on dir", __wasi_fd_tell(dirfd, &pos));
    ERR("pread on dir", __wasi_fd_pread(dirfd, &iov, 1, 0, &n));
    ERR("set_size on dir", __wasi_fd_filestat_set_size(dirfd, 0));
    ERR("allocate on dir", __wasi_fd_allocate(dirfd, 0, 1));
    ERR("advise on dir", __wasi_fd_advise(dirfd, 0, 1, 0));
    ERR("sync on dir", __wasi_fd_sync(dirfd));
    ERR("datasync on dir", __wasi_fd_datasync(dirfd));
    ERR("set_flags on dir", __wasi_fd_fdstat_set_flags(dirfd, 0));
    ERR("fdstat dir", __wasi_fd_fdstat_get(dirfd, &fst));
    VAL("filetype", fst.fs_filetype);
    ERR("filestat dir", __wasi_fd_filestat_get(dirfd, &st));
    VAL("filetype", st.filetype);
    __wasi_prestat_t pre;
    ERR("prestat on opened dir", __wasi_fd_prestat_get(dirfd, &pre));
    ERR("prestat_dir_name on opened dir", __wasi_fd_prestat_dir_name(dirfd, (uint8_t *)buf, 10));
    ERR("prestat rw", __wasi_fd_prestat_get(RW, &pre));
    VAL("name len", pre.u.dir.pr_name_len);
    ERR("prestat_dir_name short", __wasi_fd_prestat_dir_name(RW, (uint8_t *)buf, 1));
    ERR("prestat on file", __wasi_fd_prestat_get(fd, &pre));
    ERR("prestat_dir_name on file", __wasi_fd_prestat_dir_name(fd, (uint8_t *)buf, 10));
    ERR("prestat on stdout", __wasi_fd_prestat_get(1, &pre));
    ERR("prestat past end", __wasi_fd_prestat_get(5, &pre));

    /* stdio */
    ERR("seek stdout", __wasi_fd_seek(1, 0, __WASI_WHENCE_CUR, &pos));
    ERR("tell stdin", __wasi_fd_tell(0, &pos));
    ERR("pwrite stdout", __wasi_fd_pwrite(1, &ciov, 1, 0, &n));
    ERR("pread stdin", __wasi_fd_pread(0, &iov, 1, 0, &n));
    ERR("read stdout", read_buf(1, buf, 1, &n));
    ERR("write stdin", write_str(0, "x", &n));
    ERR("filestat stdout", __wasi_fd_filestat_get(1, &st));
    ERR("set_size stdout", __wasi_fd_filestat_set_size(1, 0));
    ERR("sync stdout", __wasi_fd_sync(1));
    ERR("advise stdout", __wasi_fd_advise(1, 0, 0, 0));
    ERR("allocate stdout", __wasi_fd_allocate(1, 0, 1));
    ERR("set_flags stdout", __wasi_fd_fdstat_set_flags(1, 0));
    ERR("fdstat stdout", __wasi_fd_fdstat_get(1, &fst));
    VAL("has write", (fst.fs_rights_base & __WASI_RIGHTS_FD_WRITE) != 0);
    ERR("readdir stdout", __wasi_fd_readdir(1, (uint8_t *)buf, sizeof buf, 0, &n));

    /* closing */
    ERR("close dir", __wasi_fd_close(dirfd));
    ERR("close fd", __wasi_fd_close(fd));
    ERR("close again", __wasi_fd_close(fd));
    ERR("read closed", read_buf(fd, buf, 1, &n));
    ERR("write closed", write_str(fd, "x", &n));
    ERR("seek closed", __wasi_fd_seek(fd, 0, 0, &pos));
    ERR("filestat closed", __wasi_fd_filestat_get(fd, &st));
    ERR("fdstat closed", __wasi_fd_fdstat_get(fd, &fst));
    ERR("sync closed", __wasi_fd_sync(fd));
    ERR("close huge", __wasi_fd_close(0x7fffffff));
    /* fd numbers are reused */
    ERR("open a", open_at(RW, 0, "file.txt", 0, R_READ, 0, &fd));
    ERR("open b", open_at(RW, 0, "file.txt", 0, R_READ, 0, &fd2));
    VAL("a", fd);
    VAL("b", fd2);
    ERR("close a", __wasi_fd_close(fd));
    ERR("open c", open_at(RW, 0, "file.txt", 0, R_READ, 0, &fd));
    VAL("c", fd);
    return 0;
}
