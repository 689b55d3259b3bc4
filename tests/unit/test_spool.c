/* test_spool.c - the durable spool: order, acks, restart, torn tails,
 * bounds, locking, concurrency. Each test runs in its own mkdtemp dir.
 * M2Z_SLOW_TESTS=1 adds measurements (300 MB replay, append throughput)
 * and bit flips at every offset instead of every 5th. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "spool_internal.h"

#define FRAME 24                /* bytes of framing per record */

struct fx {
	char dir[64];
	struct spool_opts o;
};

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st; (void)flag; (void)f;
	return remove(p);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/m2z-spool-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->o.dir = f->dir;
	f->o.sync = SPOOL_SYNC_NONE;
	f->o.group_commit_ms = 10;
	f->o.max_bytes = 0;
	f->o.on_full = SPOOL_FULL_BLOCK;
	f->o.segment_bytes = 1 << 20;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char mnt[128];

	snprintf(mnt, sizeof(mnt), "%s/mnt", f->dir);
	umount2(mnt, MNT_DETACH);       /* a tmpfs test that failed half way */
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct spool *sp_open(struct fx *f)
{
	struct spool *sp = NULL;

	assert_int_equal(spool_open(&f->o, &sp), 0);
	assert_non_null(sp);
	return sp;
}

/* Payload "rec-N" padded with 'x' to LEN bytes (LEN >= 12). */
static uint64_t put(struct spool *sp, int n, size_t len)
{
	char b[4096];
	uint64_t seq = 0;

	memset(b, 'x', len);
	snprintf(b, len, "rec-%d", n);
	assert_int_equal(spool_append(sp, b, len, &seq), 0);
	return seq;
}

/* Next record must be "rec-N"; returns its seq. */
static uint64_t expect(struct spool *sp, int n)
{
	struct spool_rec *r = NULL;
	char want[32];
	uint64_t seq;

	assert_int_equal(spool_next(sp, 0, &r), 0);
	snprintf(want, sizeof(want), "rec-%d", n);
	assert_string_equal((const char *)r->data, want);
	seq = r->seq;
	spool_rec_free(r);
	return seq;
}

static void expect_empty(struct spool *sp)
{
	struct spool_rec *r = NULL;

	assert_int_equal(spool_next(sp, 0, &r), M2Z_ERR_AGAIN);
	assert_null(r);
}

static int count_files(const char *dir, const char *ext)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		if (l > strlen(ext) && strcmp(e->d_name + l - strlen(ext), ext) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void seg_name(const struct fx *f, uint64_t first, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%020" PRIu64 ".seg", f->dir, first);
}

static off_t file_size(const char *p)
{
	struct stat st;

	assert_int_equal(stat(p, &st), 0);
	return st.st_size;
}

/* ---------------------------------------------------------------- basics */

static void test_order_and_ack(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	struct spool_stats st;
	uint64_t seqs[10];

	for (int i = 0; i < 10; i++)
		seqs[i] = put(sp, i, 40);
	for (int i = 1; i < 10; i++)
		assert_true(seqs[i] == seqs[i - 1] + 1);
	for (int i = 0; i < 10; i++)
		assert_true(expect(sp, i) == seqs[i]);
	expect_empty(sp);
	spool_get_stats(sp, &st);
	assert_int_equal(st.records, 10);
	assert_int_equal(st.appended, 10);
	assert_int_equal(st.bytes, 10 * (40 + FRAME));
	assert_true(st.oldest_ms > 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(spool_ack(sp, seqs[i]), 0);
	assert_int_equal(spool_ack(sp, seqs[3]), 0);      /* twice: ignored */
	assert_int_equal(spool_ack(sp, 999999), 0);       /* unknown: ignored */
	spool_get_stats(sp, &st);
	assert_int_equal(st.records, 0);
	assert_int_equal(st.oldest_ms, 0);
	spool_free(sp);
}

static void test_ack_out_of_order_restart(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	uint64_t seqs[20];

	f->o.segment_bytes = 8 * (40 + FRAME);   /* 3 segments */
	spool_free(sp);
	sp = sp_open(f);
	for (int i = 0; i < 20; i++)
		seqs[i] = put(sp, i, 40);
	for (int i = 0; i < 20; i++)
		expect(sp, i);
	for (int i = 19; i >= 0; i--)
		if (i % 2)
			assert_int_equal(spool_ack(sp, seqs[i]), 0);
	spool_free(sp);

	sp = sp_open(f);
	for (int i = 0; i < 20; i += 2)
		assert_true(expect(sp, i) == seqs[i]);
	expect_empty(sp);
	spool_free(sp);
}

static void test_rewind(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	uint64_t s[3];

	for (int i = 0; i < 3; i++)
		s[i] = put(sp, i, 30);
	for (int i = 0; i < 3; i++)
		expect(sp, i);
	spool_ack(sp, s[1]);
	spool_rewind(sp);
	expect(sp, 0);
	expect(sp, 2);
	expect_empty(sp);
	spool_free(sp);
}

static void test_rotation_and_deletion(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	uint64_t seqs[30];

	f->o.segment_bytes = 3 * (50 + FRAME);
	sp = sp_open(f);
	for (int i = 0; i < 30; i++)
		seqs[i] = put(sp, i, 50);
	assert_int_equal(count_files(f->dir, ".seg"), 10);
	for (int i = 0; i < 30; i++)
		expect(sp, i);
	/* Acking all of a segment but the write segment deletes it. */
	for (int i = 0; i < 30; i++)
		assert_int_equal(spool_ack(sp, seqs[i]), 0);
	assert_int_equal(count_files(f->dir, ".seg"), 1);
	spool_free(sp);
	assert_int_equal(count_files(f->dir, ".seg"), 1);
	sp = sp_open(f);
	expect_empty(sp);
	spool_free(sp);
}

static void test_seq_increases_across_restarts(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	uint64_t a, b;

	a = put(sp, 0, 20);
	expect(sp, 0);
	spool_ack(sp, a);
	spool_free(sp);
	sp = sp_open(f);
	b = put(sp, 1, 20);
	assert_true(b > a);
	spool_free(sp);
	sp = sp_open(f);
	assert_true(put(sp, 2, 20) > b);
	expect(sp, 1);
	expect(sp, 2);
	spool_free(sp);
}

static void test_sync_always_and_group(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	uint64_t s[6];

	f->o.sync = SPOOL_SYNC_ALWAYS;
	sp = sp_open(f);
	for (int i = 0; i < 3; i++)
		s[i] = put(sp, i, 100);
	expect(sp, 0);
	spool_ack(sp, s[0]);
	spool_free(sp);
	f->o.sync = SPOOL_SYNC_GROUP;
	sp = sp_open(f);
	for (int i = 3; i < 6; i++)
		s[i] = put(sp, i, 100);
	expect(sp, 1);
	spool_ack(sp, s[1]);
	usleep(50 * 1000);      /* a group commit writes the ack log */
	assert_int_equal(spool_sync(sp), 0);
	spool_free(sp);
	sp = sp_open(f);
	for (int i = 2; i < 6; i++)
		expect(sp, i);
	expect_empty(sp);
	spool_free(sp);
}

/* Bitwise reference CRC-32C (Castagnoli, reflected 0x82F63B78). */
static uint32_t ref_crc32c(const uint8_t *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;

	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void *read_file(const char *p, size_t *n);

/* The documented frame: [u32 len][u32 crc32c(body)][u64 seq][i64 ms][payload]. */
static void test_frame_format(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	char path[512];
	size_t n;
	uint8_t *img;
	uint64_t seq = 0;

	assert_int_equal(ref_crc32c((const uint8_t *)"123456789", 9), 0xE3069283u);
	assert_int_equal(spool_append(sp, "123456789", 9, &seq), 0);
	spool_free(sp);
	seg_name(f, seq, path, sizeof(path));
	img = read_file(path, &n);
	assert_int_equal(n, 9 + FRAME);
	assert_int_equal(le32(img), 16 + 9);
	assert_int_equal(le32(img + 4), ref_crc32c(img + 8, 16 + 9));
	assert_int_equal(le32(img + 8), seq);
	assert_memory_equal(img + 24, "123456789", 9);
	free(img);
}

/* ---------------------------------------------------------------- torn tails */

static void write_file(const char *p, const void *d, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, d, n), (ssize_t)n);
	close(fd);
}

static void *read_file(const char *p, size_t *n)
{
	size_t sz = (size_t)file_size(p);
	void *d = malloc(sz ? sz : 1);
	int fd = open(p, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(read(fd, d, sz), (ssize_t)sz);
	close(fd);
	*n = sz;
	return d;
}

/* The spool in F holds exactly N records "rec-0".."rec-N-1" (+ M more). */
static void expect_all(struct fx *f, int n, uint64_t cut)
{
	struct spool *sp = sp_open(f);
	struct spool_stats st;

	spool_get_stats(sp, &st);
	assert_int_equal(st.cut_bytes, cut);
	assert_int_equal(st.records, n);
	for (int i = 0; i < n; i++)
		expect(sp, i);
	expect_empty(sp);
	put(sp, 100, 30);       /* appends still work after the cut */
	expect(sp, 100);
	spool_free(sp);
}

static void test_torn_tail_every_offset(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	char path[512];
	size_t full;
	uint8_t *img;

	for (int i = 0; i < 5; i++)
		put(sp, i, 60);
	spool_free(sp);
	seg_name(f, 1, path, sizeof(path));
	img = read_file(path, &full);
	assert_int_equal(full, 5 * (60 + FRAME));
	size_t four = 4 * (60 + FRAME);
	/* Every proper prefix of the last record; expect_all's own append
	 * is overwritten by the next round's image. */
	log_set_level(LOG_LVL_ERROR);
	for (size_t cut = four; cut < full; cut++) {
		write_file(path, img, cut);
		expect_all(f, 4, cut - four);
	}
	log_set_level(LOG_LVL_INFO);
	free(img);
}

static void build_five(struct fx *f, char *path, size_t cap)
{
	struct spool *sp = sp_open(f);

	for (int i = 0; i < 5; i++)
		put(sp, i, 60);
	spool_free(sp);
	seg_name(f, 1, path, cap);
}

static void append_bytes(const char *p, const void *d, size_t n)
{
	int fd = open(p, O_WRONLY | O_APPEND);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, d, n), (ssize_t)n);
	close(fd);
}

