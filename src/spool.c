/* spool.c - durable FIFO on disk: append, replay on start, ack, bounds,
 * fsync policy.
 *
 * On disk (all little-endian):
 *   NNNNNNNNNNNNNNNNNNNN.seg  records [u32 len][u32 crc32c(body)][body],
 *                             body = [u64 seq][i64 append_ms][payload];
 *                             the first record's seq is the file name and
 *                             seqs inside a segment are contiguous.
 *   NNNNNNNNNNNNNNNNNNNN.ack  appended u64 seqs acknowledged (or dropped)
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
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
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

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
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

	uint64_t live, bytes, dropped, cut_bytes, appended;
	unsigned n_blocked;
	bool warned_full;
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

static void sync_dir(struct spool *sp)
{
	if (sp->o.sync == SPOOL_SYNC_ALWAYS) {
		if (fsync(sp->dir_fd) < 0)
			log_err("fsync of directory %s: %s", sp->dir, strerror(errno));
	} else {
		sp->dir_dirty = true;   /* group thread or close does it */
	}
}

/* ---------------------------------------------------------------- acks */

/* Write G's pending acks to its .ack file (not synced). */
static int seg_flush_acks(struct spool *sp, struct seg *g)
{
	char path[PATH_MAX];
	uint8_t chunk[ACK_FLUSH_MAX * 8];
	size_t done = 0;

	if (g->n_pend == 0)
		return 0;
	if (g->ack_fd < 0) {
		seg_path(sp, path, sizeof(path), g->first_seq, "ack");
		g->ack_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (g->ack_fd < 0) {
			log_err("open %s: %s", path, strerror(errno));
			return M2Z_ERR_IO;
		}
		sync_dir(sp);
	}
	while (done < g->n_pend) {
		size_t k = g->n_pend - done;
		if (k > ACK_FLUSH_MAX)
			k = ACK_FLUSH_MAX;
		for (size_t i = 0; i < k; i++)
			put_le64(chunk + 8 * i, g->pend[done + i]);
		if (write_all(g->ack_fd, chunk, 8 * k) < 0) {
			log_err("write of ack log for segment %" PRIu64 ": %s",
				g->first_seq, strerror(errno));
			return M2Z_ERR_IO;
		}
		done += k;
	}
	g->n_pend = 0;
	g->ack_dirty = true;
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
	struct seg *g = seg_new(sp->next_seq);
	int fd;

	if (!g)
		return M2Z_ERR_NOMEM;
	seg_path(sp, path, sizeof(path), g->first_seq, "seg");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_err("create %s: %s", path, strerror(errno));
		seg_free(g);
		return M2Z_ERR_IO;
	}
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

	if (sp->cur == g)
		unread = g->first_seq + g->count - sp->cur_seq;
	else if (sp->cur && idx > seg_index(sp, sp->cur))
		unread = unacked;
	sp->dropped += unread;
	sp->live -= unacked;
	sp->bytes -= g->size;
	if (sp->cur == g)
		cursor_to(sp, idx + 1 < sp->n_segs ? sp->segs[idx + 1] : NULL);
	memmove(sp->segs + idx, sp->segs + idx + 1, (sp->n_segs - idx - 1) * sizeof(*sp->segs));
	sp->n_segs--;
	/* Segment first: a leftover .ack without its .seg is harmless (removed
	 * at the next open); the reverse would bring acked records back. */
	seg_path(sp, path, sizeof(path), g->first_seq, "seg");
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("unlink %s: %s", path, strerror(errno));
	seg_path(sp, path, sizeof(path), g->first_seq, "ack");
	if (unlink(path) < 0 && errno != ENOENT)
		log_err("unlink %s: %s", path, strerror(errno));
	sync_dir(sp);
	seg_free(g);
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
	if (seg_done(g) && sp->n_blocked > 0) {
		retire_write_seg(sp);   /* frees space for the blocked appender */
		return 1;
	}
	if (seg_queue_ack(g, seq) < 0)
		return M2Z_ERR_NOMEM;
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

/* Check the frame at *OFF of G's file (FSIZE bytes); on success count it
 * and advance *OFF. Returns NULL, or why the frame is not valid (then *RC
 * is M2Z_ERR_IO if the file could not be read). */
