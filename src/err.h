/* err.h - the one error enum shared by every module.
 *
 * Functions that can fail return 0 (M2Z_OK) or a negative M2Z_ERR_* value;
 * a library's own error is translated into one of these once, at the module
 * that wraps the library, and logged there with the library's text. */
#ifndef M2Z_ERR_H
#define M2Z_ERR_H

enum m2z_err {
	M2Z_OK = 0,
	M2Z_ERR_NOMEM = -1,     /* allocation failed */
	M2Z_ERR_IO = -2,        /* file or socket I/O failed (errno logged) */
	M2Z_ERR_CONFIG = -3,    /* configuration invalid (message already built) */
	M2Z_ERR_PARSE = -4,     /* malformed input (JSON, HTTP, record) */
	M2Z_ERR_TLS = -5,       /* TLS handshake or certificate verification failed */
	M2Z_ERR_NET = -6,       /* connect/resolve failed, peer closed */
	M2Z_ERR_HTTP = -7,      /* HTTP status not 2xx */
	M2Z_ERR_AUTH = -8,      /* token missing, rejected or unusable */
	M2Z_ERR_FULL = -9,      /* bound reached (spool full, window full) */
	M2Z_ERR_CORRUPT = -10,  /* checksum or framing mismatch on disk */
	M2Z_ERR_TOO_BIG = -11,  /* over a configured size limit */
	M2Z_ERR_NOT_FOUND = -12,/* lookup found nothing (JSON pointer, route) */
	M2Z_ERR_INVAL = -13,    /* invalid argument */
	M2Z_ERR_TIMEOUT = -14,  /* deadline passed */
	M2Z_ERR_CLOSED = -15,   /* the object is shutting down */
	M2Z_ERR_AGAIN = -16,    /* nothing available now; try later */
};

/* Static text for an M2Z_ERR_* value; never NULL. */
const char *m2z_strerror(int err);

#endif