static void test_garbage_tail(void **state)
{
	struct fx *f = *state;
	char path[512];
	uint8_t junk[100];

	build_five(f, path, sizeof(path));
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	append_bytes(path, junk, sizeof(junk));
	expect_all(f, 5, sizeof(junk));
}

static void test_zero_tail(void **state)
{
	struct fx *f = *state;
	char path[512];
	uint8_t z[4096] = { 0 };

	build_five(f, path, sizeof(path));
	append_bytes(path, z, sizeof(z));
	expect_all(f, 5, sizeof(z));
}

static void test_crc_flip_middle_segment(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	char path[512];
	size_t rec = 60 + FRAME;
	uint8_t b;
	int fd;

	f->o.segment_bytes = 3 * rec;
	sp = sp_open(f);
	for (int i = 0; i < 9; i++)
		put(sp, i, 60);
	spool_free(sp);
	assert_int_equal(count_files(f->dir, ".seg"), 3);
	/* Flip a payload byte of the 2nd record of the middle segment (4..6). */
	seg_name(f, 4, path, sizeof(path));
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)(rec + FRAME + 20)), 1);
	b ^= 0x01;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)(rec + FRAME + 20)), 1);
	close(fd);

	/* Only the damaged record is lost: the one after it is kept. The
	 * sealed segment opens from its index, so the damage is found when
	 * the record is read. */
	sp = sp_open(f);
	struct spool_stats st;
	spool_get_stats(sp, &st);
	assert_int_equal(st.corrupt, 0);
	for (int i = 0; i < 9; i++)
		if (i != 4)
			expect(sp, i);
	expect_empty(sp);
	spool_get_stats(sp, &st);
	assert_int_equal(st.corrupt, 1);
	assert_int_equal(st.records, 8);
	assert_int_equal(file_size(path), (off_t)(3 * rec));
	spool_free(sp);
	/* Without the index (a segment from 0.1.0), the scan at open finds it. */
	snprintf(path, sizeof(path), "%s/%020d.idx", f->dir, 4);
	assert_int_equal(unlink(path), 0);
	sp = sp_open(f);
	spool_get_stats(sp, &st);
	assert_int_equal(st.cut_bytes, rec);
	assert_int_equal(st.corrupt, 0);        /* reported by the first open */
	assert_int_equal(st.records, 8);
	spool_free(sp);
	assert_int_equal(file_size(path), 48 + 32);     /* rewritten, with the damage */
}

static void test_torn_ack_log(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	char path[512];
	uint64_t s0 = put(sp, 0, 30);

	put(sp, 1, 30);
	expect(sp, 0);
	spool_ack(sp, s0);
	spool_free(sp);
	snprintf(path, sizeof(path), "%s/%020d.ack", f->dir, 1);
	append_bytes(path, "\0\0\0\0\0\0\0\0\x07\x07\x07", 11);  /* zero entry + torn */
	sp = sp_open(f);
	expect(sp, 1);
	expect_empty(sp);
	spool_free(sp);
	assert_int_equal((file_size(path) - 8) % 12, 0);     /* header + whole entries */
}

/* ---------------------------------------------------------------- damage */

/* stderr into a temporary file, to assert on log lines. */
static int cap_saved = -1, cap_fd = -1;
static char cap_path[64];

static void capture_begin(void)
{
	strcpy(cap_path, "/tmp/m2z-log-XXXXXX");
	cap_fd = mkstemp(cap_path);
	assert_true(cap_fd >= 0);
	cap_saved = dup(2);
	assert_true(dup2(cap_fd, 2) == 2);
}

/* The captured text (free it). */
static char *capture_end(void)
{
	size_t n;
	char *t, *s;

	dup2(cap_saved, 2);
	close(cap_saved);
	close(cap_fd);
	t = read_file(cap_path, &n);
	unlink(cap_path);
	s = malloc(n + 1);
	memcpy(s, t, n);
	s[n] = 0;
	free(t);
	return s;
}

