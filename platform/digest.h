/* digest.h - hashing from the platform's crypto library. */
#ifndef M2Z_DIGEST_H
#define M2Z_DIGEST_H

#include <stddef.h>
#include <stdint.h>

struct digest_part {
	const void *data;
	size_t len;
};

/* SHA-256 over the concatenation of N parts, each prefixed with its length
 * (so ("ab","c") and ("a","bc") differ). */
void digest_sha256_parts(const struct digest_part *parts, size_t n, uint8_t out[32]);

#endif
