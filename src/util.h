/* util.h - small pure helpers shared by several modules. */
#ifndef M2Z_UTIL_H
#define M2Z_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* System trust store (Debian's ca-certificates): used when no ca_file is
 * configured. */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR "/etc/ssl/certs"

/* Wall clock and monotonic clock in milliseconds. */
int64_t now_ms(void);
int64_t mono_ms(void);

/* pthread_cond_init on CLOCK_MONOTONIC, so a timed wait is not stretched or
 * cut short when the wall clock is stepped: 0 or an errno value. */
int cond_init_monotonic(pthread_cond_t *cond);

/* The CLOCK_MONOTONIC time MS (< 0: 0) from now, for pthread_cond_timedwait
 * on a condition made by cond_init_monotonic. */
struct timespec mono_deadline(int64_t ms);

/* Name the calling thread (at most 15 characters shown), so `top -H`,
 * /proc/<pid>/task/<tid>/comm and the bench's per-thread wake-ups say who
 * is who. */
void thread_name(const char *name);

/* Exponential backoff: the ceiling of the N-th delay (N >= 1) is
 * INITIAL_MS * 2^(N-1), never above MAX_MS (N < 1 counts as 1). */
int64_t backoff_cap_ms(int64_t initial_ms, int64_t max_ms, unsigned n);

/* The delay after CUR_MS in a doubling sequence: 2 * CUR_MS, at most MAX_MS. */
int64_t backoff_next_ms(int64_t cur_ms, int64_t max_ms);

/* Full jitter: uniform in [0, CAP_MS] (CAP_MS < 0: 0). */
int64_t jitter_ms(int64_t cap_ms);

/* A duration as config syntax in its largest exact unit: "0", "90s", "2h",
 * "1500ms", "7d" (parses back to MS). */
void format_duration(int64_t ms, char *buf, size_t len);

/* "2026-11-23T10:00:00.123Z" into BUF (>= 25 bytes). */
void format_rfc3339_ms(int64_t ms, char *buf, size_t len);

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const void *data, size_t len);

/* Standard base64 with padding; malloc'ed, NUL-terminated; NULL on OOM. */
char *base64_encode(const void *data, size_t len);

/* Characters base64 takes for LEN bytes (padding included, no NUL). */
size_t base64_len(size_t len);

/* Writes exactly base64_len(LEN) characters to OUT, no NUL. */
void base64_encode_to(char *out, const void *data, size_t len);

/* Decode standard base64; malloc'ed; NULL on bad input. */
unsigned char *base64_decode(const char *s, size_t *out_len);

/* A decimal TCP port 1..65535 of exactly N characters into *PORT: 0, or
 * M2Z_ERR_PARSE. */
int parse_port(const char *s, size_t n, uint16_t *port);

/* write(2) all N bytes, retrying on EINTR and short writes: 0 or -1 (errno). */
int write_all(int fd, const void *p, size_t n);

/* Uniform random in [0, n) from a per-thread xorshift generator. */
uint64_t rand_below(uint64_t n);

#endif