static int count_str(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* Remove every file of DIR (the spool is closed). */
static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
}

/* Every file of a closed spool directory, to restore before each damage. */
struct snap {
	int n;
	char name[16][64];
	uint8_t *data[16];
	size_t len[16];
};

static void snap_take(struct snap *s, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	assert_non_null(d);
	s->n = 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, "lock") == 0)
			continue;
		assert_true(s->n < 16 && strlen(e->d_name) < 64);
		strcpy(s->name[s->n], e->d_name);
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		s->data[s->n] = read_file(p, &s->len[s->n]);
		s->n++;
	}
	closedir(d);
}

/* Restore the snapshot; returns the path of NAME in it (for damage). */
static const char *snap_restore(const struct snap *s, const char *dir, const char *name)
{
	static char found[512];
	char p[512];

	clear_dir(dir);
	for (int i = 0; i < s->n; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, s->name[i]);
		write_file(p, s->data[i], s->len[i]);
	}
	snprintf(found, sizeof(found), "%s/%s", dir, name);
	return found;
}

static size_t snap_len(const struct snap *s, const char *name)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->name[i], name) == 0)
			return s->len[i];
	fail_msg("%s not in the snapshot", name);
	return 0;
}

static void snap_free(struct snap *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->data[i]);
}

/* Read every record "rec-N" (N < max) into SEEN, checking append order;
 * returns how many came. */
static int drain(struct spool *sp, bool *seen, int max)
{
	struct spool_rec *r;
	int n = 0, last = -1;

	while (spool_next(sp, 0, &r) == 0) {
		int k = atoi((const char *)r->data + 4);
		assert_true(k > last && k < max);
		last = k;
		seen[k] = true;
		n++;
		spool_rec_free(r);
	}
	return n;
}

#define REC (60 + FRAME)

/* Offsets tried by the bit-flip tests: every one with M2Z_SLOW_TESTS=1,
 * else every 5th (coprime with REC, so every field of a frame is hit). */
static size_t flip_step(void)
{
	return getenv("M2Z_SLOW_TESTS") ? 1 : 5;
}

/* 15 records "rec-0".."rec-14" in three segments 1, 6, 11 of 5 each. */
static void build_three(struct fx *f)
{
	struct spool *sp;

	f->o.segment_bytes = 5 * REC;
	sp = sp_open(f);
	for (int i = 0; i < 15; i++)
		put(sp, i, 60);
	spool_free(sp);
	assert_int_equal(count_files(f->dir, ".seg"), 3);
}

static void flip_bit(const char *path, size_t off, int bit)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= (uint8_t)(1u << bit);
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

/* Open, drain; every record but LOST (-1: none) must come, and CORRUPT
 * must be the count of records lost. */
static void expect_all_but(struct fx *f, int n, int lost, uint64_t corrupt)
{
	struct spool *sp = sp_open(f);
	struct spool_stats st;
	bool seen[64] = { false };

	assert_int_equal(drain(sp, seen, n), lost >= 0 ? n - 1 : n);
	spool_get_stats(sp, &st);
	assert_int_equal(st.corrupt, corrupt);
	for (int i = 0; i < n; i++)
		assert_true(seen[i] == (i != lost));
	spool_free(sp);
}

#define SEG6 "00000000000000000006.seg"
#define IDX6 "00000000000000000006.idx"

/* A damaged or mismatched index is not trusted: the segment is scanned. */
static void test_flip_every_offset_index(void **state)
{
	struct fx *f = *state;
	struct snap sn;
	size_t n;
	char *log;

	build_three(f);
	snap_take(&sn, f->dir);
	n = snap_len(&sn, IDX6);
	assert_int_equal(n, 48);
	capture_begin();
	for (size_t off = 0; off < n; off++) {
		flip_bit(snap_restore(&sn, f->dir, IDX6), off, (int)(off % 8));
		expect_all_but(f, 15, -1, 0);
	}
	log = capture_end();
	assert_int_equal(count_str(log, "does not match its segment"), (int)n);
	free(log);
	snap_free(&sn);
}

/* One bit flipped at every offset of a completed segment: exactly the
 * record holding it is lost (counted once), every other one comes out,
 * and the next open reports nothing new. Every other offset runs without
 * the segment's index (damage found by the scan at open, else on read). */
static void test_flip_every_offset_segment(void **state)
{
	struct fx *f = *state;
	struct snap sn;
	char idx[512];
	size_t n;

	build_three(f);
	snap_take(&sn, f->dir);
	n = snap_len(&sn, SEG6);
	snprintf(idx, sizeof(idx), "%s/%s", f->dir, IDX6);
	capture_begin();
	for (size_t off = 0; off < n; off += flip_step()) {
		flip_bit(snap_restore(&sn, f->dir, SEG6), off, (int)(off % 8));
		if ((off / flip_step()) % 2)
			assert_int_equal(unlink(idx), 0);
		expect_all_but(f, 15, 5 + (int)(off / REC), 1);
		if (off % 29 < flip_step())     /* reported once, still delivered */
			expect_all_but(f, 15, 5 + (int)(off / REC), 0);
	}
	free(capture_end());
	snap_free(&sn);
}

/* Flips in the first records of the write segment too (the last record of
 * a write segment is a torn tail, indistinguishable from a crash). */
static void test_flip_write_segment(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	struct snap sn;

	for (int i = 0; i < 6; i++)
		put(sp, i, 60);
	spool_free(sp);
	snap_take(&sn, f->dir);
	capture_begin();
	for (size_t off = 0; off < 5 * REC; off += 2 * flip_step() + 1) {
		flip_bit(snap_restore(&sn, f->dir, "00000000000000000001.seg"), off, (int)(off % 8));
		expect_all_but(f, 6, (int)(off / REC), 1);
	}
	free(capture_end());
	snap_free(&sn);
}

/* Bit flips at every offset of an ack log: a damaged entry's record comes
 * again (at-least-once), no other acknowledged record does, nothing is
 * counted as lost. */
static void test_flip_every_offset_ack_log(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	struct snap sn;
	const char *ack = "00000000000000000001.ack";
	uint64_t seqs[10];
	size_t n;

	for (int i = 0; i < 10; i++)
		seqs[i] = put(sp, i, 60);
	for (int i = 0; i < 10; i++)
		expect(sp, i);
	for (int i = 0; i < 10; i += 2)
		spool_ack(sp, seqs[i]);
	spool_free(sp);
	snap_take(&sn, f->dir);
	n = snap_len(&sn, ack);
	assert_int_equal(n, 8 + 5 * 12);
	for (int i = 0; i < sn.n; i++)
		if (strcmp(sn.name[i], ack) == 0)
			assert_memory_equal(sn.data[i], "M2ZACK\x02\n", 8);
	capture_begin();
	for (size_t off = 0; off < n; off++) {
		bool seen[10] = { false };
		int evens = 0;
		struct spool_stats st;

		flip_bit(snap_restore(&sn, f->dir, ack), off, (int)(off % 8));
		sp = sp_open(f);
		drain(sp, seen, 10);
		spool_get_stats(sp, &st);
		spool_free(sp);
		assert_int_equal(st.corrupt, 0);
		for (int i = 0; i < 10; i++) {
			if (i % 2)
				assert_true(seen[i]);
			else
				evens += seen[i];
		}
		/* Header damage is survived; an entry's damage redelivers it. */
		assert_int_equal(evens, off < 8 ? 0 : 1);
		if (off >= 8)
			assert_true(seen[2 * ((off - 8) / 12)]);
	}
	free(capture_end());
	snap_free(&sn);
}

