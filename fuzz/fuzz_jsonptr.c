/* fuzz_jsonptr.c - libFuzzer target: RFC 6901 JSON pointers (route.c) and
 * the lookup of a value's text as sent, which is what the agent passes on
 * instead of re-printing cJSON's numbers and strings.
 *
 * Input: the pointer up to the first '\n', then the JSON document. Oracle:
 * both lookups find the same item, and the text found parses back to a
 * value that prints exactly like the item.
 * Seeds: fuzz/corpus/jsonptr/. */
#include "route.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_value(const cJSON *item, const char *text, size_t len)
{
	cJSON *again = cJSON_ParseWithLength(text, len);
	char *a, *b;

	if (!again)
		abort();
	a = cJSON_PrintUnformatted(item);
	b = cJSON_PrintUnformatted(again);
	if (a && b && strcmp(a, b) != 0)
		abort();
	cJSON_free(a);
	cJSON_free(b);
	cJSON_Delete(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *d = (const char *)data, *nl = memchr(d, '\n', size), *doc, *end = NULL, *v = NULL;
	size_t plen, dlen, vlen = 0;
	cJSON *root, *a, *b;

	if (!nl)
		return 0;
	plen = (size_t)(nl - d);
	doc = nl + 1;
	dlen = size - plen - 1;
	root = cJSON_ParseWithLengthOpts(doc, dlen, &end, 0);
	if (!root)
		return 0;
	if (dlen >= 3 && memcmp(doc, "\xEF\xBB\xBF", 3) == 0)
		doc += 3;
	while (doc < end && (unsigned char)*doc <= 32)
		doc++;
	a = json_pointer_get(root, d, plen);
	b = json_pointer_text(root, doc, (size_t)(end - doc), d, plen, &v, &vlen);
	if (b && b != a)
		abort();
	if (b)
		same_value(b, v, vlen);
	cJSON_Delete(root);
	return 0;
}
