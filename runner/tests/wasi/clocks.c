/* Clocks, randomness, and poll_oneoff on clocks, stdio and files. */
#include "check.h"

static __wasi_subscription_t clock_sub(__wasi_userdata_t ud, __wasi_clockid_t id,
                                       __wasi_timestamp_t timeout, __wasi_subclockflags_t flags) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = ud;
    s.u.tag = __WASI_EVENTTYPE_CLOCK;
    s.u.u.clock.id = id;
    s.u.u.clock.timeout = timeout;
    s.u.u.clock.flags = flags;
    return s;
}

static __wasi_subscription_t fd_sub(__wasi_userdata_t ud, __wasi_eventtype_t type, __wasi_fd_t fd) {
    __wasi_subscription_t s;
    memset(&s, 0, sizeof s);
    s.userdata = ud;
    s.u.tag = type;
    s.u.u.fd_read.file_descriptor = fd;
    return s;
}

static void poll(const char *label, __wasi_subscription_t *subs, int n) {
    __wasi_event_t ev[8];
    __wasi_size_t got = 0;
    memset(ev, 0xff, sizeof ev);
    __wasi_errno_t err = __wasi_poll_oneoff(subs, ev, n, &got);
    printf("%s: %d events %lu:", label, err, err ? 0 : got);
    for (__wasi_size_t i = 0; !err && i < got; i++)
        printf(" [ud %llu type %d err %d flags %d]", (unsigned long long)ev[i].userdata, ev[i].type,
               ev[i].error, ev[i].fd_readwrite.flags);
    printf("\n");
}

int main(void) {
    __wasi_timestamp_t t1, t2, res;
    ERR("res realtime", __wasi_clock_res_get(__WASI_CLOCKID_REALTIME, &res));
    ERR("res monotonic", __wasi_clock_res_get(__WASI_CLOCKID_MONOTONIC, &res));
    VAL("res positive", res > 0);
    ERR("res process cputime", __wasi_clock_res_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, &res));
    ERR("res thread cputime", __wasi_clock_res_get(__WASI_CLOCKID_THREAD_CPUTIME_ID, &res));
    ERR("time realtime", __wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1, &t1));
    VAL("after 2020", t1 > 1577836800ull * 1000000000ull);
    ERR("time monotonic", __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t1));
    ERR("time monotonic", __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t2));
    VAL("monotonic", t2 >= t1);
    ERR("time process cputime", __wasi_clock_time_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, &t1));

    uint8_t r1[32] = {0}, r2[32] = {0};
    ERR("random", __wasi_random_get(r1, sizeof r1));
    ERR("random", __wasi_random_get(r2, sizeof r2));
    VAL("differ", memcmp(r1, r2, sizeof r1) != 0);
    ERR("random 0 bytes", __wasi_random_get(r1, 0));

    /* poll_oneoff */
    __wasi_subscription_t s[4];
    ERR("time", __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t1));
    s[0] = clock_sub(1, __WASI_CLOCKID_MONOTONIC, 5000000, 0);
    poll("sleep 5ms", s, 1);
    ERR("time", __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t2));
    VAL("slept >= 5ms", t2 - t1 >= 5000000);
    s[0] = clock_sub(2, __WASI_CLOCKID_MONOTONIC, 0, 0);
    poll("zero timeout", s, 1);
    s[0] = clock_sub(3, __WASI_CLOCKID_MONOTONIC, 1000000000, 0);
    s[1] = clock_sub(4, __WASI_CLOCKID_MONOTONIC, 1000000, 0);
    poll("two clocks, the shorter fires", s, 2);
    ERR("time", __wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &t1));
    s[0] = clock_sub(5, __WASI_CLOCKID_MONOTONIC, t1 + 2000000, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    s[1] = clock_sub(6, __WASI_CLOCKID_MONOTONIC, t1 + 4000000000ull, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    poll("absolute deadline", s, 2);
    s[0] = clock_sub(7, __WASI_CLOCKID_MONOTONIC, 1, __WASI_SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME);
    poll("absolute deadline in the past", s, 1);
    ERR("time", __wasi_clock_time_get(__WASI_CLOCKID_REALTIME, 1, &t1));
    s[0] = clock_sub(8, __WASI_CLOCKID_REALTIME, 1000000, 0);
    s[1] = clock_sub(9, __WASI_CLOCKID_MONOTONIC, 3000000000ull, 0);
    poll("realtime relative", s, 2);
    s[0] = clock_sub(10, __WASI_CLOCKID_PROCESS_CPUTIME_ID, 1000, 0);
    s[1] = clock_sub(11, __WASI_CLOCKID_MONOTONIC, 1000, 0);
    poll("cputime clock", s, 2);
    s[0] = fd_sub(12, __WASI_EVENTTYPE_FD_WRITE, 1);
    s[1] = clock_sub(13, __WASI_CLOCKID_MONOTONIC, 1000000000, 0);
    poll("stdout writable", s, 2);
    s[0] = fd_sub(14, __WASI_EVENTTYPE_FD_WRITE, 2);
    s[1] = fd_sub(15, __WASI_EVENTTYPE_FD_WRITE, 1);
    poll("stderr and stdout writable", s, 2);
    s[0] = fd_sub(16, __WASI_EVENTTYPE_FD_READ, 0);
    poll("stdin readable", s, 1);
    s[0] = fd_sub(17, __WASI_EVENTTYPE_FD_READ, 1);
    poll("read on stdout", s, 1);
    s[0] = fd_sub(18, __WASI_EVENTTYPE_FD_WRITE, 0);
    poll("write on stdin", s, 1);
    s[0] = fd_sub(19, __WASI_EVENTTYPE_FD_READ, 99);
    poll("closed fd", s, 1);
    s[0] = fd_sub(20, __WASI_EVENTTYPE_FD_READ, RW);
    poll("directory", s, 1);
    __wasi_fd_t f;
    ERR("open file", open_at(RW, 0, "file.txt", 0, R_RW, 0, &f));
    /* (A file's readiness to read is left out: wasmtime reports it from a background
     * read, so whether it is ready at once varies from run to run.) */
    s[0] = fd_sub(22, __WASI_EVENTTYPE_FD_WRITE, f);
    poll("file writable", s, 1);
    ERR("close", __wasi_fd_close(f));
    poll("no subscriptions", s, 0);

    return 0;
}