static const char *check_frame(struct rdbuf *rd, struct seg *g, uint64_t *off,
			       uint64_t fsize, int *rc)
{
	uint8_t h[FRAME_OVERHEAD];
	uint32_t len, crc;

	if (fsize - *off < FRAME_OVERHEAD)
		return "short header";
	if ((*rc = rd_walk(rd, *off, sizeof(h), h, NULL)) < 0)
		return "read error";
	len = get_le32(h);
	if (len == 0)
		return "zero-filled";
	if (len < BODY_HDR_LEN)
		return "bad length";
	if (len > fsize - *off - HDR_LEN)
		return "short body";
	crc = crc32c(0, h + HDR_LEN, BODY_HDR_LEN);
	if ((*rc = rd_walk(rd, *off + FRAME_OVERHEAD, len - BODY_HDR_LEN, NULL, &crc)) < 0)
		return "read error";
	if (crc != get_le32(h + 4))
		return "checksum mismatch";
	if (get_le64(h + 8) != g->first_seq + g->count)
		return "sequence mismatch";
	if (g->count == 0)
		g->first_ms = (int64_t)get_le64(h + 16);
	g->count++;
	*off += HDR_LEN + len;
	return NULL;
}

/* Count G's valid records; cut whatever follows the last one. */
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
	while (off < fsize && (why = check_frame(&rd, g, &off, fsize, &rc)) == NULL)
		;
	if (rc < 0) {
		log_err("read %s: %s", path, rc == M2Z_ERR_IO ? strerror(errno) : "short read");
		rc = M2Z_ERR_IO;
		goto out;
	}
	g->size = off;
	if (off < fsize) {
		uint64_t cut = fsize - off;
		if (last)
			log_warn("segment %s: torn tail (%s) cut: %" PRIu64 " bytes after %"
				 PRIu64 " valid records (%" PRIu64 " bytes)",
				 path, why, cut, g->count, off);
		else
			log_err("segment %s: CORRUPT data (%s) at offset %" PRIu64 " of a "
				"completed segment: cutting the remaining %" PRIu64 " bytes; "
				"%" PRIu64 " records before it are kept",
				path, why, off, cut, g->count);
		if (ftruncate(rd.fd, (off_t)off) < 0 ||
		    (sp->o.sync != SPOOL_SYNC_NONE && do_fdatasync(rd.fd) < 0)) {
			log_err("truncate %s: %s", path, strerror(errno));
			rc = M2Z_ERR_IO;
			goto out;
		}
		sp->cut_bytes += cut;
	}
out:
	if (rd.fd >= 0)
		close(rd.fd);
	return rc;
}

