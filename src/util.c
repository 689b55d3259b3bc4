#include "util.h"

#include "err.h"

#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);

	if (rc)
		return rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!rc)
		rc = pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
	return rc;
}

void thread_name(const char *name)
{
#ifdef __linux__
	pthread_setname_np(pthread_self(), name);
#else
	(void)name;
#endif
}

struct timespec mono_deadline(int64_t ms)
{
	struct timespec ts;

	if (ms < 0)
		ms = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

int64_t backoff_cap_ms(int64_t initial_ms, int64_t max_ms, unsigned n)
{
	int64_t cap = initial_ms;

	for (unsigned i = 1; i < n && cap < max_ms; i++)
		cap *= 2;
	return cap > max_ms ? max_ms : cap;
}

int64_t backoff_next_ms(int64_t cur_ms, int64_t max_ms)
{
	return cur_ms > max_ms / 2 ? max_ms : cur_ms * 2;
}

int64_t jitter_ms(int64_t cap_ms)
{
	return cap_ms > 0 ? (int64_t)rand_below((uint64_t)cap_ms + 1) : 0;
}

void format_duration(int64_t ms, char *buf, size_t len)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 }, { "s", 1000 }, { "ms", 1 },
	};

	if (ms == 0) {
		snprintf(buf, len, "0");
		return;
	}
	for (size_t i = 0;; i++) {
		if (ms % units[i].ms == 0) {
			snprintf(buf, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
			return;
		}
	}
}

void format_rfc3339_ms(int64_t ms, char *buf, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&s, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03dZ", (int)(ms % 1000));
}

bool utf8_valid(const void *data, size_t len)
{
	const unsigned char *s = data;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1; cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2; cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3; cp = c & 0x07;
		} else {
			return false;
		}
		if (i + n >= len)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

void base64_encode_to(char *out, const void *data, size_t len)
{
	const unsigned char *s = data;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < len ? (uint32_t)s[i + 1] << 8 : 0) |
			     (i + 2 < len ? s[i + 2] : 0);
		*out++ = b64[v >> 18];
		*out++ = b64[(v >> 12) & 63];
		*out++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		*out++ = i + 2 < len ? b64[v & 63] : '=';
	}
}

char *base64_encode(const void *data, size_t len)
{
	char *out = malloc(base64_len(len) + 1);

	if (!out)
		return NULL;
	base64_encode_to(out, data, len);
	out[base64_len(len)] = '\0';
	return out;
}

unsigned char *base64_decode(const char *s, size_t *out_len)
{
	size_t len = strlen(s), o = 0;
	unsigned char *out;
	uint32_t acc = 0;
	int bits = 0;

	out = malloc(len / 4 * 3 + 3);
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		const char *p;
		if (s[i] == '=')
			break;
		p = memchr(b64, s[i], 64);
		if (!p || !s[i]) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (uint32_t)(p - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	*out_len = o;
	return out;
}

uint64_t rand_below(uint64_t n)
{
	static __thread uint64_t x;

	if (n == 0)
		return 0;
	if (x == 0)
		x = (uint64_t)mono_ms() * UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&x;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x % n;
}

int parse_port(const char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return M2Z_ERR_PARSE;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return M2Z_ERR_PARSE;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return M2Z_ERR_PARSE;
	*port = (uint16_t)v;
	return 0;
}

int write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}