/* 0.1.0's headerless ack log is read and appended in its own form. */
static void test_legacy_ack_log(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	char ack[512];
	uint8_t old[16] = { 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0 };

	for (int i = 0; i < 4; i++)
		put(sp, i, 30);
	spool_free(sp);
	snprintf(ack, sizeof(ack), "%s/%020d.ack", f->dir, 1);
	write_file(ack, old, sizeof(old));
	sp = sp_open(f);
	assert_int_equal(expect(sp, 1), 2);
	spool_ack(sp, 2);
	expect(sp, 3);
	expect_empty(sp);
	spool_free(sp);
	assert_int_equal(file_size(ack), 24);
	sp = sp_open(f);
	expect(sp, 3);
	expect_empty(sp);
	spool_free(sp);
}

/* A middle segment deleted, emptied or cut: the records it held are
 * counted and logged once, with their range; the others all come. */
static void test_middle_segment_lost(void **state)
{
	struct fx *f = *state;
	char p6[512];
	static const struct { int mode; uint64_t lost; } cases[] = { { 0, 5 }, { 1, 5 }, { 2, 3 } };

	build_three(f);
	seg_name(f, 6, p6, sizeof(p6));
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct spool *sp;
		struct spool_stats st;
		bool seen[15] = { false };
		char *log;
		int n;

		if (c > 0) {
			clear_dir(f->dir);
			build_three(f);
		}
		if (cases[c].mode == 0)
			assert_int_equal(unlink(p6), 0);
		else
			assert_int_equal(truncate(p6, cases[c].mode == 1 ? 0 : 2 * REC + 10), 0);
		capture_begin();
		sp = sp_open(f);
		spool_get_stats(sp, &st);
		n = drain(sp, seen, 15);
		spool_free(sp);
		log = capture_end();
		assert_int_equal(st.corrupt, cases[c].lost);
		assert_int_equal(n, 15 - (int)cases[c].lost);
		for (int i = 0; i < 15; i++)
			assert_true(seen[i] == (i < 10 - (int)cases[c].lost || i >= 10));
		assert_non_null(strstr(log, cases[c].lost == 5 ? "records 6..10 (5) are missing" :
				       "records 8..10 (3) are missing"));
		free(log);
		/* Reported once: the next open counts nothing. */
		sp = sp_open(f);
		spool_get_stats(sp, &st);
		assert_int_equal(st.corrupt, 0);
		memset(seen, 0, sizeof(seen));
		assert_int_equal(drain(sp, seen, 15), n);
		spool_free(sp);
	}
}

/* A middle segment fully acknowledged and deleted is no damage; its
 * marker goes when the older segments go. */
static void test_middle_segment_acked(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct spool_stats st;
	uint64_t seqs[15];

	build_three(f);
	sp = sp_open(f);
	for (int i = 0; i < 15; i++)
		seqs[i] = expect(sp, i);
	for (int i = 5; i < 10; i++)
		spool_ack(sp, seqs[i]);
	spool_free(sp);
	assert_int_equal(count_files(f->dir, ".seg"), 2);
	assert_int_equal(count_files(f->dir, ".del"), 1);
	sp = sp_open(f);
	spool_get_stats(sp, &st);
	assert_int_equal(st.corrupt, 0);
	assert_int_equal(st.records, 10);
	for (int i = 0; i < 5; i++)
		spool_ack(sp, seqs[i]);
	spool_free(sp);
	assert_int_equal(count_files(f->dir, ".del"), 0);
	sp = sp_open(f);
	spool_get_stats(sp, &st);
	assert_int_equal(st.corrupt, 0);
	for (int i = 10; i < 15; i++)
		expect(sp, i);
	expect_empty(sp);
	spool_free(sp);
}

/* A 20-digit name over 2^64-1 is ignored with a warning, never parsed
 * into a wrong number. */
static void test_name_overflow(void **state)
{
	struct fx *f = *state;
	char p[512], *log;
	struct spool *sp;

	snprintf(p, sizeof(p), "%s/99999999999999999999.seg", f->dir);
	write_file(p, "junk", 4);
	capture_begin();
	sp = sp_open(f);
	put(sp, 0, 30);
	expect(sp, 0);
	spool_free(sp);
	log = capture_end();
	assert_non_null(strstr(log, "99999999999999999999.seg: number out of range"));
	free(log);
	assert_int_equal(file_size(p), 4);
	seg_name(f, 1, p, sizeof(p));
	assert_int_equal(file_size(p), 30 + FRAME);
}

static void test_dir_is_a_file(void **state)
{
	struct fx *f = *state;
	struct spool_opts o = f->o;
	struct spool *sp = (struct spool *)1;
	char p[512], *log;

	snprintf(p, sizeof(p), "%s/file", f->dir);
	write_file(p, "x", 1);
	o.dir = p;
	capture_begin();
	assert_int_equal(spool_open(&o, &sp), M2Z_ERR_IO);
	log = capture_end();
	assert_null(sp);
	assert_non_null(strstr(log, "is not a directory"));
	assert_null(strstr(log, "File exists"));
	free(log);
}

/* ---------------------------------------------------------------- bounds */

struct appender {
	struct spool *sp;
	int rc;
	volatile int done;
};

static void *append_thread(void *arg)
{
	struct appender *a = arg;
	char b[50];

	memset(b, 'x', sizeof(b));
	snprintf(b, sizeof(b), "rec-%d", 99);
	a->rc = spool_append(a->sp, b, sizeof(b), NULL);
	__atomic_store_n(&a->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* Join A's thread, failing (not hanging) if it is still blocked after 5 s. */
static void join_within(struct appender *a, pthread_t t, struct spool *sp)
{
	for (int i = 0; i < 500 && !__atomic_load_n(&a->done, __ATOMIC_SEQ_CST); i++)
		usleep(10 * 1000);
	if (!__atomic_load_n(&a->done, __ATOMIC_SEQ_CST))
		spool_close(sp);        /* release it so the test can end */
	pthread_join(t, NULL);
	assert_int_equal(a->rc, 0);
}

static void bounded(struct fx *f, enum spool_full mode)
{
	f->o.segment_bytes = 3 * (50 + FRAME);
	f->o.max_bytes = 300;   /* 4 records of 74 bytes */
	f->o.on_full = mode;
}

static void test_full_block(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct appender a = { 0 };
	pthread_t t;
	uint64_t s[4];

	bounded(f, SPOOL_FULL_BLOCK);
	sp = sp_open(f);
	for (int i = 0; i < 4; i++)
		s[i] = put(sp, i, 50);
	a.sp = sp;
	pthread_create(&t, NULL, append_thread, &a);
	usleep(100 * 1000);
	assert_int_equal(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST), 0);
	for (int i = 0; i < 4; i++)
		expect(sp, i);
	spool_ack(sp, s[0]);
	spool_ack(sp, s[1]);
	usleep(50 * 1000);
	assert_int_equal(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST), 0);
	spool_ack(sp, s[2]);    /* first segment complete: deleted */
	join_within(&a, t, sp);
	expect(sp, 99);

	/* Full again (3 live records + 1 more fits, then blocks): close
	 * releases the blocked appender with CLOSED. */
	put(sp, 5, 50);
	put(sp, 6, 50);
	memset(&a, 0, sizeof(a));
	a.sp = sp;
	pthread_create(&t, NULL, append_thread, &a);
	usleep(100 * 1000);
	assert_int_equal(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST), 0);
	spool_close(sp);
	pthread_join(t, NULL);
	assert_int_equal(a.rc, M2Z_ERR_CLOSED);
	spool_free(sp);
}

