/* fuzz_conf.c - libFuzzer target: the config reader (conf_load_string),
 * the route compiler it feeds (routes_new), --check printing, and the
 * option parsers (durations, sizes, booleans) on the same bytes.
 * Seeds: fuzz/corpus/conf/ (the shipped example configs). */
#include "conf.h"
#include "err.h"
#include "log.h"
#include "route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	char *text = malloc(size + 1), err[1024];
	struct config *cfg = NULL;
	struct routes *rt = NULL;
	int64_t ms;
	uint64_t sz;
	bool b;

	if (!text)
		return 0;
	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		log_set_level(LOG_LVL_ERROR);
	}
	memcpy(text, data, size);
	text[size] = '\0';
	/* The same text through the scalar parsers: they take any string. */
	(void)conf_parse_duration_ms(text, &ms);
	(void)conf_parse_size(text, &sz);
	(void)conf_parse_bool(text, &b);
	if (conf_load_string("fuzz.ini", text, &cfg, err, sizeof(err)) == M2Z_OK) {
		conf_print(cfg, devnull);
		if (routes_new(cfg, &rt, err, sizeof(err)) == M2Z_OK) {
			routes_print(rt, devnull);
			routes_free(rt);
		}
		conf_free(cfg);
	} else if (strncmp(err, "fuzz.ini", 8) != 0) {
		abort(); /* every config error names the file */
	}
	free(text);
	return 0;
}
