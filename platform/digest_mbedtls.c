/* digest_mbedtls.c - digest.h on mbedTLS (2.28 and 3.x). */
#include "digest.h"

#include <mbedtls/version.h>
#include <mbedtls/sha256.h>

#if MBEDTLS_VERSION_MAJOR >= 3 || defined(MBEDTLS_SHA256_ALT)
#define SHA_START(c) mbedtls_sha256_starts((c), 0)
#define SHA_UPDATE(c, d, l) mbedtls_sha256_update((c), (d), (l))
#define SHA_FINISH(c, o) mbedtls_sha256_finish((c), (o))
#else
#define SHA_START(c) mbedtls_sha256_starts_ret((c), 0)
#define SHA_UPDATE(c, d, l) mbedtls_sha256_update_ret((c), (d), (l))
#define SHA_FINISH(c, o) mbedtls_sha256_finish_ret((c), (o))
#endif

void digest_sha256_parts(const struct digest_part *parts, size_t n, uint8_t out[32])
{
	mbedtls_sha256_context c;

	mbedtls_sha256_init(&c);
	SHA_START(&c);
	for (size_t i = 0; i < n; i++) {
		uint8_t len[8];
		uint64_t l = parts[i].len;
		for (int b = 0; b < 8; b++)
			len[b] = (uint8_t)(l >> (8 * b));
		SHA_UPDATE(&c, len, sizeof(len));
		SHA_UPDATE(&c, parts[i].data, parts[i].len);
	}
	SHA_FINISH(&c, out);
	mbedtls_sha256_free(&c);
}