static void test_full_block_write_segment_acked(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct appender a = { 0 };
	pthread_t t;
	uint64_t s[3];

	/* Everything live is in the write segment: an ack must free it. */
	f->o.segment_bytes = 1000;
	f->o.max_bytes = 3 * (50 + FRAME);
	sp = sp_open(f);
	for (int i = 0; i < 3; i++)
		s[i] = put(sp, i, 50);
	a.sp = sp;
	pthread_create(&t, NULL, append_thread, &a);
	for (int i = 0; i < 3; i++)
		expect(sp, i);
	usleep(50 * 1000);
	for (int i = 0; i < 3; i++)
		spool_ack(sp, s[i]);
	join_within(&a, t, sp);
	expect(sp, 99);
	spool_free(sp);
}

static void test_full_drop_oldest(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct spool_rec *r = NULL;
	struct spool_stats st;

	bounded(f, SPOOL_FULL_DROP_OLDEST);
	log_set_level(LOG_LVL_ERROR);
	sp = sp_open(f);
	for (int i = 0; i < 4; i++)
		put(sp, i, 50);
	assert_int_equal(spool_next(sp, 0, &r), 0);    /* rec-0 handed out */
	put(sp, 4, 50);         /* drops segment 1..3 */
	spool_get_stats(sp, &st);
	/* rec-1 and rec-2 are dropped; rec-0 is in the reader's hands and is
	 * not counted (it is still delivered). */
	assert_int_equal(st.dropped, 2);
	assert_int_equal(st.records, 2);
	assert_string_equal((const char *)r->data, "rec-0");   /* still valid */
	assert_int_equal(spool_ack(sp, r->seq), 0);            /* ignored */
	spool_rec_free(r);
	expect(sp, 3);
	expect(sp, 4);
	expect_empty(sp);
	for (int i = 5; i < 12; i++)
		put(sp, i, 50);
	spool_get_stats(sp, &st);
	assert_true(st.bytes <= 300);
	assert_true(st.dropped > 3);
	spool_free(sp);
	log_set_level(LOG_LVL_INFO);
}

static void test_full_reject_newest(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	char b[50] = "rec-x";

	bounded(f, SPOOL_FULL_REJECT_NEWEST);
	sp = sp_open(f);
	for (int i = 0; i < 4; i++)
		put(sp, i, 50);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), M2Z_ERR_FULL);
	for (int i = 0; i < 4; i++)
		expect(sp, i);
	expect_empty(sp);
	spool_free(sp);
}

static void test_too_big(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	char b[300] = { 0 };

	f->o.segment_bytes = 256;
	sp = sp_open(f);
	assert_int_equal(spool_append(sp, b, 256 - FRAME + 1, NULL), M2Z_ERR_TOO_BIG);
	assert_int_equal(spool_append(sp, b, 256 - FRAME, NULL), 0);
	spool_free(sp);
}

static void test_max_age(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct spool_stats st;

	f->o.max_age_ms = 400;
	log_set_level(LOG_LVL_ERROR);
	sp = sp_open(f);
	for (int i = 0; i < 3; i++)
		put(sp, i, 30);
	usleep(600 * 1000);
	put(sp, 3, 30);
	expect(sp, 3);
	expect_empty(sp);
	spool_get_stats(sp, &st);
	assert_int_equal(st.dropped, 3);
	spool_free(sp);
	f->o.max_age_ms = 0;
	sp = sp_open(f);        /* dropped records stay dropped */
	expect(sp, 3);
	expect_empty(sp);
	spool_free(sp);
	log_set_level(LOG_LVL_INFO);
}

/* ---------------------------------------------------------------- dir, lock */

static void test_dir_mode_and_lock(void **state)
{
	struct fx *f = *state;
	struct spool *sp, *sp2 = (struct spool *)1;
	struct stat st;
	char sub[128], path[512];
	struct spool_opts o = f->o;

	snprintf(sub, sizeof(sub), "%s/new", f->dir);
	o.dir = sub;
	assert_int_equal(spool_open(&o, &sp), 0);
	put(sp, 0, 30);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/%020d.seg", sub, 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(spool_open(&o, &sp2), M2Z_ERR_IO);
	assert_null(sp2);
	spool_free(sp);
	/* A looser existing directory is tightened. */
	chmod(sub, 0755);
	assert_int_equal(spool_open(&o, &sp), 0);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	expect(sp, 0);
	spool_free(sp);
}

/* ---------------------------------------------------------------- disk */

static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	char p[512];
	uint64_t n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode))
			n += (uint64_t)st.st_size;
	}
	closedir(d);
	return n;
}

/* Delivered data does not stay on disk: with a 16 MiB segment size, a
 * drained spool holds less than 64 KiB (+ its ack log), and a restart
 * brings nothing back. */
static void test_reclaim(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	uint64_t written = 0, peak = 0;
	int n = 0;

	f->o.segment_bytes = 16u << 20;
	sp = sp_open(f);
	for (int round = 0; round < 40; round++) {
		uint64_t seqs[100];
		for (int i = 0; i < 100; i++)
			seqs[i] = put(sp, n + i, 200);
		for (int i = 0; i < 100; i++)
			expect(sp, n + i);
		for (int i = 0; i < 100; i++)
			assert_int_equal(spool_ack(sp, seqs[i]), 0);
		n += 100;
		written += 100 * (200 + FRAME);
		uint64_t b = dir_bytes(f->dir);
		if (b > peak)
			peak = b;
	}
	spool_sync(sp);
	printf("reclaim: %" PRIu64 " bytes appended and acked, %" PRIu64 " on disk after, peak %"
	       PRIu64 "\n", written, dir_bytes(f->dir), peak);
	assert_true(dir_bytes(f->dir) < 64 * 1024 + 8 * 1024);
	assert_true(peak < 64 * 1024 + 100 * (200 + FRAME) + 8 * 1024);
	spool_free(sp);
	sp = sp_open(f);
	expect_empty(sp);
	spool_free(sp);
}

/* A write that fails half way (RLIMIT_FSIZE: EFBIG after a short write)
 * leaves no partial frame, is logged once for the episode, and the same
 * append succeeds once the limit is lifted. */
