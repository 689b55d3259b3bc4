/* zeebe_internal.h - plumbing zeebe.c shares with zeebe_jobs.c.
 *
 * Only the two gRPC-fenced files include this header (it includes
 * <grpc/grpc.h>). Everything else uses zeebe.h and zeebe_jobs.h. */
#ifndef M2Z_ZEEBE_INTERNAL_H
#define M2Z_ZEEBE_INTERNAL_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdint.h>

#include "zeebe.h"

/* Start a unary call of METHOD ("/gateway_protocol.Gateway/X", a string
 * literal: it must outlive the call) with a serialized request (copied).
 * Same contract as zeebe_publish(); zeebe_result.key is meaningful only for
 * PublishMessage. */
int zeebe_call_unary(struct zeebe *zb, const char *method, const void *req, size_t len,
		     zeebe_done_fn done, void *arg);

/* The bearer token as "authorization" metadata. M2Z_OK with MD->value set
 * (the caller unrefs it with grpc_slice_unref) or left empty when OAuth is
 * off; M2Z_ERR_AUTH when OAuth is on and no token is cached yet. GEN gets
 * the token generation. */
int zeebe_token_metadata(struct zeebe *zb, grpc_metadata *md, uint64_t *gen);

/* The channel; borrowed, lives until zeebe_free(). */
grpc_channel *zeebe_channel(struct zeebe *zb);

/* True once zeebe_shutdown() began. */
bool zeebe_closed(struct zeebe *zb);

#endif
