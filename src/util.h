/* util.h - small pure helpers shared by several modules. */
#ifndef M2Z_UTIL_H
#define M2Z_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wall clock and monotonic clock in milliseconds. */
int64_t now_ms(void);
int64_t mono_ms(void);

/* "2026-11-23T10:00:00.123Z" into BUF (>= 25 bytes). */
void format_rfc3339_ms(int64_t ms, char *buf, size_t len);

/* Strict UTF-8 check (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const void *data, size_t len);

/* Standard base64 with padding; malloc'ed, NUL-terminated; NULL on OOM. */
char *base64_encode(const void *data, size_t len);

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
