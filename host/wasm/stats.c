/*
 * stats.c: a WASI command that summarises the "numbers" array of a JSON file.
 *
 *   input  (argv[1], else /input/input.json):  {"numbers":[3,1,4,1,5,9,2,6]}
 *   stdout (one line):  {"count":8,"sum":31,"min":1,"max":9}
 *
 * Other keys are ignored. The numbers must be integers (optionally negative) that fit
 * in a signed 64-bit integer; the sum wraps. An empty array gives "min":null,"max":null.
 *
 * Exit codes: 0 success; 1 the file cannot be opened or read (stderr names the path);
 * 2 the file has no "numbers" array of integers, or is not a JSON object.
 *
 * The runner preopens the input file's directory read-only at /input, so the default path
 * works inside a wasm-exec Job. No JSON library: a small scanner below skips the values
 * it does not need.
 *
 * Build (see Makefile): clang --target=wasm32-wasi -O2 -Wl,--strip-all stats.c -o stats.wasm
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PATH "/input/input.json"
#define MAX_INPUT (64u << 20) /* refuse files larger than 64 MiB */

static void put(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* Appends the decimal form of v to buf at *len (buf has room for 21 more bytes). */
static void put_i64(char *buf, size_t *len, int64_t v) {
    char tmp[21];
    int i = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[i++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) buf[(*len)++] = '-';
    while (i > 0) buf[(*len)++] = tmp[--i];
}

static void put_str(char *buf, size_t *len, const char *s) {
    size_t n = strlen(s);
    memcpy(buf + *len, s, n);
    *len += n;
}

/* ---- the scanner: p walks over [p, end) ---- */

typedef struct {
    const char *p;
    const char *end;
} scanner;

static void skip_ws(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int peek(scanner *s) {
    skip_ws(s);
    return s->p < s->end ? (unsigned char)*s->p : -1;
}

/* Skips a string starting at '"'; sets *start and *len to its raw (unescaped) body. */
static int skip_string(scanner *s, const char **start, size_t *len) {
    if (peek(s) != '"') return 0;
    const char *b = ++s->p;
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') s->p++;
        s->p++;
    }
    if (s->p >= s->end) return 0;
    if (start) *start = b;
    if (len) *len = (size_t)(s->p - b);
    s->p++;
    return 1;
}

/* Skips any JSON value (object, array, string, number, literal) without checking it closely. */
static int skip_value(scanner *s) {
    int c = peek(s);
    if (c == '"') return skip_string(s, NULL, NULL);
    if (c == '{' || c == '[') {
        int depth = 0;
        while (s->p < s->end) {
            c = (unsigned char)*s->p;
            if (c == '"') {
                if (!skip_string(s, NULL, NULL)) return 0;
                continue;
            }
            s->p++;
            if (c == '{' || c == '[') depth++;
            if (c == '}' || c == ']') {
                if (--depth == 0) return 1;
            }
        }
        return 0;
    }
    if (c < 0) return 0;
    while (s->p < s->end && strchr(",}] \t\r\n", *s->p) == NULL) s->p++;
    return 1;
}

/* Parses an optionally negative integer that fits in int64. */
static int parse_int(scanner *s, int64_t *out) {
    skip_ws(s);
    int neg = 0;
    if (s->p < s->end && *s->p == '-') {
        neg = 1;
        s->p++;
    }
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;
    const char *digits = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        unsigned d = (unsigned)(*s->p - '0');
        if (v > (limit - d) / 10) return 0;
        v = v * 10 + d;
        s->p++;
    }
    if (s->p == digits) return 0;
    /* 1.5 or 1e3 is not an integer */
    if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E')) return 0;
    *out = neg ? (int64_t)((uint64_t)0 - v) : (int64_t)v;
    return 1;
}

static int fail_format(const char *path, const char *why) {
    put(2, "stats: ");
    put(2, path);
    put(2, ": ");
    put(2, why);
    put(2, "\n");
    return 2;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : DEFAULT_PATH;

    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        put(2, "stats: cannot open ");
        put(2, path);
        put(2, ": ");
        put(2, strerror(errno));
        put(2, "\n");
        return 1;
    }
    size_t cap = 4096, len = 0;
    char *data = malloc(cap);
    for (;;) {
        if (data == NULL || len > MAX_INPUT) {
            put(2, "stats: ");
            put(2, path);
            put(2, ": too large\n");
            return 1;
        }
        if (len == cap) {
            cap *= 2;
            data = realloc(data, cap);
            continue;
        }
        ssize_t r = read(fd, data + len, cap - len);
        if (r < 0) {
            put(2, "stats: cannot read ");
            put(2, path);
            put(2, ": ");
            put(2, strerror(errno));
            put(2, "\n");
            return 1;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);

    scanner s = {data, data + len};
    if (peek(&s) != '{') return fail_format(path, "not a JSON object");
    s.p++;

    int found = 0;
    int64_t count = 0, sum = 0, min = 0, max = 0;
    while (!found && peek(&s) == '"') {
        const char *key;
        size_t key_len;
        if (!skip_string(&s, &key, &key_len) || peek(&s) != ':') break;
        s.p++;
        if (key_len == 7 && memcmp(key, "numbers", 7) == 0) {
            if (peek(&s) != '[') return fail_format(path, "\"numbers\" is not an array");
            s.p++;
            if (peek(&s) == ']') {
                s.p++;
            } else {
                for (;;) {
                    int64_t v;
                    if (!parse_int(&s, &v))
                        return fail_format(path, "\"numbers\" holds something other than an integer");
                    if (count == 0 || v < min) min = v;
                    if (count == 0 || v > max) max = v;
                    sum = (int64_t)((uint64_t)sum + (uint64_t)v);
                    count++;
                    int c = peek(&s);
                    s.p++;
                    if (c == ']') break;
                    if (c != ',') return fail_format(path, "\"numbers\" is not a well-formed array");
                }
            }
            found = 1;
            break;
        }
        if (!skip_value(&s)) break;
        if (peek(&s) != ',') break;
        s.p++;
    }
    if (!found) return fail_format(path, "no \"numbers\" array");

    char out[128];
    size_t n = 0;
    put_str(out, &n, "{\"count\":");
    put_i64(out, &n, count);
    put_str(out, &n, ",\"sum\":");
    put_i64(out, &n, sum);
    if (count == 0) {
        put_str(out, &n, ",\"min\":null,\"max\":null}\n");
    } else {
        put_str(out, &n, ",\"min\":");
        put_i64(out, &n, min);
        put_str(out, &n, ",\"max\":");
        put_i64(out, &n, max);
        put_str(out, &n, "}\n");
    }
    out[n] = '\0';
    put(1, out);
    return 0;
}
