/* fuzz_http.c - libFuzzer target: the HTTP/1.1 response parser of the token
 * client (https_response_parse: status line, headers, chunked and
 * Content-Length bodies, interim 1xx). Every input is parsed as received so
 * far (eof = false) and as a closed stream (eof = true); a response that is
 * whole without EOF must parse the same with EOF.
 * Seeds: fuzz/corpus/http/ (real token endpoint responses). */
#include "err.h"
#include "https.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct https_response a, b;
	int ra, rb;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	ra = https_response_parse((const char *)data, size, false, &a);
	rb = https_response_parse((const char *)data, size, true, &b);
	if (rb == M2Z_ERR_AGAIN)
		abort(); /* at EOF there is nothing more to wait for */
	if (ra == M2Z_OK && (rb != M2Z_OK || a.status != b.status || a.body_len != b.body_len ||
			     memcmp(a.body, b.body, a.body_len) != 0))
		abort();
	if (ra == M2Z_OK)
		https_response_clear(&a);
	if (rb == M2Z_OK) {
		if (b.body[b.body_len] != '\0')
			abort();
		https_response_clear(&b);
	}
	return 0;
}
