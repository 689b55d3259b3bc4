/* buf.h - a growable byte buffer, reused across events to avoid per-event
 * allocation on the hot path. Owned by whoever declared it; buf_free()
 * releases the storage. The content is always NUL-terminated (not counted
 * in len) so text can be used as a C string. */
#ifndef M2Z_BUF_H
#define M2Z_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	char *p;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

int buf_reserve(struct buf *b, size_t extra);          /* 0 or M2Z_ERR_NOMEM */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void buf_reset(struct buf *b) { b->len = 0; if (b->p) b->p[0] = '\0'; }
void buf_free(struct buf *b);

#endif
