/* spool.h - durable FIFO of event records on disk.
 *
 * Layout: DIR (mode 0700) holds append-only segment files
 * "NNNNNNNNNNNNNNNNNNNN.seg" (first sequence number, zero-padded) of framed
 * records [u32 length][u32 CRC-32C of the body][body], an acknowledgement
 * log per segment ("….ack": a magic header, then [u64 seq][u32 CRC-32C]
 * per entry; 0.1.0's headerless u64 logs are still read) and, where a
 * fully acknowledged segment was deleted while an older one is still live,
 * an empty marker "….del" (so a missing segment can be told from a
 * deleted one). A segment is deleted once every record in it is
 * acknowledged (or dropped); a fully acknowledged write segment of at
 * least 64 KiB is rolled and deleted at once, so a drained spool uses
 * less than 64 KiB (plus one empty segment) whatever segment_bytes is.
 *
 * Start-up: a sealed segment has an index ("….idx": count, size, damaged
 * ranges, with its own CRC); when it checks out and matches the segment's
 * size, open trusts it. Other segments (the write segment, an index that is
 * missing or damaged) are scanned once: every frame's length, CRC and
 * sequence checked; records are not kept in memory. Every record's CRC is
 * checked again when it is read for delivery, where damage is handled as at
 * open.
 *
 * Corruption: in a scanned segment (or on read) a damaged
 * frame is skipped by resynchronising on the next valid frame, so valid
 * records after damage are kept; trailing garbage (a torn write) is cut.
 * Records lost to damage, in a segment or as a missing/emptied segment
 * between two others, are logged once with their sequence range, counted in
 * spool_stats.corrupt and recorded as done (in the ack log, or a .del
 * marker for a missing segment) so they are not reported again. A damaged ack entry is skipped and logged: the record it
 * named is delivered again (at-least-once). Corruption is never fatal.
 *
 * Writers (the MQTT thread) call spool_append(); one reader (the forwarder)
 * calls spool_next() and later spool_ack() in any order. Records come out in
 * append order; after a restart every record not acknowledged comes out
 * again, in order.
 *
 * Durability: when spool_append() returns 0 the record is in the kernel
 * (write(2) done), so it survives a kill of this process. With
 * SPOOL_SYNC_ALWAYS it was also fsync'ed (survives power loss); with
 * SPOOL_SYNC_GROUP a background thread fsyncs every group_commit_ms (power
 * loss may lose the last interval); SPOOL_SYNC_NONE leaves it to the kernel.
 *
 * Bounds: max_bytes (sum of live segment sizes), max_age_ms, and
 * reserve_bytes of free space left on the filesystem (checked with statvfs
 * at open, at each segment roll, every 64 KiB written, and on every append
 * once the estimate comes near the reserve). When either is reached:
 * SPOOL_FULL_BLOCK makes spool_append() wait (so the MQTT ack is held back
 * and the broker keeps the message); DROP_OLDEST drops the oldest whole
 * segment (counted, logged); REJECT_NEWEST returns M2Z_ERR_FULL. */
#ifndef M2Z_SPOOL_H
#define M2Z_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

struct spool;

struct spool_opts {
	const char *dir;
	enum spool_sync sync;
	int64_t group_commit_ms;
	uint64_t max_bytes;         /* live segment bytes; 0 = no limit */
	int64_t max_age_ms;         /* 0 = no age limit; records stamped before
				       2020 (clock not yet set) never age out */
	enum spool_full on_full;
	uint64_t segment_bytes;     /* 64 .. 4GiB; a record must fit in one */
	uint64_t reserve_bytes;     /* free space to leave on the filesystem;
				       0 = none */
};

/* One record handed to the reader. Owned by the reader until
 * spool_rec_free(); the data stays valid until then even if its segment is
 * later dropped. */
struct spool_rec {
	uint64_t seq;               /* unique, increasing across restarts */
	int64_t append_ms;          /* when it was appended (wall clock) */
	size_t len;
	uint8_t data[];             /* LEN bytes of the event record */
};

struct spool_stats {
	uint64_t records;           /* live, not yet acknowledged */
	uint64_t bytes;             /* on disk, live segments */
	int64_t oldest_ms;          /* append time of the oldest live record, 0 if none;
				       segment granularity: the first record of the
				       oldest segment still holding a live record */
	uint64_t dropped;           /* records dropped by bounds (drop_oldest,
				       max_age) since open */
	uint64_t corrupt;           /* records lost to damage on disk since open */
	uint64_t cut_bytes;         /* torn/corrupt bytes cut or skipped at open */
	uint64_t appended;          /* records appended since open */
};

/* Open (create) the spool, replay what is there. Returns 0 or M2Z_ERR_IO /
 * M2Z_ERR_INVAL; logs the reason. OPTS and opts->dir are copied (borrowed
 * only during the call). DIR is created 0700 (a looser existing mode is
 * tightened, with a warning), files 0600. DIR/lock is flock'ed: a second
 * open of the same directory, by any process, fails with M2Z_ERR_IO. */
int spool_open(const struct spool_opts *opts, struct spool **out);

/* Append one record. Thread-safe. *seq_out (may be NULL) receives the
 * record's sequence. Returns:
 *   0               durable as described above;
 *   M2Z_ERR_FULL    max_bytes or the free-space reserve reached and the
 *                   policy is REJECT_NEWEST, or DROP_OLDEST with nothing
 *                   left to drop (BLOCK waits instead, re-checking free
 *                   space every second); nothing was written;
 *   M2Z_ERR_IO      write(2), fdatasync (SYNC_ALWAYS) or creating a segment
 *                   failed (ENOSPC, EIO, EROFS...): the partial frame was cut
 *                   (or, if that failed too, the segment is sealed and the
 *                   next append starts a new one), nothing of this record
 *                   will be delivered, and the same call may be retried
 *                   later. The errno text is logged once per episode; the
 *                   first success after it logs the recovery;
 *   M2Z_ERR_TOO_BIG record larger than a segment or than max_bytes;
 *   M2Z_ERR_CLOSED  spool_close() was called (also wakes a BLOCK wait). */
int spool_append(struct spool *sp, const void *rec, size_t len, uint64_t *seq_out);

/* Next record not yet handed out, in append order, waiting up to TIMEOUT_MS
 * (0 = don't wait). Returns 0 with *out set, M2Z_ERR_AGAIN when none came,
 * M2Z_ERR_CLOSED after spool_close(). Records older than max_age are
 * dropped (counted) instead of returned. */
int spool_next(struct spool *sp, int timeout_ms, struct spool_rec **out);
void spool_rec_free(struct spool_rec *rec);

/* Mark SEQ done (published, duplicate or dead-lettered). Any order. An ack
 * for a dropped record is ignored. Durable with the same policy as appends
 * (ALWAYS: fsynced before return; GROUP: by the next group commit; NONE:
 * written within group_commit_ms). Still accepted after spool_close(). */
int spool_ack(struct spool *sp, uint64_t seq);

void spool_get_stats(struct spool *sp, struct spool_stats *st);

/* fsync everything now (used at shutdown). */
int spool_sync(struct spool *sp);

/* Wake every waiter with M2Z_ERR_CLOSED; further appends fail. */
void spool_close(struct spool *sp);

/* Close and free. Unacknowledged records stay on disk for the next start. */
void spool_free(struct spool *sp);

#endif
