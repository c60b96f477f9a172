/* What real programs do through wasi-libc: stdio on files, directories with opendir and
 * readdir, stat, rename, unlink, mkdir, rmdir, symlinks, links, truncation, append mode,
 * errno values as POSIX names them. Paths are absolute guest paths under /rw and /ro. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHOW(label, expr) do { errno = 0; long r_ = (long)(expr); \
    printf("%s: %ld errno %s\n", (label), r_, r_ < 0 ? strerror(errno) : "-"); } while (0)

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void ls(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        printf("ls %s: %s\n", path, strerror(errno));
        return;
    }
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 64) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) {
        printf(" %s", names[i]);
        free(names[i]);
    }
    printf("\n");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    FILE *f = fopen("/rw/notes.txt", "w");
    printf("fopen w: %s\n", f ? "ok" : strerror(errno));
    fprintf(f, "line one\nline two\n");
    fclose(f);
    f = fopen("/rw/notes.txt", "a");
    fputs("line three\n", f);
    fclose(f);
    f = fopen("/rw/notes.txt", "r+");
    char line[64];
    while (fgets(line, sizeof line, f)) printf("read: %s", line);
    fseek(f, 5, SEEK_SET);
    fputs("ONE", f);
    printf("ftell: %ld\n", ftell(f));
    rewind(f);
    printf("first: %s", fgets(line, sizeof line, f));
    fclose(f);

    printf("fopen missing: %s\n", fopen("/rw/missing.txt", "r") ? "ok" : strerror(errno));
    printf("fopen ro for write: %s\n", fopen("/ro/file.txt", "w") ? "ok" : strerror(errno));
    printf("fopen outside: %s\n", fopen("/etc/passwd", "r") ? "ok" : strerror(errno));
    printf("fopen ../: %s\n", fopen("/rw/../outside/secret.txt", "r") ? "ok" : strerror(errno));
    f = fopen("/ro/file.txt", "r");
    printf("fopen ro read: %s", f && fgets(line, sizeof line, f) ? line : "failed\n");
    if (f) fclose(f);

    struct stat st;
    SHOW("stat notes", stat("/rw/notes.txt", &st));
    printf("size %lld regular %d\n", (long long)st.st_size, S_ISREG(st.st_mode));
    SHOW("stat dir", stat("/rw/dir", &st));
    printf("dir %d\n", S_ISDIR(st.st_mode));
    SHOW("lstat link_in", lstat("/rw/link_in", &st));
    printf("link %d\n", S_ISLNK(st.st_mode));
    SHOW("stat missing", stat("/rw/missing", &st));
    SHOW("stat file/", stat("/rw/file.txt/", &st));
    SHOW("access notes", access("/rw/notes.txt", R_OK));
    SHOW("access missing", access("/rw/missing", F_OK));

    SHOW("mkdir", mkdir("/rw/newdir", 0755));
    SHOW("mkdir again", mkdir("/rw/newdir", 0755));
    SHOW("mkdir ro", mkdir("/ro/newdir", 0755));
    SHOW("mkdir nested", mkdir("/rw/newdir/inner", 0755));
    SHOW("rmdir non-empty", rmdir("/rw/newdir"));
    SHOW("rmdir inner", rmdir("/rw/newdir/inner"));
    SHOW("rename file", rename("/rw/notes.txt", "/rw/newdir/notes.txt"));
    SHOW("rename missing", rename("/rw/notes.txt", "/rw/x.txt"));
    SHOW("rename across preopens", rename("/rw/newdir/notes.txt", "/ro/notes.txt"));
    SHOW("rename dir over file", rename("/rw/newdir", "/rw/file.txt"));
    SHOW("unlink dir", unlink("/rw/newdir"));
    SHOW("unlink ro", unlink("/ro/file.txt"));
    SHOW("symlink", symlink("newdir/notes.txt", "/rw/notes_link"));
    char target[64] = {0};
    SHOW("readlink", readlink("/rw/notes_link", target, sizeof target - 1));
    printf("target: %s\n", target);
    SHOW("readlink not a link", readlink("/rw/file.txt", target, sizeof target));
    SHOW("link", link("/rw/file.txt", "/rw/file_hard.txt"));
    SHOW("stat hard", stat("/rw/file_hard.txt", &st));
    printf("nlink %lld\n", (long long)st.st_nlink);

    int fd = open("/rw/trunc.txt", O_CREAT | O_RDWR | O_TRUNC, 0644);
    SHOW("open creat", fd);
    SHOW("write", write(fd, "abcdefghij", 10));
    SHOW("ftruncate", ftruncate(fd, 4));
    SHOW("pwrite", pwrite(fd, "XY", 2, 6));
    SHOW("lseek end", lseek(fd, 0, SEEK_END));
    char buf[16] = {0};
    SHOW("pread", pread(fd, buf, sizeof buf, 0));
    printf("bytes: %c%c%c%c %d %d %c%c\n", buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]);
    SHOW("fsync", fsync(fd));
    SHOW("fdatasync", fdatasync(fd));
    SHOW("close", close(fd));
    SHOW("close again", close(fd));
    SHOW("open excl existing", open("/rw/trunc.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    SHOW("open dir for write", open("/rw/dir", O_WRONLY));
    SHOW("open O_DIRECTORY on file", open("/rw/file.txt", O_RDONLY | O_DIRECTORY));
    SHOW("open O_NOFOLLOW on link", open("/rw/link_in", O_RDONLY | O_NOFOLLOW));
    fd = open("/rw/app.txt", O_CREAT | O_WRONLY | O_APPEND, 0644);
    SHOW("write app", write(fd, "1", 1));
    SHOW("lseek 0", lseek(fd, 0, SEEK_SET));
    SHOW("write app", write(fd, "2", 1));
    SHOW("fcntl getfl append", (fcntl(fd, F_GETFL) & O_APPEND) != 0);
    SHOW("fcntl clear append", fcntl(fd, F_SETFL, 0));
    SHOW("lseek 0", lseek(fd, 0, SEEK_SET));
    SHOW("write over", write(fd, "3", 1));
    close(fd);
    f = fopen("/rw/app.txt", "r");
    printf("app: %s\n", fgets(line, sizeof line, f));
    fclose(f);

    struct timespec times[2] = {{.tv_sec = 100, .tv_nsec = 0}, {.tv_sec = 200, .tv_nsec = 0}};
    SHOW("utimensat", utimensat(AT_FDCWD, "/rw/app.txt", times, 0));
    SHOW("stat app", stat("/rw/app.txt", &st));
    printf("mtime %lld\n", (long long)st.st_mtim.tv_sec);

    ls("/rw");
    ls("/rw/newdir");
    ls("/ro");
    ls("/rw/missing");
    ls("/rw/file.txt");
    SHOW("chdir", chdir("/rw/dir"));
    f = fopen("a.txt", "r");
    printf("relative after chdir: %s", f && fgets(line, sizeof line, f) ? line : "failed\n");
    if (f) fclose(f);
    return 0;
}