/* Read G's .ack file into its bitmap; a torn last entry is cut. */
static int load_acks(struct spool *sp, struct seg *g, uint8_t *buf)
{
	char path[PATH_MAX];
	struct rdbuf rd = { -1, buf, 0, 0 };
	struct stat st;
	uint64_t n, ignored = 0;
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
	n = (uint64_t)st.st_size / 8;
	if ((uint64_t)st.st_size % 8) {
		log_warn("ack log %s: torn last entry (%d bytes) cut", path, (int)(st.st_size % 8));
		if (ftruncate(rd.fd, (off_t)(n * 8)) < 0) {
			rc = M2Z_ERR_IO;
			goto out;
		}
	}
	for (uint64_t i = 0; i < n; i++) {
		uint8_t e[8];
		uint64_t seq;
		if ((rc = rd_walk(&rd, i * 8, 8, e, NULL)) < 0)
			goto out;
		seq = get_le64(e);
		if (seq < g->first_seq || seq >= g->first_seq + g->count) {
			ignored++;      /* zero fill after power loss, or cut records */
			/* Acks for records cut at open: never hand out their seqs
			 * again, or a new record would come back already acked. */
			if (seq >= g->first_seq + g->count && seq >= sp->next_seq &&
			    seq - g->first_seq < ((uint64_t)1 << 32))
				sp->next_seq = seq + 1;
			continue;
		}
		if ((rc = seg_set_acked(g, seq)) < 0)
			goto out;
	}
	rc = 0;
	if (ignored)
		log_warn("ack log %s: %" PRIu64 " entries outside the segment ignored", path, ignored);
out:
	if (rc < 0)
		log_err("read %s: %s", path, strerror(errno));
	close(rd.fd);
	return rc < 0 ? M2Z_ERR_IO : 0;
}

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
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*first = v;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorted first seqs of *.seg files; orphan *.ack files are removed. */
static int list_segments(struct spool *sp, uint64_t **out, size_t *n_out)
{
	DIR *d = opendir(sp->dir);
	struct dirent *e;
	uint64_t *v = NULL, first;
	size_t n = 0, cap = 0;
	char path[PATH_MAX];

	if (!d) {
		log_err("opendir %s: %s", sp->dir, strerror(errno));
		return M2Z_ERR_IO;
	}
	while ((e = readdir(d)) != NULL) {
		if (parse_name(e->d_name, "seg", &first) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			uint64_t *nv = realloc(v, cap * sizeof(*nv));
			if (!nv) {
				closedir(d);
				free(v);
				return M2Z_ERR_NOMEM;
			}
			v = nv;
		}
		v[n++] = first;
	}
	rewinddir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	while ((e = readdir(d)) != NULL) {
		if (parse_name(e->d_name, "ack", &first) < 0 ||
		    (n && bsearch(&first, v, n, sizeof(*v), cmp_u64)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", sp->dir, e->d_name);
		log_info("removing orphan ack log %s", path);
		unlink(path);
	}
	closedir(d);
	*out = v;
	*n_out = n;
	return 0;
}

static int load_one(struct spool *sp, uint64_t first, bool last, uint8_t *buf,
		    uint64_t *prev_end, bool *prev_cut)
{
	struct seg *g = seg_new(first);
	uint64_t cut_before = sp->cut_bytes;
	int rc;

	if (!g)
		return M2Z_ERR_NOMEM;
	if ((rc = scan_segment(sp, g, last, buf)) == 0)
		rc = load_acks(sp, g, buf);
	if (rc == 0)
		rc = segs_push(sp, g);
	if (rc < 0) {
		seg_free(g);
		return rc;
	}
	if (*prev_cut && first > *prev_end)
		log_err("up to %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64 ") lost with "
			"the corrupt part of the previous segment", first - *prev_end,
			*prev_end, first - 1);
	*prev_cut = sp->cut_bytes != cut_before;
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
	bool prev_cut = false;
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
		rc = load_one(sp, firsts[i], i + 1 == n, buf, &prev_end, &prev_cut);
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
	if (stat(sp->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_err("spool directory %s: %s", sp->dir,
			errno ? strerror(errno) : "not a directory");
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

static void init_sync(struct spool *sp)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&sp->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sp->data, &ca);
	pthread_cond_init(&sp->space, &ca);
	pthread_cond_init(&sp->tick, &ca);
	pthread_condattr_destroy(&ca);
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
	int n = 0;

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
			log_err("group commit fdatasync: %s", strerror(errno));
		close(fds[i]);
	}
	pthread_mutex_lock(&sp->mu);
}

static void *group_thread(void *arg)
{
	struct spool *sp = arg;
	struct timespec ts;

	pthread_mutex_lock(&sp->mu);
	while (!sp->stop) {
		deadline_after(&ts, sp->o.group_commit_ms);
		while (!sp->stop && pthread_cond_timedwait(&sp->tick, &sp->mu, &ts) != ETIMEDOUT)
			;
		group_commit(sp);
	}
	pthread_mutex_unlock(&sp->mu);
	return NULL;
}

/* ---------------------------------------------------------------- append */

/* Make room for FRAMED bytes per the on_full policy. */
static int make_room(struct spool *sp, uint64_t framed)
{
	while (sp->o.max_bytes && sp->bytes + framed > sp->o.max_bytes) {
		struct seg *w = write_seg(sp);
		int rc;

		if (sp->closed)
			return M2Z_ERR_CLOSED;
		if (w->count > 0 && seg_done(w)) {
			if ((rc = retire_write_seg(sp)) < 0)
				return rc;
			continue;
		}
		switch (sp->o.on_full) {
		case SPOOL_FULL_REJECT_NEWEST:
			return M2Z_ERR_FULL;
		case SPOOL_FULL_DROP_OLDEST: {
			struct seg *old = sp->segs[0];
			log_warn("spool full (%" PRIu64 " bytes): dropping segment %" PRIu64
				 " with %" PRIu64 " unacknowledged records", sp->bytes,
				 old->first_seq, old->count - old->n_acked);
			if (old == w)
				rc = retire_write_seg(sp);
			else
				rc = (seg_delete(sp, old), 0);
			if (rc < 0)
				return rc;
			break;
		}
		case SPOOL_FULL_BLOCK:
			if (!sp->warned_full)
				log_warn("spool full (%" PRIu64 " bytes): appends wait for "
					 "acknowledgements", sp->bytes);
			sp->warned_full = true;
			sp->n_blocked++;
			pthread_cond_wait(&sp->space, &sp->mu);
			sp->n_blocked--;
			break;
		}
	}
	sp->warned_full = false;
	return sp->closed ? M2Z_ERR_CLOSED : 0;
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
			log_err("write to segment %" PRIu64 ": %s", w->first_seq,
				r < 0 ? strerror(errno) : "no progress");
			if (ftruncate(sp->wfd, (off_t)w->size) < 0)
				log_err("cannot cut the partial record: %s", strerror(errno));
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
	if (w->count == 0)
		w->first_ms = ms;
	w->count++;
	w->size += total;
	sp->bytes += total;
	return 0;
}

int spool_append(struct spool *sp, const void *rec, size_t len, uint64_t *seq_out)
{
	uint64_t framed = FRAME_OVERHEAD + (uint64_t)len;
	struct seg *w;
	int rc;

	if (framed > sp->o.segment_bytes || (sp->o.max_bytes && framed > sp->o.max_bytes))
		return M2Z_ERR_TOO_BIG;
	pthread_mutex_lock(&sp->mu);
	if ((rc = make_room(sp, framed)) < 0)
		goto out;
	w = write_seg(sp);
	/* Rotate when full, or when seqs would not be contiguous in the file
	 * (next_seq was raised past a cut at open). */
	if ((w->size > 0 && w->size + framed > sp->o.segment_bytes) ||
	    w->first_seq + w->count != sp->next_seq) {
		struct seg *old = w;
		if ((rc = seg_create(sp)) < 0)
			goto out;
		if (seg_done(old))
			seg_delete(sp, old);
	}
	if ((rc = write_record(sp, rec, len, wall_ms())) < 0)
		goto out;
	if (seq_out)
		*seq_out = sp->next_seq;
	sp->next_seq++;
	sp->live++;
	sp->appended++;
	if (sp->o.sync == SPOOL_SYNC_ALWAYS && do_fdatasync(sp->wfd) < 0) {
		log_err("fdatasync of segment: %s", strerror(errno));
		rc = M2Z_ERR_IO;        /* written, so it will still be delivered */
	} else {
		sp->w_dirty = true;
	}
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
	uint64_t from_seq = sp->cur_seq;

	log_err("segment %" PRIu64 ": %s at offset %" PRIu64 "; dropping records %"
		PRIu64 "..%" PRIu64, g->first_seq, why, sp->cur_off, from_seq,
		g->first_seq + g->count - 1);
	sp->cur_off = g->size;
	for (uint64_t s = from_seq; s < g->first_seq + g->count; s++) {
		if (seg_is_acked(g, s))
			continue;
		sp->dropped++;
		if (mark_done(sp, s) < 0 || sp->cur != g)
			break;          /* segment completed and deleted */
	}
}

/* Read the record at the cursor. 1 = *out set, 0 = nothing more now. */
static int read_one(struct spool *sp, struct spool_rec **out)
{
	char path[PATH_MAX];

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
		if (sp->rd.fd < 0) {
			seg_path(sp, path, sizeof(path), g->first_seq, "seg");
			sp->rd.fd = open(path, O_RDONLY | O_CLOEXEC);
			if (sp->rd.fd < 0) {
				log_err("open %s: %s", path, strerror(errno));
				return M2Z_ERR_IO;
			}
		}
		if (rd_walk(&sp->rd, off, sizeof(h), h, NULL) < 0) {
			cut_cursor_seg(sp, "read failed");
			continue;
		}
		len = get_le32(h);
		seq = get_le64(h + 8);
		if (len < BODY_HDR_LEN || off + HDR_LEN + len > g->size || seq != sp->cur_seq) {
			cut_cursor_seg(sp, "bad frame");
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
			cut_cursor_seg(sp, "checksum mismatch on read");
			continue;
		}
		sp->cur_off = off + HDR_LEN + len;
		sp->cur_seq++;
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
	deadline_after(&dl, timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&sp->mu);
	for (;;) {
		if (sp->closed) {
			rc = M2Z_ERR_CLOSED;
			break;
		}
		rc = read_one(sp, out);
		if (rc == 1 && too_old(sp, *out, wall_ms())) {
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
	free(sp->dir);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->data);
	pthread_cond_destroy(&sp->space);
	pthread_cond_destroy(&sp->tick);
	free(sp);
}
