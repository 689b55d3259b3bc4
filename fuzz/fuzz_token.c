/* fuzz_token.c - libFuzzer target: the token endpoint's JSON body
 * (oauth_parse_token). Oracle: success means a non-empty access token and
 * token type; a failure's message never contains the access token.
 * Seeds: fuzz/corpus/token/ (real token responses and error bodies). */
#include "err.h"
#include "oauth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oauth_token t;
	char err[256];

	memset(&t, 0, sizeof(t));
	err[0] = '\0';
	if (oauth_parse_token((const char *)data, size, &t, err, sizeof(err)) == M2Z_OK) {
		if (!t.access_token || !t.access_token[0] || !t.token_type || !t.token_type[0])
			abort();
		oauth_token_clear(&t);
	} else if (memchr(err, '\0', sizeof(err)) == NULL) {
		abort(); /* the message is always terminated */
	}
	return 0;
}