static void test_write_failure_retry(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	struct rlimit old, lim;
	struct spool_stats st;
	char p[512], b[60], *log;

	signal(SIGXFSZ, SIG_IGN);
	for (int i = 0; i < 3; i++)
		put(sp, i, 60);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 3 * REC + 50;    /* the next frame stops after 50 bytes */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	memset(b, 'x', sizeof(b));
	snprintf(b, sizeof(b), "rec-%d", 3);
	capture_begin();
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), M2Z_ERR_IO);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), M2Z_ERR_IO);
	seg_name(f, 1, p, sizeof(p));
	assert_int_equal(file_size(p), 3 * REC);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	log = capture_end();
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(count_str(log, "write to segment 1: File too large"), 1);
	assert_int_equal(count_str(log, "spool writes work again"), 1);
	free(log);
	spool_free(sp);
	sp = sp_open(f);
	spool_get_stats(sp, &st);
	assert_int_equal(st.cut_bytes, 0);
	assert_int_equal(st.corrupt, 0);
	for (int i = 0; i < 4; i++)
		expect(sp, i);
	expect_empty(sp);
	spool_free(sp);
}

/* A small tmpfs at F->dir/mnt, or skip with the reason. */
static void mount_small(struct fx *f, char *mnt, size_t cap)
{
	snprintf(mnt, cap, "%s/mnt", f->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (geteuid() != 0) {
		printf("skipped: not root, cannot mount a small tmpfs\n");
		skip();
	}
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=256k") < 0) {
		printf("skipped: mount tmpfs: %s\n", strerror(errno));
		skip();
	}
}

static void fill(const char *path, size_t n)
{
	char *z = calloc(1, n);

	write_file(path, z, n);
	free(z);
}

/* Paths on a small tmpfs: the spool directory (set in O) and a filler
 * file of FILLER_BYTES that a test removes to give space back. */
struct small_fs {
	char mnt[128], dir[160], filler[200];
};

static void small_fs_setup(struct fx *f, struct small_fs *fs, struct spool_opts *o,
			   size_t filler_bytes)
{
	*o = f->o;
	mount_small(f, fs->mnt, sizeof(fs->mnt));
	snprintf(fs->dir, sizeof(fs->dir), "%s/spool", fs->mnt);
	snprintf(fs->filler, sizeof(fs->filler), "%s/filler", fs->mnt);
	fill(fs->filler, filler_bytes);
	o->dir = fs->dir;
}

/* Disk full: append fails with M2Z_ERR_IO, earlier records are intact,
 * the same append works once space is freed. */
static void test_disk_full(void **state)
{
	struct fx *f = *state;
	struct spool_opts o;
	struct small_fs fs;
	struct spool *sp;
	struct spool_stats st;
	char b[1000], *log;
	int n = 0, rc;

	small_fs_setup(f, &fs, &o, 64 * 1024);
	assert_int_equal(spool_open(&o, &sp), 0);
	capture_begin();
	for (;;) {
		memset(b, 'x', sizeof(b));
		snprintf(b, sizeof(b), "rec-%d", n);
		if ((rc = spool_append(sp, b, sizeof(b), NULL)) != 0)
			break;
		n++;
	}
	assert_int_equal(rc, M2Z_ERR_IO);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), M2Z_ERR_IO);
	assert_int_equal(unlink(fs.filler), 0);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	log = capture_end();
	assert_int_equal(count_str(log, "No space left on device"), 1);
	free(log);
	printf("disk full after %d records of 1000 bytes on a 256 KiB tmpfs\n", n);
	assert_true(n > 100);
	spool_free(sp);
	assert_int_equal(spool_open(&o, &sp), 0);
	spool_get_stats(sp, &st);
	assert_int_equal(st.cut_bytes, 0);
	assert_int_equal(st.corrupt, 0);
	assert_int_equal(st.records, n + 1);
	for (int i = 0; i <= n; i++)
		expect(sp, i);
	expect_empty(sp);
	spool_free(sp);
	assert_int_equal(umount2(fs.mnt, MNT_DETACH), 0);
}

/* The reserve: appends report FULL (never IO) while free space stays
 * above it, acknowledgements can still be written, and appends resume when
 * space comes back. */
static void test_reserve(void **state)
{
	struct fx *f = *state;
	struct spool_opts o;
	struct small_fs fs;
	struct spool *sp;
	struct statvfs vfs;
	char b[1000], *log;
	uint64_t seqs[16], free_b;
	int n = 0, rc;

	small_fs_setup(f, &fs, &o, 32 * 1024);
	o.reserve_bytes = 96 * 1024;
	o.on_full = SPOOL_FULL_REJECT_NEWEST;
	assert_int_equal(spool_open(&o, &sp), 0);
	capture_begin();
	for (;;) {
		memset(b, 'x', sizeof(b));
		snprintf(b, sizeof(b), "rec-%d", n);
		if ((rc = spool_append(sp, b, sizeof(b), n < 16 ? &seqs[n] : NULL)) != 0)
			break;
		n++;
	}
	assert_int_equal(rc, M2Z_ERR_FULL);
	assert_int_equal(statvfs(fs.mnt, &vfs), 0);
	free_b = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	printf("reserve 96 KiB: full after %d records, %" PRIu64 " bytes free\n", n, free_b);
	assert_true(free_b + 8192 >= o.reserve_bytes);
	for (int i = 0; i < 16; i++) {
		expect(sp, i);
		assert_int_equal(spool_ack(sp, seqs[i]), 0);
	}
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), M2Z_ERR_FULL);
	assert_int_equal(unlink(fs.filler), 0);
	assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	log = capture_end();
	assert_int_equal(count_str(log, "below the reserve"), 1);
	assert_null(strstr(log, "No space left"));
	free(log);
	spool_free(sp);
	assert_int_equal(umount2(fs.mnt, MNT_DETACH), 0);
}

/* BLOCK under the reserve waits (re-checking free space), resumes when
 * space comes back from outside, and spool_close() releases a waiter. */
static void test_reserve_block(void **state)
{
	struct fx *f = *state;
	struct spool_opts o;
	struct small_fs fs;
	struct spool *sp;
	char b[1000];
	int rc;

	small_fs_setup(f, &fs, &o, 32 * 1024);
	o.reserve_bytes = 96 * 1024;
	o.on_full = SPOOL_FULL_REJECT_NEWEST;
	assert_int_equal(spool_open(&o, &sp), 0);
	memset(b, 'x', sizeof(b));
	capture_begin();
	while ((rc = spool_append(sp, b, sizeof(b), NULL)) == 0)
		;
	assert_int_equal(rc, M2Z_ERR_FULL);
	spool_free(sp);
	o.on_full = SPOOL_FULL_BLOCK;
	for (int round = 0; round < 2; round++) {
		struct appender a = { NULL, -1, 0 };
		pthread_t t;

		assert_int_equal(spool_open(&o, &sp), 0);
		a.sp = sp;
		pthread_create(&t, NULL, append_thread, &a);
		usleep(300 * 1000);
		assert_false(__atomic_load_n(&a.done, __ATOMIC_SEQ_CST));
		if (round == 0) {       /* spool_close() releases the waiter */
			spool_close(sp);
			pthread_join(t, NULL);
			assert_int_equal(a.rc, M2Z_ERR_CLOSED);
		} else {                /* space back from outside: it goes on */
			assert_int_equal(unlink(fs.filler), 0);
			join_within(&a, t, sp);
		}
		spool_free(sp);
	}
	free(capture_end());
	assert_int_equal(umount2(fs.mnt, MNT_DETACH), 0);
}

