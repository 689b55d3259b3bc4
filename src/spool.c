/* spool.c - durable FIFO on disk: append, replay on start, ack, bounds,
 * fsync policy.
 *
 * On disk (all little-endian):
 *   NNNNNNNNNNNNNNNNNNNN.seg  records [u32 len][u32 crc32c(body)][body],
 *                             body = [u64 seq][i64 append_ms][payload];
 *                             the first record's seq is the file name and
 *                             seqs inside a segment are contiguous.
 *   NNNNNNNNNNNNNNNNNNNN.ack  ACK_MAGIC, then [u64 seq][u32 crc32c(seq)]
 *                             per record acknowledged (or dropped or lost);
 *                             0.1.0 wrote bare u64 seqs without a header:
 *                             such a log is read and appended in that form
 *   NNNNNNNNNNNNNNNNNNNN.idx  written when a segment is sealed: IDX_MAGIC,
 *                             u64 first seq, u64 count, u64 size, i64 first
 *                             append ms, u32 n, n x [u64 from, to, lost_from,
 *                             lost_to] damaged ranges, u32 crc32c of all
 *                             before. If it checks out and the .seg has that
 *                             size, open trusts it instead of re-reading
 *                             every record's CRC (each record's CRC is still
 *                             checked when it is read for delivery)
 *   NNNNNNNNNNNNNNNNNNNN.del  empty: the segment of that name was deleted
 *                             on purpose while an older one was live, so
 *                             the sequence gap after it is no damage
 *   lock                      flock'ed while a process has the spool open
 *
 * In memory, per live segment: first seq, record count, size, the append
 * time of its first record and a bitmap of acknowledged records (1 bit per
 * record). Records themselves are never kept: the reader streams them from
 * disk through a 64 KiB buffer. The highest-named segment is always the
 * write segment and always exists, so sequence numbers survive restarts even
 * when everything was acknowledged.
 *
 * Why CRC-32C (Castagnoli): it detects more error patterns than the
 * Ethernet CRC-32 at record-sized lengths (larger Hamming distance), it is
 * what ext4/btrfs/iSCSI use for the same job, and both x86 (SSE4.2) and
 * ARMv8 (CRC extension) compute it in hardware should the portable
 * slicing-by-8 code below ever show up in a profile.
 *
 * Locking: one mutex guards everything, including the reader's disk reads
 * (sequential, mostly from the page cache). The group-commit thread fsyncs
 * dup()ed descriptors outside the mutex so slow SD-card syncs do not stall
 * the MQTT thread. */
#define LOG_MODULE "spool"
#include "log.h"
#include "err.h"
#include "util.h"
#include "spool_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HDR_LEN 8u              /* u32 len + u32 crc */
#define BODY_HDR_LEN 16u        /* u64 seq + i64 append_ms */
#define FRAME_OVERHEAD (HDR_LEN + BODY_HDR_LEN)
#define RD_BUF (64u * 1024u)
#define NAME_DIGITS 20
#define ACK_FLUSH_MAX 512       /* pending acks per segment before an early write */
#define MIN_SEGMENT_BYTES 64u
#define DEFAULT_GROUP_MS 50
#define ACK_MAGIC "M2ZACK\x02\n"    /* bytes 4..7 non-zero: see ack_is_legacy */
#define ACK_HDR_LEN 8u
#define ACK_REC_LEN 12u         /* u64 seq + u32 crc32c(seq) */
#define LEGACY_REC_LEN 8u
#define RECLAIM_BYTES (64u * 1024u)     /* roll a fully acked write segment */
#define STATVFS_EVERY (64u * 1024u)     /* bytes written between free-space checks */
#define RESERVE_WAIT_MS 1000    /* BLOCK under the reserve: re-check period */
#define IDX_MAGIC "M2ZIDX1\n"
#define IDX_FIXED 44u           /* magic + first + count + size + first_ms + n */
#define IDX_SKIP 32u
#define IDX_MAX_SKIPS 65536u

/* ---------------------------------------------------------------- CRC-32C */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^
				crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

