/* The process: arguments, environment (only what the runner is given), sched_yield, the
 * socket calls of a program given no sockets, and the exit status. */
#include "check.h"
#include <stdlib.h>

int main(int argc, char **argv) {
    char buf[16];
    __wasi_size_t n;
    ERR("sched_yield", __wasi_sched_yield());

    /* arguments and environment */
    VAL("argc", argc);
    for (int i = 1; i < argc; i++) printf("argv[%d]: %s\n", i, argv[i]);
    const char *v = getenv("WASI_TEST");
    printf("WASI_TEST: %s\n", v ? v : "(unset)");
    printf("HOME: %s\n", getenv("HOME") ? "set" : "(unset)");
    printf("PATH: %s\n", getenv("PATH") ? "set" : "(unset)");

    /* sockets: none */
    __wasi_fd_t out;
    ERR("sock_accept stdin", __wasi_sock_accept(0, 0, &out));
    ERR("sock_accept preopen", __wasi_sock_accept(RW, 0, &out));
    ERR("sock_accept closed", __wasi_sock_accept(99, 0, &out));
    __wasi_iovec_t iov = {.buf = (uint8_t *)buf, .buf_len = sizeof buf};
    __wasi_roflags_t roflags;
    ERR("sock_recv stdin", __wasi_sock_recv(0, &iov, 1, 0, &n, &roflags));
    ERR("sock_recv closed", __wasi_sock_recv(99, &iov, 1, 0, &n, &roflags));
    __wasi_ciovec_t ciov = {.buf = (const uint8_t *)"x", .buf_len = 1};
    ERR("sock_send stdout", __wasi_sock_send(1, &ciov, 1, 0, &n));
    ERR("sock_send closed", __wasi_sock_send(99, &ciov, 1, 0, &n));
    ERR("sock_shutdown stdout", __wasi_sock_shutdown(1, __WASI_SDFLAGS_WR));
    ERR("sock_shutdown closed", __wasi_sock_shutdown(99, __WASI_SDFLAGS_WR));
    return 3;
}