/* ---------------------------------------------------------------- concurrency */

#define N_THREADS 4
#define N_PER 3000

struct conc {
	struct spool *sp;
	int id;
};

static void *conc_append(void *arg)
{
	struct conc *c = arg;
	char b[64];

	for (int i = 0; i < N_PER; i++) {
		int n = snprintf(b, sizeof(b), "t%d-%d", c->id, i);
		assert_int_equal(spool_append(c->sp, b, (size_t)n + 1, NULL), 0);
	}
	return NULL;
}

static void test_concurrent(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	pthread_t t[N_THREADS];
	struct conc c[N_THREADS];
	uint8_t *seen = calloc(N_THREADS * N_PER, 1);
	int last[N_THREADS], got = 0;
	uint64_t prev_seq = 0;

	f->o.sync = SPOOL_SYNC_GROUP;
	f->o.segment_bytes = 4096;
	sp = sp_open(f);
	for (int i = 0; i < N_THREADS; i++) {
		c[i].sp = sp;
		c[i].id = i;
		last[i] = -1;
		pthread_create(&t[i], NULL, conc_append, &c[i]);
	}
	while (got < N_THREADS * N_PER) {
		struct spool_rec *r = NULL;
		int tid, n;
		int rc = spool_next(sp, 2000, &r);
		assert_int_equal(rc, 0);
		assert_true(r->seq > prev_seq);
		prev_seq = r->seq;
		assert_int_equal(sscanf((const char *)r->data, "t%d-%d", &tid, &n), 2);
		assert_true(tid >= 0 && tid < N_THREADS && n >= 0 && n < N_PER);
		assert_int_equal(seen[tid * N_PER + n], 0);
		seen[tid * N_PER + n] = 1;
		assert_true(n > last[tid]);     /* per-thread order kept */
		last[tid] = n;
		assert_int_equal(spool_ack(sp, r->seq), 0);
		spool_rec_free(r);
		got++;
	}
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(t[i], NULL);
	expect_empty(sp);
	spool_free(sp);
	assert_true(count_files(f->dir, ".seg") <= 1);
	sp = sp_open(f);
	expect_empty(sp);
	spool_free(sp);
	free(seen);
}

struct reader {
	struct spool *sp;
	int rc;
};

static void *reader_thread(void *arg)
{
	struct reader *r = arg;
	struct spool_rec *rec = NULL;

	r->rc = spool_next(r->sp, 10000, &rec);
	spool_rec_free(rec);
	return NULL;
}

static void test_close_wakes_reader(void **state)
{
	struct fx *f = *state;
	struct spool *sp = sp_open(f);
	struct reader r = { sp, 0 };
	pthread_t t;

	pthread_create(&t, NULL, reader_thread, &r);
	usleep(50 * 1000);
	spool_close(sp);
	pthread_join(t, NULL);
	assert_int_equal(r.rc, M2Z_ERR_CLOSED);
	assert_int_equal(spool_append(sp, "x", 1, NULL), M2Z_ERR_CLOSED);
	spool_free(sp);
}

/* A child appends (sync none) and reports each seq after append returned;
 * SIGKILL at a random point; every reported record must be there. */
static void test_kill9(void **state)
{
	struct fx *f = *state;
	int pfd[2];
	pid_t pid;
	uint64_t seq, last = 0, n = 0;
	struct spool *sp;

	f->o.segment_bytes = 8192;
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[0]);
		log_set_level(LOG_LVL_ERROR);
		if (spool_open(&f->o, &sp) != 0)
			_exit(1);
		for (int i = 0;; i++) {
			char b[100];
			memset(b, 'k', sizeof(b));
			snprintf(b, sizeof(b), "rec-%d", i);
			if (spool_append(sp, b, sizeof(b), &seq) != 0)
				_exit(2);
			if (write(pfd[1], &seq, sizeof(seq)) != sizeof(seq))
				_exit(3);
		}
	}
	close(pfd[1]);
	while (n < 3000 && read(pfd[0], &seq, sizeof(seq)) == sizeof(seq))
		n++;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (read(pfd[0], &seq, sizeof(seq)) == sizeof(seq))
		n++;            /* appends the child completed before dying */
	close(pfd[0]);
	assert_true(n >= 3000);
	sp = sp_open(f);
	for (uint64_t i = 0; i < n; i++) {
		last = expect(sp, (int)i);
		assert_int_equal(last, i + 1);
	}
	spool_free(sp);
}

/* ---------------------------------------------------------------- measurements */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long io_write_bytes(void)
{
	FILE *fp = fopen("/proc/self/io", "r");
	char line[128];
	long long v = -1;

	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "write_bytes: %lld", &v) == 1)
			break;
	fclose(fp);
	return v;
}

static void bench_sync(struct fx *f, enum spool_sync mode, const char *name, int n)
{
	struct spool *sp;
	char b[200];
	long long w0, w1;
	double t0, t1;

	memset(b, 'e', sizeof(b));
	f->o.sync = mode;
	f->o.segment_bytes = 16 << 20;
	f->o.group_commit_ms = 50;
	sp = sp_open(f);
	w0 = io_write_bytes();
	t0 = now_s();
	for (int i = 0; i < n; i++)
		assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	t1 = now_s();
	spool_sync(sp);
	w1 = io_write_bytes();
	spool_free(sp);
	print_message("bench sync=%-6s %7d appends of 200 B: %9.0f/s, file bytes/event %d, "
		      "block-layer write_bytes/event %.1f\n", name, n, n / (t1 - t0),
		      200 + FRAME, w0 >= 0 ? (double)(w1 - w0) / n : -1.0);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	mkdir(f->dir, 0700);
}

static long rss_kib(void)
{
	FILE *fp = fopen("/proc/self/status", "r");
	char line[128];
	long v = -1;

	if (!fp)
		return -1;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	fclose(fp);
	return v;
}