/* Running CRC-32C: start with 0, feed chunks, the result is final. */
static uint32_t crc32c(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	while (n >= 8) {        /* slicing-by-8: 8 table lookups per 8 bytes */
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 |
				     (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
		crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^
		      crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^
		      crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^
		      crc_tab[1][p[6]] ^ crc_tab[0][p[7]];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---------------------------------------------------------------- helpers */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int do_fdatasync(int fd)
{
	int r;

	do
		r = fdatasync(fd);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Buffered positional reads from one file (scan at open, reader cursor). */
struct rdbuf {
	int fd;
	uint8_t *buf;           /* RD_BUF bytes, owned */
	uint64_t start;         /* file offset of buf[0] */
	size_t len;             /* valid bytes in buf */
};

/* Copy [off, off+n) to DST (may be NULL) and/or fold it into *CRC (may be
 * NULL). M2Z_ERR_CORRUPT if the file is shorter. */
static int rd_walk(struct rdbuf *rd, uint64_t off, size_t n, uint8_t *dst, uint32_t *crc)
{
	while (n > 0) {
		if (off < rd->start || off >= rd->start + rd->len) {
			ssize_t r = pread(rd->fd, rd->buf, RD_BUF, (off_t)off);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return M2Z_ERR_IO;
			if (r == 0)
				return M2Z_ERR_CORRUPT;
			rd->start = off;
			rd->len = (size_t)r;
		}
		size_t k = (size_t)(rd->start + rd->len - off);
		const uint8_t *p = rd->buf + (off - rd->start);
		if (k > n)
			k = n;
		if (dst) {
			memcpy(dst, p, k);
			dst += k;
		}
		if (crc)
			*crc = crc32c(*crc, p, k);
		off += k;
		n -= k;
	}
	return 0;
}

/* ---------------------------------------------------------------- state */

struct seg {
	uint64_t first_seq;     /* = file name */
	uint64_t count;         /* records in the file */
	uint64_t size;          /* valid bytes in the file */
	int64_t first_ms;       /* append time of the first record */
	uint64_t n_acked;       /* bits set in acked */
	uint64_t *acked;        /* bitmap by seq - first_seq, owned, grows */
	size_t acked_words;
	uint64_t *pend;         /* acks not yet written to the .ack file, owned */
	size_t n_pend, pend_cap;
	int ack_fd;             /* .ack, opened on first flush; -1 */
	bool ack_dirty;         /* written since the last fsync */
	bool ack_legacy;        /* .ack is in 0.1.0's headerless u64 form */
	struct skip *skips;     /* damaged byte ranges the reader jumps, owned */
	size_t n_skips;
};

/* Damaged bytes [from, to) of a segment file; a valid frame starts at TO.
 * Records [lost_from, lost_to) were in them. */
struct skip {
	uint64_t from, to;
	uint64_t lost_from, lost_to;
};

struct spool {
	struct spool_opts o;
	char *dir;              /* owned copy of o.dir */
	int dir_fd, lock_fd;
	pthread_mutex_t mu;
	pthread_cond_t data;    /* a record was appended */
	pthread_cond_t space;   /* bytes were freed */
	pthread_cond_t tick;    /* wakes the group-commit thread to stop */
	pthread_t thread;
	bool thread_running, stop, closed;
	bool group_armed;       /* the group thread's timer runs (see group_arm) */

	struct seg **segs;      /* live segments, ascending first_seq; last = write */
	size_t n_segs, segs_cap;
	int wfd;                /* write segment, O_APPEND */
	bool w_dirty;           /* write segment written since last fsync */
	bool dir_dirty;         /* directory entries changed since last fsync */
	uint64_t next_seq;

	struct seg *cur;        /* reader cursor segment (never NULL while open) */
	uint64_t cur_off;       /* file offset of the next record to read */
	uint64_t cur_seq;       /* its sequence number */
	struct rdbuf rd;        /* rd.fd is the cursor segment, -1 if not open */

	uint64_t live, bytes, dropped, corrupt, cut_bytes, appended;
	unsigned n_blocked;
	bool warned_full;
	bool io_failing;        /* an append failed; logged, not yet recovered */
	bool ack_failing;       /* the same for ack log writes */
	bool sync_failing;      /* and for group-commit fsyncs */
	bool w_sealed;          /* write segment has bytes past w->size: roll */
	uint64_t free_est;      /* free bytes on the filesystem, estimated */
	uint64_t since_statvfs; /* bytes written since free_est was measured */

	int64_t gone_checked;   /* mono_ms of the last dir_gone() fstat */
	bool gone;              /* the directory or write segment was deleted under us */

	uint64_t *dels;         /* sorted first seqs of .del markers, owned */
	size_t n_dels, dels_cap;
};

static void seg_path(const struct spool *sp, char *out, size_t cap, uint64_t first, const char *ext)
{
	snprintf(out, cap, "%s/%0*" PRIu64 ".%s", sp->dir, NAME_DIGITS, first, ext);
}

static bool seg_is_acked(const struct seg *g, uint64_t seq)
{
	uint64_t i = seq - g->first_seq;

	if (i / 64 >= g->acked_words)
		return false;
	return (g->acked[i / 64] >> (i % 64)) & 1;
}

/* Set the bit; returns 1 if newly set, 0 if it was set, M2Z_ERR_NOMEM. */
static int seg_set_acked(struct seg *g, uint64_t seq)
{
	uint64_t i = seq - g->first_seq;

	if (i / 64 >= g->acked_words) {
		size_t words = g->acked_words ? g->acked_words : 16;
		while (words <= i / 64)
			words *= 2;
		uint64_t *nb = realloc(g->acked, words * sizeof(*nb));
		if (!nb)
			return M2Z_ERR_NOMEM;
		memset(nb + g->acked_words, 0, (words - g->acked_words) * sizeof(*nb));
		g->acked = nb;
		g->acked_words = words;
	}
	if ((g->acked[i / 64] >> (i % 64)) & 1)
		return 0;
	g->acked[i / 64] |= (uint64_t)1 << (i % 64);
	g->n_acked++;
	return 1;
}

static void seg_free(struct seg *g)
{
	if (!g)
		return;
	if (g->ack_fd >= 0)
		close(g->ack_fd);
	free(g->acked);
	free(g->pend);
	free(g->skips);
	free(g);
}

static struct seg *seg_new(uint64_t first)
{
	struct seg *g = calloc(1, sizeof(*g));

	if (g) {
		g->first_seq = first;
		g->ack_fd = -1;
	}
	return g;
}

static struct seg *write_seg(const struct spool *sp)
{
	return sp->n_segs ? sp->segs[sp->n_segs - 1] : NULL;
}

static size_t seg_index(const struct spool *sp, const struct seg *g)
{
	size_t lo = 0, hi = sp->n_segs;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (sp->segs[mid]->first_seq < g->first_seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The live segment holding SEQ, or NULL (deleted, dropped, never existed). */
static struct seg *seg_for_seq(const struct spool *sp, uint64_t seq)
{
	size_t lo = 0, hi = sp->n_segs;

	while (lo < hi) {       /* first segment with first_seq > seq */
		size_t mid = (lo + hi) / 2;
		if (sp->segs[mid]->first_seq <= seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return NULL;
	struct seg *g = sp->segs[lo - 1];
	return seq < g->first_seq + g->count ? g : NULL;
}

static int segs_push(struct spool *sp, struct seg *g)
{
	if (sp->n_segs == sp->segs_cap) {
		size_t cap = sp->segs_cap ? sp->segs_cap * 2 : 16;
		struct seg **n = realloc(sp->segs, cap * sizeof(*n));
		if (!n)
			return M2Z_ERR_NOMEM;
		sp->segs = n;
		sp->segs_cap = cap;
	}
	sp->segs[sp->n_segs++] = g;
	return 0;
}

/* Something is unsynced now: the group-commit thread sleeps without a timer
 * while nothing is (no idle wake-ups), so arm it. One signal per quiet ->
 * busy transition, not per event. Under sp->mu. */
static void group_arm(struct spool *sp)
{
	if (!sp->group_armed) {
		sp->group_armed = true;
		pthread_cond_signal(&sp->tick);
	}
}

static void sync_dir(struct spool *sp)
{
	if (sp->o.sync == SPOOL_SYNC_ALWAYS) {
		if (fsync(sp->dir_fd) < 0)
			log_err("fsync of directory %s: %s", sp->dir, strerror(errno));
	} else {
		sp->dir_dirty = true;   /* group thread or close does it */
		group_arm(sp);
	}
}

/* An append-path write failed: log once per episode (a full disk would
 * otherwise log once per event). */
__attribute__((format(printf, 2, 3)))
static void io_fail(struct spool *sp, const char *fmt, ...)
{
	char msg[PATH_MAX + 128];
	va_list ap;

	if (sp->io_failing)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s; appends fail (the caller retries) until the spool can write again", msg);
	sp->io_failing = true;
}

/* ---------------------------------------------------------------- markers */

/* Record that segment FIRST was deleted on purpose while an older one is
 * still live, so that the next open does not report its records lost. */
static void del_add(struct spool *sp, uint64_t first)
{
	char path[PATH_MAX];
	size_t i = sp->n_dels;
	int fd;

	for (size_t k = 0; k < sp->n_dels; k++)
		if (sp->dels[k] == first)
			return;
	if (sp->n_dels == sp->dels_cap) {
		size_t cap = sp->dels_cap ? sp->dels_cap * 2 : 16;
		uint64_t *n = realloc(sp->dels, cap * sizeof(*n));
		if (!n)
			return;         /* worst case: a false "lost" report */
		sp->dels = n;
		sp->dels_cap = cap;
	}
	seg_path(sp, path, sizeof(path), first, "del");
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_warn("create %s: %s", path, strerror(errno));
		return;
	}
	close(fd);
	while (i > 0 && sp->dels[i - 1] > first) {
		sp->dels[i] = sp->dels[i - 1];
		i--;
	}
	sp->dels[i] = first;
	sp->n_dels++;
}

/* Markers below the oldest live segment explain nothing any more. */
static void del_prune(struct spool *sp)
{
	char path[PATH_MAX];
	uint64_t low = sp->n_segs ? sp->segs[0]->first_seq : UINT64_MAX;
	size_t k = 0;

	while (k < sp->n_dels && sp->dels[k] < low) {
		seg_path(sp, path, sizeof(path), sp->dels[k], "del");
		if (unlink(path) < 0 && errno != ENOENT)
			log_warn("unlink %s: %s", path, strerror(errno));
		k++;
	}
	if (k == 0)
		return;
	memmove(sp->dels, sp->dels + k, (sp->n_dels - k) * sizeof(*sp->dels));
	sp->n_dels -= k;
}

/* Lowest marker in [from, to), or TO if none: the sequence gap [from, to)
 * between two segments is damage up to that point. */
static uint64_t del_explains_from(const struct spool *sp, uint64_t from, uint64_t to)
{
	for (size_t i = 0; i < sp->n_dels; i++)
		if (sp->dels[i] >= from && sp->dels[i] < to)
			return sp->dels[i];
	return to;
}

/* ---------------------------------------------------------------- acks */

/* Open G's .ack for appending; a new (empty) one gets the header. */
static int ack_open(struct spool *sp, struct seg *g)
{
	char path[PATH_MAX];
	struct stat st;

	seg_path(sp, path, sizeof(path), g->first_seq, "ack");
	g->ack_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (g->ack_fd < 0) {
		log_err("open %s: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	if (fstat(g->ack_fd, &st) == 0 && st.st_size == 0) {
		g->ack_legacy = false;
		if (write_all(g->ack_fd, ACK_MAGIC, ACK_HDR_LEN) < 0) {
			log_err("write %s: %s", path, strerror(errno));
			if (ftruncate(g->ack_fd, 0) < 0)
				log_err("truncate %s: %s", path, strerror(errno));
			close(g->ack_fd);
			g->ack_fd = -1;
			return M2Z_ERR_IO;
		}
	}
	sync_dir(sp);
	return 0;
}

static size_t ack_encode(const struct seg *g, uint8_t *p, uint64_t seq)
{
	put_le64(p, seq);
	if (g->ack_legacy)
		return LEGACY_REC_LEN;
	put_le32(p + 8, crc32c(0, p, 8));
	return ACK_REC_LEN;
}

/* Write G's pending acks to its .ack file (not synced). */
static int seg_flush_acks(struct spool *sp, struct seg *g)
{
	uint8_t chunk[ACK_FLUSH_MAX * ACK_REC_LEN];
	size_t done = 0;

	if (g->n_pend == 0)
		return 0;
	if (g->ack_fd < 0 && ack_open(sp, g) < 0)
		return M2Z_ERR_IO;
	while (done < g->n_pend) {
		size_t k = g->n_pend - done, n = 0;
		if (k > ACK_FLUSH_MAX)
			k = ACK_FLUSH_MAX;
		for (size_t i = 0; i < k; i++)
			n += ack_encode(g, chunk + n, g->pend[done + i]);
		if (write_all(g->ack_fd, chunk, n) < 0) {
			/* Kept pending and written again later; a torn entry
			 * is skipped at the next open. Logged once. */
			if (!sp->ack_failing)
				log_err("write of ack log for segment %" PRIu64 ": %s; retried",
					g->first_seq, strerror(errno));
			sp->ack_failing = true;
			return M2Z_ERR_IO;
		}
		done += k;
	}
	if (sp->ack_failing)
		log_info("ack log writes work again");
	sp->ack_failing = false;
	g->n_pend = 0;
	g->ack_dirty = true;
	group_arm(sp);
	return 0;
}

static int flush_all_acks(struct spool *sp)
{
	int rc = 0;

	for (size_t i = 0; i < sp->n_segs; i++)
		if (seg_flush_acks(sp, sp->segs[i]) < 0)
			rc = M2Z_ERR_IO;
	return rc;
}

static int seg_queue_ack(struct seg *g, uint64_t seq)
{
	if (g->n_pend == g->pend_cap) {
		size_t cap = g->pend_cap ? g->pend_cap * 2 : 64;
		uint64_t *n = realloc(g->pend, cap * sizeof(*n));
		if (!n)
			return M2Z_ERR_NOMEM;
		g->pend = n;
		g->pend_cap = cap;
	}
	g->pend[g->n_pend++] = seq;
	return 0;
}

/* ---------------------------------------------------------------- segments */

static void cursor_to(struct spool *sp, struct seg *g)
{
	if (sp->rd.fd >= 0)
		close(sp->rd.fd);
	sp->rd.fd = -1;
	sp->rd.len = 0;
	sp->rd.start = 0;
	sp->cur = g;
	sp->cur_off = 0;
	sp->cur_seq = g ? g->first_seq : 0;
}

/* Create the segment file for NEXT_SEQ and make it the write segment. */
static int seg_create(struct spool *sp)
{
	char path[PATH_MAX];
	struct seg *g = seg_new(sp->next_seq), *prev = write_seg(sp);
	int fd;

	if (!g)
		return M2Z_ERR_NOMEM;
	seg_path(sp, path, sizeof(path), g->first_seq, "seg");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		io_fail(sp, "create %s: %s", path, strerror(errno));
		seg_free(g);
		return M2Z_ERR_IO;
	}
	/* Sequences skipped after the previous segment (acked records of a
	 * cut tail) are no damage. */
	if (prev && prev->first_seq + prev->count < g->first_seq)
		del_add(sp, prev->first_seq + prev->count);
	if (segs_push(sp, g) < 0) {
		close(fd);
		unlink(path);
		seg_free(g);
		return M2Z_ERR_NOMEM;
	}
	/* A new file's name must be durable before records in it count as
	 * durable; rotation is rare, so sync the directory now. */
	if (sp->o.sync != SPOOL_SYNC_NONE && fsync(sp->dir_fd) < 0)
		log_err("fsync of directory %s: %s", sp->dir, strerror(errno));
	if (sp->wfd >= 0) {
		if (sp->o.sync != SPOOL_SYNC_NONE && sp->w_dirty && do_fdatasync(sp->wfd) < 0)
			log_err("fdatasync of segment: %s", strerror(errno));
		close(sp->wfd);
	}
	sp->wfd = fd;
	sp->w_dirty = false;
	sp->w_sealed = false;
	sp->since_statvfs = STATVFS_EVERY;      /* check free space at each roll */
	if (!sp->cur)
		cursor_to(sp, g);
	return 0;
}

/* Remove segment G (never the write segment) from memory and disk. Records
 * in it not acknowledged leave the live count; those not yet handed to the
 * reader are counted as dropped. Records already handed out stay valid in
 * the reader's memory and are normally still delivered, so they are not
 * counted (they would be lost only if the process died before that). */
static void seg_delete(struct spool *sp, struct seg *g)
{
	char path[PATH_MAX];
	size_t idx = seg_index(sp, g);
	uint64_t unacked = g->count - g->n_acked, unread = 0;

	if (sp->cur == g) {
		for (uint64_t s = sp->cur_seq; s < g->first_seq + g->count; s++)
			unread += !seg_is_acked(g, s);
	} else if (sp->cur && idx > seg_index(sp, sp->cur)) {
		unread = unacked;
	}
	sp->dropped += unread;
	sp->live -= unacked;
	sp->bytes -= g->size;
	if (sp->cur == g)
		cursor_to(sp, idx + 1 < sp->n_segs ? sp->segs[idx + 1] : NULL);
	memmove(sp->segs + idx, sp->segs + idx + 1, (sp->n_segs - idx - 1) * sizeof(*sp->segs));
	sp->n_segs--;
	/* Marker first: without it, the next open would report a gap. */
	if (idx > 0)
		del_add(sp, g->first_seq);
	/* Segment first: a leftover .ack without its .seg is harmless (removed
	 * at the next open); the reverse would bring acked records back. */
	seg_path(sp, path, sizeof(path), g->first_seq, "seg");
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("unlink %s: %s", path, strerror(errno));
	seg_path(sp, path, sizeof(path), g->first_seq, "ack");
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("unlink %s: %s", path, strerror(errno));
	seg_path(sp, path, sizeof(path), g->first_seq, "idx");
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("unlink %s: %s", path, strerror(errno));
	if (idx == 0)
		del_prune(sp);
	sync_dir(sp);
	seg_free(g);
	sp->since_statvfs = STATVFS_EVERY;      /* space came back */
	pthread_cond_broadcast(&sp->space);
}

/* Replace the write segment by a new empty one, then delete the old. */
static int retire_write_seg(struct spool *sp)
{
	struct seg *old = write_seg(sp);
	int rc = seg_create(sp);

	if (rc == 0)
		seg_delete(sp, old);
	return rc;
}

static bool seg_done(const struct seg *g)
{
	return g->n_acked == g->count;
}

/* Mark SEQ done (ack or drop). Returns 1 if it was live, 0 if ignored. */
static int mark_done(struct spool *sp, uint64_t seq)
{
	struct seg *g = seg_for_seq(sp, seq);
	int r;

	if (!g)
		return 0;
	r = seg_set_acked(g, seq);
	if (r <= 0)
		return r;
	sp->live--;
	if (seg_done(g) && g != write_seg(sp)) {
		seg_delete(sp, g);      /* its pending acks are moot */
		return 1;
	}
	/* A fully acked write segment is rolled and deleted when an appender
	 * waits for space, or when it is the only segment and has grown past
	 * RECLAIM_BYTES: a drained spool then holds < 64 KiB whatever
	 * segment_bytes is. (With an older segment still live, wait for the
	 * normal roll: each early roll would leave a .del marker.) */
	if (seg_done(g) && (sp->n_blocked > 0 || (sp->n_segs == 1 && g->size >= RECLAIM_BYTES)) &&
	    retire_write_seg(sp) == 0)
		return 1;
	if (seg_queue_ack(g, seq) < 0)
		return M2Z_ERR_NOMEM;
	group_arm(sp);
	if (sp->o.sync == SPOOL_SYNC_ALWAYS) {
		if (seg_flush_acks(sp, g) < 0)
			return M2Z_ERR_IO;
		if (do_fdatasync(g->ack_fd) < 0) {
			log_err("fdatasync of ack log: %s", strerror(errno));
			return M2Z_ERR_IO;
		}
		g->ack_dirty = false;
	} else if (g->n_pend >= ACK_FLUSH_MAX) {
		if (seg_flush_acks(sp, g) < 0)
			return M2Z_ERR_IO;
	}
	return 1;
}

/* ---------------------------------------------------------------- open */

struct frame {
	uint64_t seq, end;      /* sequence; file offset just after the frame */
	int64_t ms;
};

/* Check the frame at OFF of a file of FSIZE bytes whose sequence must lie
 * in [MIN_SEQ, MAX_SEQ]. Returns NULL with *FR set, or why the frame is not
 * valid; *RC becomes M2Z_ERR_IO only when the file could not be read. */
static const char *frame_at(struct rdbuf *rd, uint64_t off, uint64_t fsize, uint64_t min_seq,
			    uint64_t max_seq, struct frame *fr, int *rc)
{
	uint8_t h[FRAME_OVERHEAD];
	uint32_t len, crc;
	int r;

	if (fsize - off < FRAME_OVERHEAD)
		return "short header";
	if ((r = rd_walk(rd, off, sizeof(h), h, NULL)) < 0)
		return *rc = r == M2Z_ERR_IO ? r : 0, "short read";
	len = get_le32(h);
	if (len == 0)
		return "zero-filled";
	if (len < BODY_HDR_LEN)
		return "bad length";
	if (len > fsize - off - HDR_LEN)
		return "short body";
	fr->seq = get_le64(h + 8);
	if (fr->seq < min_seq || fr->seq > max_seq)
		return "sequence mismatch";
	crc = crc32c(0, h + HDR_LEN, BODY_HDR_LEN);
	if ((r = rd_walk(rd, off + FRAME_OVERHEAD, len - BODY_HDR_LEN, NULL, &crc)) < 0)
		return *rc = r == M2Z_ERR_IO ? r : 0, "short read";
	if (crc != get_le32(h + 4))
		return "checksum mismatch";
	fr->ms = (int64_t)get_le64(h + 16);
	fr->end = off + HDR_LEN + len;
	return NULL;
}

/* After damage at FROM, find the next valid frame: a plausible length, a
 * matching CRC and a sequence that fits (at least EXPECT, and at most one
 * more per FRAME_OVERHEAD bytes skipped, since no frame is shorter).
 * Returns 1 with *AT and *FR set, 0 if none, M2Z_ERR_IO. */
static int resync(struct rdbuf *rd, uint64_t from, uint64_t fsize, uint64_t expect,
		  uint64_t last, uint64_t *at, struct frame *fr)
{
	int rc = 0;

	for (uint64_t p = from + 1; p + FRAME_OVERHEAD <= fsize; p++) {
		uint64_t max = expect + (p - from) / FRAME_OVERHEAD;
		if (max > last)
			max = last;
		if (frame_at(rd, p, fsize, expect, max, fr, &rc) == NULL) {
			*at = p;
			return 1;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int seg_add_skip(struct seg *g, uint64_t from, uint64_t to, uint64_t lost_from,
			uint64_t lost_to)
{
	struct skip *n = realloc(g->skips, (g->n_skips + 1) * sizeof(*n));

	if (!n)
		return M2Z_ERR_NOMEM;
	g->skips = n;
	g->skips[g->n_skips].from = from;
	g->skips[g->n_skips].to = to;
	g->skips[g->n_skips].lost_from = lost_from;
	g->skips[g->n_skips].lost_to = lost_to;
	g->n_skips++;
	return 0;
}

/* Walk G's frames, resynchronising after damage (recorded in g->skips);
 * returns the offset after the last valid frame. */
static int walk_frames(struct rdbuf *rd, struct seg *g, uint64_t fsize, uint64_t *end,
		       const char **why)
{
	uint64_t off = 0, at;
	struct frame fr;
	int rc = 0, r;

	while (off < fsize) {
		uint64_t expect = g->first_seq + g->count;
		if ((*why = frame_at(rd, off, fsize, expect, expect, &fr, &rc)) != NULL) {
			if (rc < 0)
				return rc;
			if ((r = resync(rd, off, fsize, expect, UINT64_MAX, &at, &fr)) <= 0) {
				if (r < 0)
					return r;
				break;          /* nothing valid follows: a tail to cut */
			}
			if ((r = seg_add_skip(g, off, at, expect, fr.seq)) < 0)
				return r;
		}
		if (g->count == 0)
			g->first_ms = fr.ms;
		g->count = fr.seq - g->first_seq + 1;
		off = fr.end;
	}
	*end = off;
	return 0;
}

/* Seal G: write its index so the next open need not re-read every CRC.
 * Best effort: without it (or if torn) the next open scans. Not fsynced:
 * a lost index costs a scan, and a torn one fails its CRC. */
static void idx_write(struct spool *sp, const struct seg *g)
{
	char path[PATH_MAX];
	size_t n = IDX_FIXED + g->n_skips * IDX_SKIP + 4;
	uint8_t *b = malloc(n), *p;
	int fd;

	if (!b || g->n_skips > IDX_MAX_SKIPS) {
		free(b);
		return;
	}
	memcpy(b, IDX_MAGIC, 8);
	put_le64(b + 8, g->first_seq);
	put_le64(b + 16, g->count);
	put_le64(b + 24, g->size);
	put_le64(b + 32, (uint64_t)g->first_ms);
	put_le32(b + 40, (uint32_t)g->n_skips);
	p = b + IDX_FIXED;
	for (size_t i = 0; i < g->n_skips; i++, p += IDX_SKIP) {
		put_le64(p, g->skips[i].from);
		put_le64(p + 8, g->skips[i].to);
		put_le64(p + 16, g->skips[i].lost_from);
		put_le64(p + 24, g->skips[i].lost_to);
	}
	put_le32(p, crc32c(0, b, n - 4));
	seg_path(sp, path, sizeof(path), g->first_seq, "idx");
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write_all(fd, b, n) < 0) {
		log_warn("index %s: %s (the next start scans the segment)", path, strerror(errno));
		if (fd >= 0)
			unlink(path);
	}
	if (fd >= 0)
		close(fd);
	free(b);
}

/* Check one damaged range of an index against G (count and size set). */
static bool idx_skip_ok(const struct seg *g, const uint8_t *p, uint64_t prev_to, struct skip *k)
{
	k->from = get_le64(p);
	k->to = get_le64(p + 8);
	k->lost_from = get_le64(p + 16);
	k->lost_to = get_le64(p + 24);
	return k->from >= prev_to && k->from < k->to && k->to + FRAME_OVERHEAD <= g->size &&
	       k->lost_from >= g->first_seq && k->lost_from <= k->lost_to &&
	       k->lost_to < g->first_seq + g->count;
}

/* Load G's index if it is intact and matches a segment file of FSIZE
 * bytes: 1 loaded, 0 absent or not trusted (then scan). */
static int idx_load(struct spool *sp, struct seg *g, uint64_t fsize)
{
	char path[PATH_MAX];
	uint8_t *b = NULL;
	struct stat st;
	uint64_t n_skips, prev_to = 0;
	int fd, ok = 0;

	seg_path(sp, path, sizeof(path), g->first_seq, "idx");
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (fstat(fd, &st) < 0 || st.st_size < (off_t)(IDX_FIXED + 4) ||
	    st.st_size > (off_t)(IDX_FIXED + 4 + IDX_MAX_SKIPS * IDX_SKIP) ||
	    !(b = malloc((size_t)st.st_size)) ||
	    pread(fd, b, (size_t)st.st_size, 0) != (ssize_t)st.st_size)
		goto out;
	n_skips = get_le32(b + 40);
	if (memcmp(b, IDX_MAGIC, 8) != 0 || (uint64_t)st.st_size != IDX_FIXED + n_skips * IDX_SKIP + 4 ||
	    crc32c(0, b, (size_t)st.st_size - 4) != get_le32(b + st.st_size - 4) ||
	    get_le64(b + 8) != g->first_seq || get_le64(b + 24) != fsize)
		goto out;
	g->count = get_le64(b + 16);
	g->size = fsize;
	g->first_ms = (int64_t)get_le64(b + 32);
	if (g->count > fsize / FRAME_OVERHEAD || (g->count == 0) != (fsize == 0) ||
	    /* n_skips <= IDX_MAX_SKIPS: the file size was checked above. */
	    !(g->skips = calloc(n_skips ? (size_t)n_skips : 1, sizeof(*g->skips))))
		goto out;
	for (uint64_t i = 0; i < n_skips; i++, g->n_skips++) {
		if (!idx_skip_ok(g, b + IDX_FIXED + i * IDX_SKIP, prev_to, &g->skips[i]))
			goto out;
		prev_to = g->skips[i].to;
	}
	ok = 1;
out:
	if (!ok) {
		if (b)
			log_warn("index %s does not match its segment; scanning it", path);
		g->count = g->size = 0;
		g->first_ms = 0;
		free(g->skips);
		g->skips = NULL;
		g->n_skips = 0;
	}
	free(b);
	close(fd);
	return ok;
}

/* Count G's valid records; skip damage inside, cut whatever follows the
 * last valid frame. */
static int scan_segment(struct spool *sp, struct seg *g, bool last, uint8_t *buf)
{
	char path[PATH_MAX];
	struct rdbuf rd = { -1, buf, 0, 0 };
	struct stat st;
	uint64_t off = 0, fsize;
	const char *why = NULL;
	int rc = 0;

	seg_path(sp, path, sizeof(path), g->first_seq, "seg");
	rd.fd = open(path, O_RDWR | O_CLOEXEC);
	if (rd.fd < 0 || fstat(rd.fd, &st) < 0) {
		log_err("open %s: %s", path, strerror(errno));
		rc = M2Z_ERR_IO;
		goto out;
	}
	fsize = (uint64_t)st.st_size;
	if (!last && idx_load(sp, g, fsize))
		goto out;       /* sealed and intact: records are checked when read */
	if ((rc = walk_frames(&rd, g, fsize, &off, &why)) < 0) {
		if (rc == M2Z_ERR_IO)
			log_err("read %s: %s", path, strerror(errno));
		goto out;
	}
	g->size = off;
	for (size_t i = 0; i < g->n_skips; i++)
		sp->cut_bytes += g->skips[i].to - g->skips[i].from;
	if (off < fsize) {
		uint64_t cut = fsize - off;
		if (last)
			log_warn("segment %s: torn tail (%s) cut: %" PRIu64 " bytes after %"
				 PRIu64 " records (%" PRIu64 " bytes)", path, why, cut, g->count, off);
		else
			log_err("segment %s: CORRUPT tail (%s) at offset %" PRIu64 " of a completed "
				"segment, no valid record after it: %" PRIu64 " bytes cut",
				path, why, off, cut);
		if (ftruncate(rd.fd, (off_t)off) < 0 ||
		    (sp->o.sync != SPOOL_SYNC_NONE && do_fdatasync(rd.fd) < 0)) {
			log_err("truncate %s: %s", path, strerror(errno));
			rc = M2Z_ERR_IO;
			goto out;
		}
		sp->cut_bytes += cut;
	}
	if (!last && g->count > 0)
		idx_write(sp, g);       /* the next open need not scan it again */
out:
	if (rd.fd >= 0)
		close(rd.fd);
	return rc;
}

/* Records in G's damaged ranges that the ack log does not already mark
 * (an earlier open reported them) are counted, logged and marked done. */
static int account_damage(struct spool *sp, struct seg *g)
{
	for (size_t i = 0; i < g->n_skips; i++) {
		const struct skip *k = &g->skips[i];
		uint64_t lo = k->lost_from, hi = k->lost_to, n = 0;

		for (uint64_t s = lo; s < hi; s++) {
			if (seg_is_acked(g, s))
				continue;
			if (seg_set_acked(g, s) < 0 || seg_queue_ack(g, s) < 0)
				return M2Z_ERR_NOMEM;
			n++;
		}
		if (n) {
			sp->corrupt += n;
			log_err("segment %0*" PRIu64 ".seg: %" PRIu64 " damaged bytes at offset %"
				PRIu64 " skipped; %" PRIu64 " records lost (seq %" PRIu64 "..%" PRIu64
				"), the records after them are kept", NAME_DIGITS, g->first_seq,
				k->to - k->from, k->from, n, lo, hi - 1);
		} else {
			log_info("segment %0*" PRIu64 ".seg: %" PRIu64 " damaged bytes at offset %"
				 PRIu64 " skipped (%s)", NAME_DIGITS, g->first_seq, k->to - k->from,
				 k->from, lo < hi ? "records already reported" : "no record lost");
		}
	}
	return 0;
}

/* 0.1.0's logs have no header: their first word is a sequence number, far
 * below 2^32, so its upper four bytes are zero; ACK_MAGIC's are not. */
static bool ack_is_legacy(const uint8_t *first8)
{
	return (first8[4] | first8[5] | first8[6] | first8[7]) == 0;
}

/* One ack entry's sequence: apply it to G's bitmap. */
static int ack_apply(struct spool *sp, struct seg *g, uint64_t seq, uint64_t *ignored)
{
	if (seq < g->first_seq || seq >= g->first_seq + g->count) {
		(*ignored)++;   /* zero fill after power loss, or cut records */
		/* Acks for records cut at open: never hand out their seqs
		 * again, or a new record would come back already acked. */
		if (seq >= g->first_seq + g->count && seq >= sp->next_seq &&
		    seq - g->first_seq < ((uint64_t)1 << 32))
			sp->next_seq = seq + 1;
		return 0;
	}
	return seg_set_acked(g, seq) < 0 ? M2Z_ERR_NOMEM : 0;
}

/* Entry at OFF: 1 with *SEQ if valid, 0 if damaged, M2Z_ERR_IO. */
static int ack_entry(struct rdbuf *rd, const struct seg *g, uint64_t off, uint64_t *seq)
{
	uint8_t e[ACK_REC_LEN];
	size_t n = g->ack_legacy ? LEGACY_REC_LEN : ACK_REC_LEN;
	int rc = rd_walk(rd, off, n, e, NULL);

	if (rc < 0)
		return rc == M2Z_ERR_IO ? rc : 0;
	*seq = get_le64(e);
	return g->ack_legacy || crc32c(0, e, 8) == get_le32(e + 8);
}

/* Read G's .ack entries from OFF; a damaged entry is skipped by moving to
 * the next offset holding a valid one; trailing damage (a torn write) is
 * cut at *CUT_AT (UINT64_MAX if none). */
static int ack_walk(struct spool *sp, struct seg *g, struct rdbuf *rd, uint64_t off,
		    uint64_t fsize, uint64_t *skipped, uint64_t *ignored, uint64_t *cut_at)
{
	size_t n = g->ack_legacy ? LEGACY_REC_LEN : ACK_REC_LEN;
	uint64_t seq, bad = UINT64_MAX;
	int r;

	*cut_at = UINT64_MAX;
	while (off + n <= fsize) {
		if ((r = ack_entry(rd, g, off, &seq)) < 0)
			return r;
		if (r == 0) {
			if (bad == UINT64_MAX)
				bad = off;
			off++;
			continue;
		}
		if (bad != UINT64_MAX)
			*skipped += off - bad;
		bad = UINT64_MAX;
		if ((r = ack_apply(sp, g, seq, ignored)) < 0)
			return r;
		off += n;
	}
	if (bad != UINT64_MAX || off < fsize)
		*cut_at = bad != UINT64_MAX ? bad : off;
	return 0;
}

/* Read G's .ack file into its bitmap. */
static int load_acks(struct spool *sp, struct seg *g, uint8_t *buf)
{
	char path[PATH_MAX];
	struct rdbuf rd = { -1, buf, 0, 0 };
	struct stat st;
	uint8_t hdr[ACK_HDR_LEN];
	uint64_t fsize, skipped = 0, ignored = 0, cut_at = UINT64_MAX;
	int rc = 0;

	seg_path(sp, path, sizeof(path), g->first_seq, "ack");
	rd.fd = open(path, O_RDWR | O_CLOEXEC);
	if (rd.fd < 0) {
		if (errno == ENOENT)
			return 0;
		log_err("open %s: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	if (fstat(rd.fd, &st) < 0) {
		rc = M2Z_ERR_IO;
		goto out;
	}
	fsize = (uint64_t)st.st_size;
	if (fsize < ACK_HDR_LEN) {
		cut_at = 0;     /* a torn header (or first legacy entry) */
	} else if ((rc = rd_walk(&rd, 0, ACK_HDR_LEN, hdr, NULL)) == 0) {
		g->ack_legacy = ack_is_legacy(hdr);
		if (!g->ack_legacy && memcmp(hdr, ACK_MAGIC, ACK_HDR_LEN) != 0)
			log_warn("ack log %s: damaged header; reading its entries anyway", path);
		rc = ack_walk(sp, g, &rd, g->ack_legacy ? 0 : ACK_HDR_LEN, fsize, &skipped,
			      &ignored, &cut_at);
	}
	if (rc < 0)
		goto out;
	if (skipped)
		log_warn("ack log %s: %" PRIu64 " damaged bytes skipped; the records they "
			 "acknowledged will be delivered again", path, skipped);
	if (cut_at != UINT64_MAX) {
		log_warn("ack log %s: torn or damaged tail (%" PRIu64 " bytes) cut; the records it "
			 "acknowledged will be delivered again", path, fsize - cut_at);
		if (ftruncate(rd.fd, (off_t)cut_at) < 0) {
			rc = M2Z_ERR_IO;
			goto out;
		}
	}
	if (ignored)
		log_warn("ack log %s: %" PRIu64 " entries outside the segment ignored", path, ignored);
out:
	if (rc < 0)
		log_err("read %s: %s", path, rc == M2Z_ERR_IO ? strerror(errno) : m2z_strerror(rc));
	close(rd.fd);
	return rc < 0 ? rc : 0;
}

/* 0 with *FIRST, -1 if NAME is not one of ours, -2 if it looks like ours
 * but the number does not fit in 64 bits. */
static int parse_name(const char *name, const char *ext, uint64_t *first)
{
	size_t n = strlen(name);
	uint64_t v = 0;

	if (n != NAME_DIGITS + 1 + strlen(ext) || name[NAME_DIGITS] != '.' ||
	    strcmp(name + NAME_DIGITS + 1, ext) != 0)
		return -1;
	for (int i = 0; i < NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return -1;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -2;
		v = v * 10 + d;
	}
	*first = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		uint64_t *nv = realloc(*v, c * sizeof(*nv));
		if (!nv)
			return M2Z_ERR_NOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[(*n)++] = x;
	return 0;
}

/* Name E (of type EXT) as a number; warns about an overflowing name. */
static int name_of(const struct spool *sp, const char *name, const char *ext, uint64_t *first)
{
	int r = parse_name(name, ext, first);

	if (r == -2)
		log_warn("%s/%s: number out of range (over 2^64-1); file ignored", sp->dir, name);
	return r;
}

/* Sorted first seqs of *.seg files and of .del markers (into sp->dels);
 * orphan *.ack and *.idx files are removed. */
static int list_segments(struct spool *sp, uint64_t **out, size_t *n_out)
{
	DIR *d = opendir(sp->dir);
	struct dirent *e;
	uint64_t *v = NULL, first;
	size_t n = 0, cap = 0;
	char path[PATH_MAX];
	int rc = 0;

	if (!d) {
		log_err("opendir %s: %s", sp->dir, strerror(errno));
		return M2Z_ERR_IO;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (name_of(sp, e->d_name, "seg", &first) == 0)
			rc = push_u64(&v, &n, &cap, first);
		else if (name_of(sp, e->d_name, "del", &first) == 0)
			rc = push_u64(&sp->dels, &sp->n_dels, &sp->dels_cap, first);
	}
	if (rc < 0) {
		closedir(d);
		free(v);
		return rc;
	}
	rewinddir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	if (sp->n_dels)
		qsort(sp->dels, sp->n_dels, sizeof(*sp->dels), cmp_u64);
	while ((e = readdir(d)) != NULL) {
		if ((name_of(sp, e->d_name, "ack", &first) < 0 &&
		     name_of(sp, e->d_name, "idx", &first) < 0) ||
		    (n && bsearch(&first, v, n, sizeof(*v), cmp_u64)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", sp->dir, e->d_name);
		log_info("removing orphan %s", path);
		unlink(path);
	}
	closedir(d);
	*out = v;
	*n_out = n;
	return 0;
}

/* Records [PREV_END, FIRST) are in no segment: fine where a .del marker
 * says the segment holding them was deleted on purpose, else lost (a
 * segment deleted, emptied or cut by damage). Reported once: a marker is
 * left for the next open. */
static void check_gap(struct spool *sp, uint64_t prev_end, uint64_t first)
{
	uint64_t upto;

	if (first <= prev_end)
		return;
	upto = del_explains_from(sp, prev_end, first);
	if (upto == prev_end)
		return;
	sp->corrupt += upto - prev_end;
	log_err("records %" PRIu64 "..%" PRIu64 " (%" PRIu64 ") are missing before segment %0*"
		PRIu64 ".seg: a segment was deleted, emptied or cut by damage", prev_end,
		upto - 1, upto - prev_end, NAME_DIGITS, first);
	del_add(sp, prev_end);
}

static int load_one(struct spool *sp, uint64_t first, bool last, uint8_t *buf,
		    uint64_t *prev_end)
{
	struct seg *g = seg_new(first);
	int rc;

	if (!g)
		return M2Z_ERR_NOMEM;
	if ((rc = scan_segment(sp, g, last, buf)) == 0 && (rc = load_acks(sp, g, buf)) == 0 &&
	    (rc = account_damage(sp, g)) == 0)
		rc = segs_push(sp, g);
	if (rc < 0) {
		seg_free(g);
		return rc;
	}
	if (sp->n_segs > 1)
		check_gap(sp, *prev_end, first);
	*prev_end = first + g->count;
	if (*prev_end > sp->next_seq)
		sp->next_seq = *prev_end;
	if (first > sp->next_seq)
		sp->next_seq = first;
	sp->bytes += g->size;
	sp->live += g->count - g->n_acked;
	return 0;
}

static int replay(struct spool *sp)
{
	uint64_t *firsts = NULL, prev_end = 1;
	size_t n = 0;
	uint8_t *buf = malloc(RD_BUF);
	int rc;

	if (!buf)
		return M2Z_ERR_NOMEM;
	if ((rc = list_segments(sp, &firsts, &n)) < 0)
		goto out;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (firsts[i] == 0 || firsts[i] < prev_end) {
			log_err("segment %0*" PRIu64 ".seg overlaps its predecessor; ignored",
				NAME_DIGITS, firsts[i]);
			continue;
		}
		rc = load_one(sp, firsts[i], i + 1 == n, buf, &prev_end);
	}
	if (rc < 0)
		goto out;
	/* Drop completed segments before the last; the last stays as the
	 * write segment (it carries the sequence across restarts). */
	for (size_t i = 0; i + 1 < sp->n_segs;) {
		if (seg_done(sp->segs[i]))
			seg_delete(sp, sp->segs[i]);
		else
			i++;
	}
	del_prune(sp);
out:
	free(firsts);
	free(buf);
	return rc;
}

static int prepare_dir(struct spool *sp)
{
	struct stat st;

	if (mkdir(sp->dir, 0700) < 0 && errno != EEXIST) {
		log_err("mkdir %s: %s", sp->dir, strerror(errno));
		return M2Z_ERR_IO;
	}
	if (stat(sp->dir, &st) < 0) {
		log_err("spool.directory %s: %s", sp->dir, strerror(errno));
		return M2Z_ERR_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("spool.directory %s is not a directory", sp->dir);
		return M2Z_ERR_IO;
	}
	if (st.st_mode & 077) {
		/* Events may carry personal data: keep them to our user. */
		if (chmod(sp->dir, 0700) < 0)
			log_warn("spool directory %s has mode %04o and chmod 0700 failed: %s",
				 sp->dir, (unsigned)(st.st_mode & 07777), strerror(errno));
		else
			log_warn("spool directory %s had mode %04o; changed to 0700",
				 sp->dir, (unsigned)(st.st_mode & 07777));
	}
	sp->dir_fd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dir_fd < 0) {
		log_err("open %s: %s", sp->dir, strerror(errno));
		return M2Z_ERR_IO;
	}
	return 0;
}

static int take_lock(struct spool *sp)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/lock", sp->dir);
	sp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (sp->lock_fd < 0) {
		log_err("open %s: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			log_err("spool directory %s is in use by another mqtt2zeebe "
				"(lock %s held); each agent needs its own spool directory",
				sp->dir, path);
		else
			log_err("flock %s: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	return 0;
}

static int open_write_seg(struct spool *sp)
{
	char path[PATH_MAX];
	struct seg *w = write_seg(sp);

	if (!w)
		return seg_create(sp);
	seg_path(sp, path, sizeof(path), w->first_seq, "seg");
	sp->wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (sp->wfd < 0) {
		log_err("open %s: %s", path, strerror(errno));
		return M2Z_ERR_IO;
	}
	return 0;
}

static void *group_thread(void *arg);
static bool dir_gone(struct spool *sp);

static void init_sync(struct spool *sp)
{
	pthread_mutex_init(&sp->mu, NULL);
	cond_init_monotonic(&sp->data);
	cond_init_monotonic(&sp->space);
	cond_init_monotonic(&sp->tick);
}

static int check_opts(const struct spool_opts *o)
{
	if (!o || !o->dir || !*o->dir) {
		log_err("spool directory not set");
		return M2Z_ERR_INVAL;
	}
	if (o->segment_bytes < MIN_SEGMENT_BYTES || o->segment_bytes > UINT32_MAX) {
		log_err("segment size %" PRIu64 " out of range (%u..4GiB)",
			o->segment_bytes, MIN_SEGMENT_BYTES);
		return M2Z_ERR_INVAL;
	}
	if (o->sync > SPOOL_SYNC_ALWAYS || o->on_full > SPOOL_FULL_REJECT_NEWEST ||
	    o->max_age_ms < 0) {
		log_err("invalid spool options");
		return M2Z_ERR_INVAL;
	}
	return 0;
}

int spool_open(const struct spool_opts *opts, struct spool **out)
{
	struct spool *sp;
	int rc;

	*out = NULL;
	if ((rc = check_opts(opts)) < 0)
		return rc;
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return M2Z_ERR_NOMEM;
	sp->o = *opts;
	if (sp->o.group_commit_ms <= 0)
		sp->o.group_commit_ms = DEFAULT_GROUP_MS;
	sp->dir_fd = sp->lock_fd = sp->wfd = sp->rd.fd = -1;
	sp->next_seq = 1;
	init_sync(sp);
	sp->dir = strdup(opts->dir);
	sp->rd.buf = malloc(RD_BUF);
	if (!sp->dir || !sp->rd.buf) {
		rc = M2Z_ERR_NOMEM;
		goto fail;
	}
	if ((rc = prepare_dir(sp)) < 0 || (rc = take_lock(sp)) < 0 ||
	    (rc = replay(sp)) < 0 || (rc = open_write_seg(sp)) < 0)
		goto fail;
	/* Delivered data is not kept across a restart either. */
	if (write_seg(sp)->count > 0 && seg_done(write_seg(sp)))
		retire_write_seg(sp);
	sp->since_statvfs = STATVFS_EVERY;
	cursor_to(sp, sp->segs[0]);
	if (sp->o.sync != SPOOL_SYNC_ALWAYS) {
		if (pthread_create(&sp->thread, NULL, group_thread, sp) != 0) {
			log_err("cannot start the group-commit thread");
			rc = M2Z_ERR_NOMEM;
			goto fail;
		}
		sp->thread_running = true;
	}
	log_info("spool %s: %" PRIu64 " records pending in %zu segments (%" PRIu64
		 " bytes), next seq %" PRIu64, sp->dir, sp->live, sp->n_segs, sp->bytes,
		 sp->next_seq);
	*out = sp;
	return 0;
fail:
	spool_free(sp);
	return rc;
}

/* ---------------------------------------------------------------- group commit */

/* Flush acks under the lock; fsync dup()ed descriptors outside it. */
static void group_commit(struct spool *sp)
{
	int fds[64];
	int n = 0, err = 0;

	flush_all_acks(sp);
	if (sp->o.sync != SPOOL_SYNC_GROUP)
		return;
	/* Segment data before acks: an ack must never be durable for a record
	 * whose bytes are not. */
	if (sp->w_dirty && (fds[n] = dup(sp->wfd)) >= 0)
		n++;
	sp->w_dirty = false;
	for (size_t i = 0; i < sp->n_segs && n < 63; i++) {
		struct seg *g = sp->segs[i];
		if (g->ack_dirty && (fds[n] = dup(g->ack_fd)) >= 0)
			n++;
		g->ack_dirty = false;
	}
	if (sp->dir_dirty && n < 64 && (fds[n] = dup(sp->dir_fd)) >= 0)
		n++;
	sp->dir_dirty = false;
	if (n == 0)
		return;
	pthread_mutex_unlock(&sp->mu);
	for (int i = 0; i < n; i++) {
		if (do_fdatasync(fds[i]) < 0)
			err = errno;
		close(fds[i]);
	}
	pthread_mutex_lock(&sp->mu);
	/* Once per episode, not every group_commit_ms. */
	if (err && !sp->sync_failing)
		log_err("group commit fdatasync: %s", strerror(err));
	else if (!err && sp->sync_failing)
		log_info("group commit fdatasync works again");
	sp->sync_failing = err != 0;
}

/* Is there anything for group_commit() to do? Under sp->mu. */
static bool group_due(const struct spool *sp)
{
	bool group = sp->o.sync == SPOOL_SYNC_GROUP;

	if (group && (sp->w_dirty || sp->dir_dirty))
		return true;
	for (size_t i = 0; i < sp->n_segs; i++)
		if (sp->segs[i]->n_pend || (group && sp->segs[i]->ack_dirty))
			return true;
	return false;
}

static void *group_thread(void *arg)
{
	struct spool *sp = arg;
	struct timespec ts;

	thread_name("m2z-commit");
	pthread_mutex_lock(&sp->mu);
	while (!sp->stop) {
		if (!group_due(sp)) {
			sp->group_armed = false;
			while (!sp->stop && !sp->group_armed)
				pthread_cond_wait(&sp->tick, &sp->mu);
			continue;
		}
		ts = mono_deadline(sp->o.group_commit_ms);
		while (!sp->stop && pthread_cond_timedwait(&sp->tick, &sp->mu, &ts) != ETIMEDOUT)
			;
		dir_gone(sp);   /* while busy: said before the next event; idle: at the next append */
		group_commit(sp);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* ---------------------------------------------------------------- append */

/* Is free space below the reserve once FRAMED more bytes are written?
 * statvfs only every STATVFS_EVERY bytes written, after a segment roll or
 * delete, or when the estimate comes near the reserve. */
static bool below_reserve(struct spool *sp, uint64_t framed)
{
	struct statvfs vfs;

	if (!sp->o.reserve_bytes)
		return false;
	if (sp->since_statvfs >= STATVFS_EVERY || sp->free_est < sp->o.reserve_bytes + framed) {
		if (fstatvfs(sp->dir_fd, &vfs) < 0) {
			log_warn("statvfs %s: %s", sp->dir, strerror(errno));
			return false;   /* cannot tell: let write(2) decide */
		}
		sp->free_est = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
		sp->since_statvfs = 0;
	}
	return sp->free_est < sp->o.reserve_bytes + framed;
}

static void warn_full(struct spool *sp, bool low)
{
	if (sp->warned_full)
		return;
	sp->warned_full = true;
	if (low)
		log_warn("free space for %s is %" PRIu64 " bytes, below the reserve of %" PRIu64
			 ": spool full (on_full policy applies)", sp->dir, sp->free_est,
			 sp->o.reserve_bytes);
	else if (sp->o.on_full == SPOOL_FULL_BLOCK)
		log_warn("spool full (%" PRIu64 " bytes): appends wait for acknowledgements",
			 sp->bytes);
	else if (sp->o.on_full == SPOOL_FULL_REJECT_NEWEST)
		log_warn("spool full (%" PRIu64 " bytes): new records are rejected", sp->bytes);
}

static int drop_oldest(struct spool *sp)
{
	struct seg *old = sp->segs[0];

	log_warn("spool full (%" PRIu64 " bytes): dropping segment %" PRIu64 " with %" PRIu64
		 " unacknowledged records", sp->bytes, old->first_seq, old->count - old->n_acked);
	if (old == write_seg(sp))
		return retire_write_seg(sp);
	seg_delete(sp, old);
	return 0;
}

/* Make room for FRAMED bytes (max_bytes, free-space reserve) per the
 * on_full policy. */
static int make_room(struct spool *sp, uint64_t framed)
{
	for (;;) {
		struct seg *w = write_seg(sp);
		bool over = sp->o.max_bytes && sp->bytes + framed > sp->o.max_bytes;
		bool low = !over && below_reserve(sp, framed);
		struct timespec ts;
		int rc;

		if (sp->closed)
			return M2Z_ERR_CLOSED;
		if (!over && !low)
			break;
		if (w->count > 0 && seg_done(w)) {
			if ((rc = retire_write_seg(sp)) < 0)
				return rc;
			continue;
		}
		warn_full(sp, low);
		switch (sp->o.on_full) {
		case SPOOL_FULL_REJECT_NEWEST:
			return M2Z_ERR_FULL;
		case SPOOL_FULL_DROP_OLDEST:
			if (sp->bytes == 0)
				return M2Z_ERR_FULL;    /* the disk is full of others' data */
			if ((rc = drop_oldest(sp)) < 0)
				return rc;
			break;
		case SPOOL_FULL_BLOCK:
			sp->n_blocked++;
			if (low) {      /* space may come back from outside: re-check */
				ts = mono_deadline(RESERVE_WAIT_MS);
				pthread_cond_timedwait(&sp->space, &sp->mu, &ts);
				sp->since_statvfs = STATVFS_EVERY;
			} else {
				pthread_cond_wait(&sp->space, &sp->mu);
			}
			sp->n_blocked--;
			break;
		}
	}
	sp->warned_full = false;
	return 0;
}

/* A write to the write segment failed: cut what it left so the file ends
 * at a frame boundary; if even that fails, seal it (the next append rolls)
 * and never reuse the sequence number: a complete frame left behind would
 * come back at the next open, and must not clash with the retried record
 * (it is then a duplicate, which at-least-once allows). */
static void cut_partial(struct spool *sp, struct seg *w)
{
	if (ftruncate(sp->wfd, (off_t)w->size) < 0) {
		log_err("cannot cut the partial record from segment %" PRIu64 ": %s; the next "
			"append starts a new segment", w->first_seq, strerror(errno));
		sp->w_sealed = true;
		sp->next_seq++;
	}
}

/* The frame just written at the end of W is also what the reader will
 * read next when its cursor is on W: put it in the reader's buffer too,
 * which holds [start, start + len) of the cursor's file, so the forwarder
 * takes a fresh record from memory instead of one more pread. A cursor at
 * the end of the file needs nothing that the buffer holds: start over. */
static void rd_extend(struct spool *sp, struct seg *w, const uint8_t *h, const void *rec, size_t len)
{
	struct rdbuf *rd = &sp->rd;

	if (sp->cur != w)
		return;
	if (sp->cur_off == w->size) {
		rd->start = w->size;
		rd->len = 0;
	}
	if (rd->start + rd->len != w->size || rd->len + FRAME_OVERHEAD + len > RD_BUF)
		return;
	memcpy(rd->buf + rd->len, h, FRAME_OVERHEAD);
	memcpy(rd->buf + rd->len + FRAME_OVERHEAD, rec, len);
	rd->len += FRAME_OVERHEAD + len;
}

static int write_record(struct spool *sp, const void *rec, size_t len, int64_t ms)
{
	struct seg *w = write_seg(sp);
	uint8_t h[FRAME_OVERHEAD];
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)rec, len } };
	size_t total = sizeof(h) + len, done = 0;

	put_le32(h, (uint32_t)(BODY_HDR_LEN + len));
	put_le64(h + 8, sp->next_seq);
	put_le64(h + 16, (uint64_t)ms);
	put_le32(h + 4, crc32c(crc32c(0, h + 8, BODY_HDR_LEN), rec, len));
	/* One writev per record; loop only for the rare short write. */
	while (done < total) {
		ssize_t r = writev(sp->wfd, iov, 2);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			io_fail(sp, "write to segment %" PRIu64 ": %s", w->first_seq,
				r < 0 ? strerror(errno) : "no progress");
			cut_partial(sp, w);
			return M2Z_ERR_IO;
		}
		done += (size_t)r;
		for (int i = 0; i < 2 && r > 0; i++) {
			size_t k = (size_t)r < iov[i].iov_len ? (size_t)r : iov[i].iov_len;
			iov[i].iov_base = (uint8_t *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			r -= (ssize_t)k;
		}
	}
	/* Not durable means not appended: the caller retries the same record. */
	if (sp->o.sync == SPOOL_SYNC_ALWAYS && do_fdatasync(sp->wfd) < 0) {
		io_fail(sp, "fdatasync of segment %" PRIu64 ": %s", w->first_seq, strerror(errno));
		cut_partial(sp, w);
		return M2Z_ERR_IO;
	}
	if (w->count == 0)
		w->first_ms = ms;
	rd_extend(sp, w, h, rec, len);
	w->count++;
	w->size += total;
	sp->bytes += total;
	sp->since_statvfs += total;
	sp->free_est -= sp->free_est < total ? sp->free_est : total;
	if (sp->io_failing)
		log_info("spool writes work again (segment %" PRIu64 ")", w->first_seq);
	sp->io_failing = false;
	return 0;
}

/* Has the spool directory (rm -rf) or the write segment been deleted under
 * us? Appends there would be acknowledged into files a restart cannot see.
 * One fstat pair at most every GONE_CHECK_MS; once gone, always gone (a
 * restart opens a fresh directory). Under sp->mu. */
#define GONE_CHECK_MS 100
static bool dir_gone(struct spool *sp)
{
	struct stat d, f;
	int64_t now;

	if (sp->gone)
		return true;
	now = mono_ms();
	if (now - sp->gone_checked < GONE_CHECK_MS)
		return false;
	sp->gone_checked = now;
	if ((fstat(sp->dir_fd, &d) == 0 && d.st_nlink == 0) ||
	    (sp->wfd >= 0 && fstat(sp->wfd, &f) == 0 && f.st_nlink == 0)) {
		sp->gone = true;
		log_err("the spool directory %s (or its write segment) was deleted under the running "
			"agent: no event is acknowledged from now on (the broker keeps them); restart "
			"the agent to continue on a fresh directory", sp->dir);
	}
	return sp->gone;
}

int spool_append(struct spool *sp, const void *rec, size_t len, uint64_t *seq_out)
{
	uint64_t framed = FRAME_OVERHEAD + (uint64_t)len;
	struct seg *w;
	int rc;

	if (framed > sp->o.segment_bytes || (sp->o.max_bytes && framed > sp->o.max_bytes))
		return M2Z_ERR_TOO_BIG;
	pthread_mutex_lock(&sp->mu);
	if (dir_gone(sp)) {
		rc = M2Z_ERR_IO;
		goto out;
	}
	if ((rc = make_room(sp, framed)) < 0)
		goto out;
	w = write_seg(sp);
	/* Rotate when full, or when seqs would not be contiguous in the file
	 * (next_seq was raised past a cut at open). */
	if ((w->size > 0 && w->size + framed > sp->o.segment_bytes) || sp->w_sealed ||
	    w->first_seq + w->count != sp->next_seq) {
		struct seg *old = w;
		if ((rc = seg_create(sp)) < 0)
			goto out;
		if (seg_done(old))
			seg_delete(sp, old);
		else
			idx_write(sp, old);
	}
	if ((rc = write_record(sp, rec, len, now_ms())) < 0)
		goto out;
	if (seq_out)
		*seq_out = sp->next_seq;
	sp->next_seq++;
	sp->live++;
	sp->appended++;
	sp->w_dirty = sp->o.sync != SPOOL_SYNC_ALWAYS;
	if (sp->w_dirty)
		group_arm(sp);
	pthread_cond_signal(&sp->data);
out:
	pthread_mutex_unlock(&sp->mu);
	return rc;
}

/* ---------------------------------------------------------------- read */

/* The rest of the cursor segment is unreadable: drop its records. */
static void cut_cursor_seg(struct spool *sp, const char *why)
{
	struct seg *g = sp->cur;
	uint64_t from_seq = sp->cur_seq, n = 0;

	for (uint64_t s = from_seq; s < g->first_seq + g->count; s++)
		n += !seg_is_acked(g, s);
	if (n)          /* else reported before: all of them are marked done */
		log_err("segment %" PRIu64 ": %s at offset %" PRIu64 ", no valid record after "
			"it; %" PRIu64 " records lost (seq %" PRIu64 "..%" PRIu64 ")", g->first_seq,
			why, sp->cur_off, n, from_seq, g->first_seq + g->count - 1);
	sp->cur_off = g->size;
	for (uint64_t s = from_seq; s < g->first_seq + g->count; s++) {
		if (seg_is_acked(g, s))
			continue;
		sp->corrupt++;
		if (mark_done(sp, s) < 0 || sp->cur != g)
			break;          /* segment completed and deleted */
	}
}

/* Records [FROM, TO) of the cursor segment are not in its file: those
 * not already done (damage found at open marks them) are counted, logged
 * and marked done. Returns false if that completed and deleted the
 * segment (the cursor moved on). */
static bool lose_range(struct spool *sp, uint64_t from, uint64_t to, uint64_t off)
{
	struct seg *g = sp->cur;
	uint64_t n = 0;

	for (uint64_t s = from; s < to; s++)
		n += !seg_is_acked(g, s);
	if (n == 0)
		return true;
	sp->corrupt += n;
	log_err("segment %0*" PRIu64 ".seg: damage at offset %" PRIu64 " found on read; %"
		PRIu64 " records lost (seq %" PRIu64 "..%" PRIu64 "), the records after them "
		"are kept", NAME_DIGITS, g->first_seq, off, n, from, to - 1);
	for (uint64_t s = from; s < to; s++) {
		if (!seg_is_acked(g, s) && (mark_done(sp, s) < 0 || sp->cur != g))
			return sp->cur == g;
	}
	return true;
}

/* The frame at the cursor is damaged (a sealed segment opened from its
 * index is not re-checked at open, or the medium changed since): move to
 * the next valid frame as the open-time scan would, or give up the rest. */
static void read_damage(struct spool *sp, const char *why)
{
	struct seg *g = sp->cur;
	uint64_t at, off = sp->cur_off, from = sp->cur_seq;
	struct frame fr;

	if (resync(&sp->rd, off, g->size, from, g->first_seq + g->count - 1, &at, &fr) <= 0) {
		cut_cursor_seg(sp, why);
		return;
	}
	seg_add_skip(g, off, at, from, fr.seq);     /* for a rewind; best effort */
	sp->cur_off = at;
	sp->cur_seq = fr.seq;
	lose_range(sp, from, fr.seq, off);
}

/* Open the cursor segment's file if needed; jump damage found at open. */
static int cursor_prepare(struct spool *sp, struct seg *g)
{
	char path[PATH_MAX];

	if (sp->rd.fd < 0) {
		seg_path(sp, path, sizeof(path), g->first_seq, "seg");
		sp->rd.fd = open(path, O_RDONLY | O_CLOEXEC);
		if (sp->rd.fd < 0) {
			log_err("open %s: %s", path, strerror(errno));
			return M2Z_ERR_IO;
		}
	}
	for (size_t i = 0; i < g->n_skips; i++) {
		if (g->skips[i].from == sp->cur_off) {
			sp->cur_off = g->skips[i].to;
			break;
		}
	}
	return 0;
}

/* Read the record at the cursor. 1 = *out set, 0 = nothing more now. */
static int read_one(struct spool *sp, struct spool_rec **out)
{
	while (sp->cur) {
		struct seg *g = sp->cur;
		uint64_t seq, off = sp->cur_off;
		uint8_t h[FRAME_OVERHEAD];
		uint32_t len, crc;
		struct spool_rec *r;

		if (off >= g->size) {
			size_t i = seg_index(sp, g);
			if (g == write_seg(sp))
				return 0;
			cursor_to(sp, sp->segs[i + 1]);
			continue;
		}
		if (cursor_prepare(sp, g) < 0)
			return M2Z_ERR_IO;
		off = sp->cur_off;
		if (rd_walk(&sp->rd, off, sizeof(h), h, NULL) < 0) {
			cut_cursor_seg(sp, "read failed");
			continue;
		}
		len = get_le32(h);
		seq = get_le64(h + 8);
		if (len < BODY_HDR_LEN || off + HDR_LEN + len > g->size || seq < sp->cur_seq ||
		    seq >= g->first_seq + g->count) {
			read_damage(sp, "bad frame");
			continue;
		}
		r = malloc(sizeof(*r) + len - BODY_HDR_LEN);
		if (!r)
			return M2Z_ERR_NOMEM;
		r->seq = seq;
		r->append_ms = (int64_t)get_le64(h + 16);
		r->len = len - BODY_HDR_LEN;
		crc = crc32c(0, h + HDR_LEN, BODY_HDR_LEN);
		if (rd_walk(&sp->rd, off + FRAME_OVERHEAD, r->len, r->data, &crc) < 0 ||
		    crc != get_le32(h + 4)) {
			free(r);
			read_damage(sp, "checksum mismatch on read");
			continue;
		}
		if (seq > sp->cur_seq && !lose_range(sp, sp->cur_seq, seq, off)) {
			free(r);
			continue;
		}
		sp->cur_off = off + HDR_LEN + len;
		sp->cur_seq = seq + 1;
		if (seg_is_acked(g, seq)) {
			free(r);
			continue;
		}
		*out = r;
		return 1;
	}
	return 0;
}

/* Boards without an RTC boot in 1970 until NTP syncs; a record stamped
 * then has no meaningful age and must not be aged out as 56 years old. */
#define CLOCK_SANE_MS 1577836800000LL   /* 2020-01-01T00:00:00Z */

static bool too_old(const struct spool *sp, const struct spool_rec *r, int64_t now)
{
	return sp->o.max_age_ms > 0 && r->append_ms >= CLOCK_SANE_MS &&
	       now - r->append_ms > sp->o.max_age_ms;
}

int spool_next(struct spool *sp, int timeout_ms, struct spool_rec **out)
{
	struct timespec dl;
	uint64_t aged = 0;
	int rc;

	*out = NULL;
	dl = mono_deadline(timeout_ms);
	pthread_mutex_lock(&sp->mu);
	for (;;) {
		if (sp->closed) {
			rc = M2Z_ERR_CLOSED;
			break;
		}
		rc = read_one(sp, out);
		if (rc == 1 && too_old(sp, *out, now_ms())) {
			aged++;
			sp->dropped++;
			mark_done(sp, (*out)->seq);
			free(*out);
			*out = NULL;
			continue;
		}
		if (rc != 0)
			break;
		if (timeout_ms <= 0 ||
		    pthread_cond_timedwait(&sp->data, &sp->mu, &dl) == ETIMEDOUT) {
			rc = sp->closed ? M2Z_ERR_CLOSED : M2Z_ERR_AGAIN;
			break;
		}
	}
	pthread_mutex_unlock(&sp->mu);
	if (aged)
		log_warn("dropped %" PRIu64 " records older than max_age (%" PRId64 " ms)",
			 aged, sp->o.max_age_ms);
	return rc == 1 ? 0 : rc;
}

void spool_rec_free(struct spool_rec *rec)
{
	free(rec);
}

int spool_ack(struct spool *sp, uint64_t seq)
{
	int rc;

	pthread_mutex_lock(&sp->mu);
	rc = mark_done(sp, seq);
	pthread_mutex_unlock(&sp->mu);
	return rc < 0 ? rc : 0;
}

void spool_rewind(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	if (sp->n_segs && sp->cur != sp->segs[0])
		cursor_to(sp, sp->segs[0]);
	else if (sp->cur) {
		sp->cur_off = 0;        /* keep the buffer: same file */
		sp->cur_seq = sp->cur->first_seq;
	}
	pthread_mutex_unlock(&sp->mu);
}

void spool_get_stats(struct spool *sp, struct spool_stats *st)
{
	pthread_mutex_lock(&sp->mu);
	st->records = sp->live;
	st->bytes = sp->bytes;
	st->oldest_ms = 0;
	for (size_t i = 0; i < sp->n_segs; i++) {
		if (!seg_done(sp->segs[i])) {
			st->oldest_ms = sp->segs[i]->first_ms;
			break;
		}
	}
	st->dropped = sp->dropped;
	st->corrupt = sp->corrupt;
	st->cut_bytes = sp->cut_bytes;
	st->appended = sp->appended;
	pthread_mutex_unlock(&sp->mu);
}

/* ---------------------------------------------------------------- sync, close */

static int sync_all(struct spool *sp)
{
	int rc = flush_all_acks(sp);

	if (sp->wfd >= 0 && do_fdatasync(sp->wfd) < 0)
		rc = M2Z_ERR_IO;
	for (size_t i = 0; i < sp->n_segs; i++) {
		struct seg *g = sp->segs[i];
		if (g->ack_fd >= 0 && do_fdatasync(g->ack_fd) < 0)
			rc = M2Z_ERR_IO;
		g->ack_dirty = false;
	}
	if (sp->dir_fd >= 0 && fsync(sp->dir_fd) < 0)
		rc = M2Z_ERR_IO;
	sp->w_dirty = sp->dir_dirty = false;
	if (rc < 0)
		log_err("spool sync: %s", strerror(errno));
	return rc;
}

int spool_sync(struct spool *sp)
{
	int rc;

	pthread_mutex_lock(&sp->mu);
	rc = sync_all(sp);
	pthread_mutex_unlock(&sp->mu);
	return rc;
}

void spool_close(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->closed = true;
	pthread_cond_broadcast(&sp->data);
	pthread_cond_broadcast(&sp->space);
	pthread_mutex_unlock(&sp->mu);
}

void spool_free(struct spool *sp)
{
	if (!sp)
		return;
	spool_close(sp);
	if (sp->thread_running) {
		pthread_mutex_lock(&sp->mu);
		sp->stop = true;
		pthread_cond_signal(&sp->tick);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->thread, NULL);
	}
	if (sp->wfd >= 0)
		sync_all(sp);   /* a clean close is durable whatever the policy */
	for (size_t i = 0; i < sp->n_segs; i++)
		seg_free(sp->segs[i]);
	free(sp->segs);
	if (sp->rd.fd >= 0)
		close(sp->rd.fd);
	if (sp->wfd >= 0)
		close(sp->wfd);
	if (sp->lock_fd >= 0)
		close(sp->lock_fd);     /* releases the flock */
	if (sp->dir_fd >= 0)
		close(sp->dir_fd);
	free(sp->rd.buf);
	free(sp->dels);
	free(sp->dir);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->data);
	pthread_cond_destroy(&sp->space);
	pthread_cond_destroy(&sp->tick);
	free(sp);
}
