/* route.h - topic filter + templates -> one PublishMessage.
 *
 * Routes come from the [route NAME] sections, in file order. For each MQTT
 * message the FIRST route whose topic filter matches wins (later routes are
 * not tried); a message that matches no route is counted and ignored.
 *
 * Template syntax (message_name, correlation_key, message_id, tenant_id,
 * var.NAME):
 *   text        literal text
 *   {N}         the N-th topic level, 1-based ("a/b/c": {2} = "b")
 *   {topic}     the whole topic
 *   {payload}   the whole payload as text (must be valid UTF-8)
 *   {/ptr}      RFC 6901 JSON Pointer into the JSON payload; a string is
 *               inserted without quotes, a number/bool/null as its JSON
 *               text, an object/array as compact JSON
 *   {x|dflt}    any of the above, with literal DFLT when it does not resolve
 *   {{ and }}   literal { and }
 * A template that cannot be resolved (topic level missing, payload not JSON,
 * pointer not found, no default) makes the event a dead letter with the
 * reason. An empty topic level ("a//b": {2}) resolves to "". A pointer
 * cannot contain '|' or '}' (they end the expression). A number, object or
 * array is inserted as the payload's own JSON text, blanks outside strings
 * dropped (1e400 stays 1e400); a string holding \u0000 makes the event a
 * dead letter (it cannot be a C string).
 *
 * Topic filters follow MQTT 3.1.1 and are checked at compile time; a
 * "$share/GROUP/" prefix is subscribed as written and matched without it.
 * tenant_id must render to 1-31 of [A-Za-z0-9_.-] or "<default>" (the
 * gateway's rule), else the event is a dead letter.
 *
 * Variables: with variables = payload (default) a JSON object payload is the
 * variables document; any other JSON value is wrapped as {"<wrap_key>": v};
 * a non-JSON payload becomes {"<wrap_key>": "<text>"}, or, when it is not
 * valid UTF-8, {"<wrap_key>": "<base64>", "<wrap_key>Encoding": "base64"}.
 * topic_variable / time_variable / var.NAME add keys on top (they override
 * payload keys of the same name). var.NAME values are strings, except a
 * template that is exactly one {/ptr} which keeps the JSON type of the value
 * it finds. With variables = none only those extra keys are sent ("{}" when
 * there are none). A JSON object payload with no extras is sent byte for
 * byte as received (minus blanks and a UTF-8 BOM around it); with extras its
 * members are copied as sent, so every number and string stays exact.
 *
 * message_id = auto (default): "m2z-" + 32 hex digits of SHA-256 over
 * (route name, topic, payload), so a redelivered or replayed event gets the
 * same id and Zeebe answers ALREADY_EXISTS while the first is buffered (TTL).
 * Two identical payloads on one topic within the TTL are therefore one
 * message; put a unique field in the payload or set message_id to a template.
 * message_id = none sends no id. */
#ifndef M2Z_ROUTE_H
#define M2Z_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"

struct config;
struct routes;

/* The rendered message. Strings point into the caller's struct render_buf
 * and live until its next use or render_buf_free(). */
struct publish_msg {
	const char *route;          /* route name */
	const char *name;
	const char *correlation_key;
	const char *message_id;     /* "" = none */
	int64_t ttl_ms;
	const char *variables;      /* serialized JSON object */
	const char *tenant_id;      /* "" = gateway default */
};

/* Scratch space reused across renders (no allocation once warm). */
struct render_buf {
	struct buf name, key, id, vars, tenant, tmp;
	struct buf frag;            /* extra variables being assembled */
};
#define RENDER_BUF_INIT { BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT, BUF_INIT }
void render_buf_free(struct render_buf *rb);

/* Compile every route of CFG. On a bad template or topic filter returns
 * M2Z_ERR_CONFIG with err = "FILE:LINE: what was expected". *out owned by
 * the caller (routes_free). CFG must outlive the routes. */
int routes_new(const struct config *cfg, struct routes **out, char *err, size_t errlen);
void routes_free(struct routes *rt);

size_t routes_count(const struct routes *rt);
const char *routes_name(const struct routes *rt, size_t i);
const char *routes_filter(const struct routes *rt, size_t i);
int routes_qos(const struct routes *rt, size_t i);
/* True when route I forwards retained messages ([route] retained = forward). */
bool routes_forward_retained(const struct routes *rt, size_t i);

/* One block per route (name, filter, QoS, templates, ttl, tenant,
 * variables), for --check. */
void routes_print(const struct routes *rt, FILE *f);

/* Index of the first route whose filter matches TOPIC, or -1. */
int routes_match(const struct routes *rt, const char *topic);

/* Render route I for one message. RECV_MS is the wall-clock receive time
 * (for time_variable). MAX_BYTES bounds the encoded request (the gateway's
 * message size limit). Returns 0, or M2Z_ERR_NOT_FOUND / M2Z_ERR_PARSE /
 * M2Z_ERR_TOO_BIG with REASON set to a one-line human explanation naming the
 * field, e.g. "correlation_key: JSON pointer /serial not found in payload". */
int routes_render(const struct routes *rt, size_t i, const char *topic,
		  const void *payload, size_t len, int64_t recv_ms, size_t max_bytes,
		  struct render_buf *rb, struct publish_msg *out,
		  char *reason, size_t reasonlen);

/* RFC 6901 lookup, exposed for tests. ROOT is a cJSON*; returns the item or
 * NULL. */
void *json_pointer_get(void *root, const char *ptr, size_t ptrlen);

/* The same, and *VALUE, *VALUELEN = the item's JSON text as sent, inside
 * TEXT: the document ROOT was parsed from, without leading or trailing
 * blanks. A key holding \u0000 is never matched. */
void *json_pointer_text(void *root, const char *text, size_t textlen, const char *ptr, size_t ptrlen,
			const char **value, size_t *valuelen);

/* ---- templates over one JSON document (the job worker) -------------------
 * The same syntax with only literals and {/ptr} (with |default) allowed;
 * the pointer goes into a caller-made cJSON document. */
struct doc_tmpl;

/* Compile SRC; FIELD names it in reasons ("topic", "payload"). On error
 * WHY says what was expected. *out owned by the caller (doc_tmpl_free). */
int doc_tmpl_new(const char *field, const char *src, struct doc_tmpl **out, char *why, size_t whylen);
void doc_tmpl_free(struct doc_tmpl *d);

/* The literal text before the first expression (borrowed from D). */
size_t doc_tmpl_prefix(const struct doc_tmpl *d, const char **lit);

/* Each substituted value must be a safe topic level part: non-empty and
 * free of '/', '+', '#' (else M2Z_ERR_INVAL with the reason). */
#define DOC_TMPL_TOPIC 1u

/* Render D over ROOT (a cJSON *) into OUT (reset first). RB is scratch.
 * Returns 0 or M2Z_ERR_NOT_FOUND / M2Z_ERR_INVAL / M2Z_ERR_NOMEM with
 * REASON set ("topic: JSON pointer /variables/x not found in payload"). */
int doc_tmpl_render(const struct doc_tmpl *d, void *root, unsigned flags, struct render_buf *rb,
		    struct buf *out, char *reason, size_t reasonlen);

#endif