/* In a child so RSS is the spool's, not the writer's. */
static void measure_open(struct fx *f, const char *label)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct spool *sp = NULL;
		struct spool_stats st;
		struct spool_rec *r;
		long r0 = rss_kib();
		double t0 = now_s(), t1, t2, tf = 0;
		uint64_t n = 0;
		if (spool_open(&f->o, &sp) != 0)
			_exit(1);
		t1 = now_s();
		spool_get_stats(sp, &st);
		long r1 = rss_kib();
		while (spool_next(sp, 0, &r) == 0) {
			if (n == 0)
				tf = now_s();
			spool_ack(sp, r->seq);
			spool_rec_free(r);
			n++;
		}
		t2 = now_s();
		print_message("replay %s: %" PRIu64 " records, %.1f MB: open %.3f s, first record "
			      "%.3f s, RSS %ld -> %ld KiB (+%ld); drain+ack %" PRIu64 " in %.2f s, "
			      "RSS %ld KiB\n", label, st.records, (double)st.bytes / 1e6, t1 - t0, tf - t0,
			      r0, r1, r1 - r0, n, t2 - t1, rss_kib());
		spool_free(sp);
		_exit(n == st.records ? 0 : 2);
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void evict_cache(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	while ((e = readdir(d)) != NULL) {
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		int fd = open(p, O_RDONLY);
		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
	closedir(d);
}

/* Start-up with a 256 MiB backlog (issue 12 item 4): M2Z_SLOW_TESTS=1, or
 * alone with M2Z_OPEN_BENCH=1 (runs only this test). */
static void test_open_256mib(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	char b[200];
	const uint64_t target = 256ull << 20;

	if (!getenv("M2Z_SLOW_TESTS") && !getenv("M2Z_OPEN_BENCH")) {
		skip();
		return;
	}
	f->o.segment_bytes = 16 << 20;
	memset(b, 'p', sizeof(b));
	for (int round = 0; round < 2; round++) {
		sp = sp_open(f);
		for (uint64_t done = 0; done < target; done += sizeof(b) + FRAME)
			assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
		spool_free(sp);
		if (round == 1)
			evict_cache(f->dir);
		measure_open(f, round == 0 ? "256 MiB, warm cache" : "256 MiB, cold cache");
	}
}

static void test_slow_measurements(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	char b[200];
	const uint64_t target = 300ull << 20;

	if (!getenv("M2Z_SLOW_TESTS")) {
		skip();
		return;
	}
	bench_sync(f, SPOOL_SYNC_NONE, "none", 200000);
	bench_sync(f, SPOOL_SYNC_GROUP, "group", 200000);
	bench_sync(f, SPOOL_SYNC_ALWAYS, "always", 2000);

	f->o.sync = SPOOL_SYNC_NONE;
	f->o.segment_bytes = 16 << 20;
	f->o.max_bytes = 0;
	memset(b, 'p', sizeof(b));
	sp = sp_open(f);
	for (uint64_t done = 0; done < target; done += sizeof(b) + FRAME)
		assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	spool_free(sp);
	measure_open(f, "warm cache");
	/* measure_open acked everything in the child; rebuild for cold. */
	sp = sp_open(f);
	for (uint64_t done = 0; done < target; done += sizeof(b) + FRAME)
		assert_int_equal(spool_append(sp, b, sizeof(b), NULL), 0);
	spool_free(sp);
	evict_cache(f->dir);
	measure_open(f, "cold cache");
}

/* ---- the reader's buffer against the file (issue 12: fresh records are
 * copied into it at append) ---------------------------------------------- */

#define MIX_OPS 4000
#define MIX_MAX 512
#define MIX_BIG 70000           /* above the reader's 64 KiB buffer */

struct mix_rec {
	uint64_t seq;
	uint32_t len, n;
	bool acked, read;
};

static uint32_t mix_rand(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void mix_fill(uint8_t *b, uint32_t len, uint32_t n)
{
	for (uint32_t i = 0; i < len; i++)
		b[i] = (uint8_t)(n * 31u + i * 7u + (i >> 8));
	memcpy(b, &n, sizeof(n));
}

/* Size of the newest .seg in DIR (the write segment). */
static off_t newest_seg_size(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char best[NAME_MAX + 1] = "", p[PATH_MAX];

	assert_non_null(d);
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	snprintf(p, sizeof(p), "%s/%s", dir, best);
	return file_size(p);
}

/* The next record the reader must return: the first not acked and not
 * read since the last rewind. */
static struct mix_rec *mix_next(struct mix_rec *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!m[i].acked && !m[i].read)
			return &m[i];
	return NULL;
}

static void mix_check(struct spool *sp, struct mix_rec *m, size_t n, uint8_t *want)
{
	struct mix_rec *e = mix_next(m, n);
	struct spool_rec *r = NULL;
	int rc = spool_next(sp, 0, &r);

	if (!e) {
		assert_int_equal(rc, M2Z_ERR_AGAIN);
		return;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(r->seq, e->seq);
	assert_int_equal(r->len, e->len);
	mix_fill(want, e->len, e->n);
	assert_memory_equal(r->data, want, e->len);
	e->read = true;
	spool_rec_free(r);
}

/* Appends (small, some above 64 KiB, some cut short by RLIMIT_FSIZE),
 * reads, acks, rewinds, segment rolls and reclaim in random order: every
 * record read is the one appended, byte for byte, in seq order, and so is
 * everything left after a reopen. */
static void test_reader_buffer_matches_file(void **state)
{
	struct fx *f = *state;
	struct spool *sp;
	struct mix_rec *m = calloc(MIX_OPS, sizeof(*m));
	uint8_t *b = malloc(MIX_BIG), *want = malloc(MIX_BIG);
	struct rlimit old, lim;
	uint32_t x = 0x9e3779b9, n = 0;
	size_t nm = 0, failed = 0, big = 0;

	assert_true(m && b && want);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	f->o.segment_bytes = 256 * 1024;
	sp = sp_open(f);
	for (int op = 0; op < MIX_OPS; op++) {
		uint32_t r = mix_rand(&x) % 100;

		if (r < 40 && nm < MIX_OPS) {
			uint32_t len = mix_rand(&x) % 50 == 0 ? MIX_BIG : 12 + mix_rand(&x) % MIX_MAX;
			bool cut = mix_rand(&x) % 12 == 0;
			uint64_t seq = 0;
			int rc;

			mix_fill(b, len, ++n);
			if (cut) {
				lim = old;
				lim.rlim_cur = (rlim_t)newest_seg_size(f->dir) + 1 + mix_rand(&x) % 20;
				assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
			}
			rc = spool_append(sp, b, len, &seq);
			if (cut)
				assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
			if (rc != 0) {
				assert_true(cut);
				failed++;
				continue;
			}
			big += len == MIX_BIG;
			m[nm++] = (struct mix_rec){ .seq = seq, .len = len, .n = n };
		} else if (r < 80) {
			mix_check(sp, m, nm, want);
		} else if (r < 97) {
			for (size_t i = 0; i < nm; i++)
				if (m[i].read && !m[i].acked && mix_rand(&x) % 2) {
					assert_int_equal(spool_ack(sp, m[i].seq), 0);
					m[i].acked = true;
				}
		} else {
			spool_rewind(sp);
			for (size_t i = 0; i < nm; i++)
				m[i].read = false;
		}
	}
	assert_true(failed > 10 && big > 10);
	spool_free(sp);
	sp = sp_open(f);
	for (size_t i = 0; i < nm; i++)
		m[i].read = false;
	while (mix_next(m, nm))
		mix_check(sp, m, nm, want);
	mix_check(sp, m, nm, want);
	spool_free(sp);
	signal(SIGXFSZ, SIG_DFL);
	free(m);
	free(b);
	free(want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_and_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack_out_of_order_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_and_deletion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seq_increases_across_restarts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_always_and_group, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crc_flip_middle_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_ack_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flip_every_offset_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flip_write_segment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flip_every_offset_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flip_every_offset_ack_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_ack_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_middle_segment_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_middle_segment_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_name_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_is_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_block_write_segment_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_drop_oldest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_reject_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_age, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_mode_and_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_wakes_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_buffer_matches_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_256mib, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_measurements, setup, teardown),
	};

	if (getenv("M2Z_OPEN_BENCH"))
		cmocka_set_test_filter("test_open_256mib");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
