/* fuzz_spool.c - libFuzzer harness for spool recovery: frame scanning and
 * resynchronisation, ack-log parsing (new and 0.1.0 forms), gap detection.
 *
 * Input: [u8 flags][u16 ack_len][u16 split][ack_len bytes of .ack][rest]
 * (little-endian). The rest is written as segment 1; with flags & 1 the
 * bytes from SPLIT on go to a second segment named 100 (a gap to detect);
 * with flags & 2 the ack bytes go to that second segment's log instead,
 * with flags & 4 they are segment 1's index (.idx) instead of an ack log.
 * The spool is opened, drained (every other record acknowledged), closed,
 * opened and drained again: nothing may crash, leak or loop, and the second
 * open must not report new damage.
 *
 * Every record that comes out must have passed its CRC: the harness does not
 * check that itself, the spool does on read.
 *
 * Build by hand (make fuzz builds every fuzz/fuzz_*.c the same way):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iplatform \
 *     fuzz/fuzz_spool.c src/spool.c src/log.c src/err.c -lpthread -o fuzz_spool
 *   mkdir -p /tmp/corpus && ./fuzz_spool /tmp/corpus fuzz/corpus/spool -max_total_time=60
 * (new inputs go to the first directory: keep the seeds here small). */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "spool.h"

static char dir[64];

static void put_file(const char *name, const uint8_t *d, size_t n)
{
	char p[128];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		abort();
	if (n && write(fd, d, n) != (ssize_t)n)
		abort();
	close(fd);
}

static void clear(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	if (!d)
		abort();
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
}

/* Open, drain, ack every other record; returns the corrupt count. */
static uint64_t round_trip(void)
{
	struct spool_opts o = {
		.dir = dir, .sync = SPOOL_SYNC_NONE, .group_commit_ms = 1000,
		.on_full = SPOOL_FULL_REJECT_NEWEST, .segment_bytes = 1u << 20,
	};
	struct spool *sp;
	struct spool_rec *r;
	struct spool_stats st;
	uint64_t last = 0;
	int i = 0;

	if (spool_open(&o, &sp) != 0)
		return 0;
	while (spool_next(sp, 0, &r) == 0) {
		if (r->seq <= last)
			abort();        /* records come out in order, once */
		last = r->seq;
		if (i++ % 2 == 0)
			spool_ack(sp, r->seq);
		spool_rec_free(r);
	}
	spool_append(sp, "fuzz", 4, NULL);
	spool_get_stats(sp, &st);
	spool_free(sp);
	return st.corrupt;
}

static void cleanup(void)
{
	clear();
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t ack_len, split;
	uint8_t flags;

	if (!dir[0]) {
		strcpy(dir, "/tmp/m2z-fuzz-spool-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		log_threshold = -1;     /* damage is logged at ERROR: keep quiet */
		atexit(cleanup);
	}
	if (size < 5)
		return 0;
	flags = data[0];
	ack_len = (size_t)data[1] | (size_t)data[2] << 8;
	split = (size_t)data[3] | (size_t)data[4] << 8;
	data += 5;
	size -= 5;
	if (ack_len > size)
		ack_len = size;
	clear();
	const uint8_t *seg = data + ack_len;
	size_t seg_len = size - ack_len;
	if ((flags & 1) && split < seg_len) {
		put_file("00000000000000000001.seg", seg, split);
		put_file("00000000000000000100.seg", seg + split, seg_len - split);
	} else {
		put_file("00000000000000000001.seg", seg, seg_len);
	}
	if (ack_len)
		put_file((flags & 4) ? "00000000000000000001.idx" :
			 (flags & 2) ? "00000000000000000100.ack" : "00000000000000000001.ack",
			 data, ack_len);
	round_trip();
	if (round_trip() != 0)
		abort();        /* damage is reported once, not at every open */
	return 0;
}
