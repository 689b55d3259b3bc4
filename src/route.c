/* route.c - topic filter + templates -> one PublishMessage.
 *
 * Templates are compiled once (routes_new) into segment lists; rendering
 * appends segments into the caller's reusable buffers, parses the payload
 * with cJSON at most once per message, and passes a JSON object payload
 * through byte for byte when nothing is added to it. */
#define LOG_MODULE "route"
#include "route.h"

#include "conf.h"
#include "digest.h"
#include "err.h"
#include "event.h"
#include "log.h"
#include "mqtt_wire.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled templates --------------------------------------------------------- */

enum seg_kind { SEG_LIT, SEG_LEVEL, SEG_TOPIC, SEG_PAYLOAD, SEG_PTR };

struct seg {
	enum seg_kind kind;
	int level;                  /* SEG_LEVEL, 1-based */
	const char *text;           /* literal text or the pointer, in tmpl.store */
	size_t len;
	const char *dflt;           /* NULL = no default */
	size_t dflt_len;
};

struct tmpl {
	const char *field;          /* "message_name", "var.x", ... for reasons */
	const char *src;            /* the template as written (borrowed from the config) */
	struct seg *segs;
	size_t n;
	char *store;                /* unescaped literals, pointers and defaults */
	bool single_ptr;            /* exactly one {/ptr}: a var keeps its JSON type */
};

enum id_mode { ID_AUTO, ID_NONE, ID_TMPL };

struct route {
	const struct conf_route *cr;
	const char *filter;         /* cr->topic minus a "$share/GROUP/" prefix */
	struct tmpl name, key, id, tenant;
	enum id_mode id_mode;
	struct tmpl *vars;          /* cr->n_vars */
	char **var_fields;          /* "var.NAME" for reasons */
	bool has_extras;            /* topic/time/var.NAME add keys */
};

struct routes {
	size_t n;
	struct route *r;
};

/* ---- template compiler -------------------------------------------------------- */

static int compile_expr(struct tmpl *t, struct seg *s, const char *e, size_t n, char *why, size_t whylen)
{
	if (n > 0 && e[0] == '/') {
		s->kind = SEG_PTR;
		for (size_t i = 0; i < n; i++) {
			if (e[i] == '~' && (i + 1 == n || (e[i + 1] != '0' && e[i + 1] != '1'))) {
				snprintf(why, whylen, "'~' in a JSON pointer must be ~0 or ~1, got {%.*s}", (int)n, e);
				return M2Z_ERR_CONFIG;
			}
		}
		return M2Z_OK;
	}
	if (n == 5 && memcmp(e, "topic", 5) == 0) {
		s->kind = SEG_TOPIC;
		return M2Z_OK;
	}
	if (n == 7 && memcmp(e, "payload", 7) == 0) {
		s->kind = SEG_PAYLOAD;
		return M2Z_OK;
	}
	if (n > 0 && n <= 4 && e[0] != '0') {
		int v = 0;
		size_t i;
		for (i = 0; i < n && isdigit((unsigned char)e[i]); i++)
			v = v * 10 + (e[i] - '0');
		if (i == n) {
			s->kind = SEG_LEVEL;
			s->level = v;
			return M2Z_OK;
		}
	}
	snprintf(why, whylen, "expected {N} (N >= 1), {topic}, {payload} or {/json/pointer}, got {%.*s}", (int)n, e);
	return M2Z_ERR_CONFIG;
}

static int add_seg(struct tmpl *t, struct seg s)
{
	struct seg *p = realloc(t->segs, (t->n + 1) * sizeof(*p));

	if (!p)
		return M2Z_ERR_NOMEM;
	t->segs = p;
	t->segs[t->n++] = s;
	return M2Z_OK;
}

/* Compile SRC; on error WHY says what was expected. */
static int tmpl_compile(struct tmpl *t, const char *field, const char *src, char *why, size_t whylen)
{
	size_t n = strlen(src), o = 0, lit = 0;
	char *st;

	memset(t, 0, sizeof(*t));
	t->field = field;
	t->src = src;
	st = t->store = malloc(n + 1);
	if (!st)
		goto oom;
	for (size_t i = 0; i < n;) {
		if ((src[i] == '{' && src[i + 1] == '{') || (src[i] == '}' && src[i + 1] == '}')) {
			st[o++] = src[i];
			i += 2;
			continue;
		}
		if (src[i] == '}') {
			snprintf(why, whylen, "'}' without '{' at offset %zu (write }} for a literal })", i);
			return M2Z_ERR_CONFIG;
		}
		if (src[i] != '{') {
			st[o++] = src[i++];
			continue;
		}
		const char *end = strchr(src + i + 1, '}');
		if (!end) {
			snprintf(why, whylen, "'{' without '}' at offset %zu (write {{ for a literal {)", i);
			return M2Z_ERR_CONFIG;
		}
		if (o > lit && add_seg(t, (struct seg){ .kind = SEG_LIT, .text = st + lit, .len = o - lit }))
			goto oom;
		const char *e = src + i + 1, *bar = memchr(e, '|', (size_t)(end - e));
		size_t elen = bar ? (size_t)(bar - e) : (size_t)(end - e);
		struct seg s = { .text = st + o, .len = elen };
		memcpy(st + o, e, elen);
		o += elen;
		if (bar) {
			s.dflt = st + o;
			s.dflt_len = (size_t)(end - bar - 1);
			memcpy(st + o, bar + 1, s.dflt_len);
			o += s.dflt_len;
		}
		if (compile_expr(t, &s, e, elen, why, whylen))
			return M2Z_ERR_CONFIG;
		if (add_seg(t, s))
			goto oom;
		lit = o;
		i = (size_t)(end - src) + 1;
	}
	if (o > lit && add_seg(t, (struct seg){ .kind = SEG_LIT, .text = st + lit, .len = o - lit }))
		goto oom;
	t->single_ptr = t->n == 1 && t->segs[0].kind == SEG_PTR;
	return M2Z_OK;
oom:
	snprintf(why, whylen, "out of memory");
	return M2Z_ERR_NOMEM;
}

static void tmpl_free(struct tmpl *t)
{
	free(t->segs);
	free(t->store);
	memset(t, 0, sizeof(*t));
}

/* ---- topic filters -------------------------------------------------------------- */

/* MQTT 3.1.1 §4.7: '#' alone and last, '+' a whole level. */
static int filter_check(const char *f, char *why, size_t whylen)
{
	if (!*f) {
		snprintf(why, whylen, "topic filter must not be empty");
		return M2Z_ERR_CONFIG;
	}
	for (const char *p = f; *p; p++) {
		bool starts = p == f || p[-1] == '/';
		bool ends = p[1] == '\0' || p[1] == '/';
		if (*p == '#' && !(starts && p[1] == '\0')) {
			snprintf(why, whylen, "'#' must be a whole level and the last one, got '%s'", f);
			return M2Z_ERR_CONFIG;
		}
		if (*p == '+' && !(starts && ends)) {
			snprintf(why, whylen, "'+' must be a whole level, got '%s'", f);
			return M2Z_ERR_CONFIG;
		}
	}
	return M2Z_OK;
}

/* ---- routes_new / free / accessors ------------------------------------------- */

static void route_free(struct route *r)
{
	tmpl_free(&r->name);
	tmpl_free(&r->key);
	tmpl_free(&r->id);
	tmpl_free(&r->tenant);
	for (size_t i = 0; r->vars && i < r->cr->n_vars; i++) {
		tmpl_free(&r->vars[i]);
		free(r->var_fields[i]);
	}
	free(r->vars);
	free(r->var_fields);
}

void routes_free(struct routes *rt)
{
	if (!rt)
		return;
	for (size_t i = 0; i < rt->n; i++)
		route_free(&rt->r[i]);
	free(rt->r);
	free(rt);
}

static int compile_one(const struct config *cfg, const struct conf_route *cr, struct tmpl *t,
		       const char *field, const char *src, int line, char *err, size_t errlen)
{
	char why[512];
	int rc = tmpl_compile(t, field, src, why, sizeof(why));

	if (rc)
		snprintf(err, errlen, "%s:%d: [route %s] %s: %s", cfg->path, line ? line : cr->line, cr->name,
			 field, why);
	return rc;
}

static int route_compile(const struct config *cfg, const struct conf_route *cr, struct route *r,
			 char *err, size_t errlen)
{
	char why[512];
	int rc;

	r->cr = cr;
	r->filter = cr->topic;
	if (strncmp(r->filter, "$share/", 7) == 0) {
		const char *slash = strchr(r->filter + 7, '/');
		r->filter = slash ? slash + 1 : "";
	}
	if (filter_check(r->filter, why, sizeof(why))) {
		snprintf(err, errlen, "%s:%d: [route %s] topic: %s", cfg->path, cr->topic_line ? cr->topic_line : cr->line,
			 cr->name, why);
		return M2Z_ERR_CONFIG;
	}
	r->id_mode = strcmp(cr->message_id, "auto") == 0 ? ID_AUTO
		     : strcmp(cr->message_id, "none") == 0 ? ID_NONE : ID_TMPL;
#define COMPILE(t, f, s, l) \
	do { rc = compile_one(cfg, cr, (t), (f), (s), (l), err, errlen); \
	     if (rc) return rc; } while (0)
	COMPILE(&r->name, "message_name", cr->message_name, cr->message_name_line);
	COMPILE(&r->key, "correlation_key", cr->correlation_key, cr->correlation_key_line);
	COMPILE(&r->id, "message_id", r->id_mode == ID_TMPL ? cr->message_id : "", cr->message_id_line);
	COMPILE(&r->tenant, "tenant_id", cr->tenant_id, cr->tenant_id_line);
	r->vars = calloc(cr->n_vars ? cr->n_vars : 1, sizeof(*r->vars));
	r->var_fields = calloc(cr->n_vars ? cr->n_vars : 1, sizeof(*r->var_fields));
	if (!r->vars || !r->var_fields)
		goto oom;
	for (size_t i = 0; i < cr->n_vars; i++) {
		if (asprintf(&r->var_fields[i], "var.%s", cr->var_names[i]) < 0) {
			r->var_fields[i] = NULL;
			goto oom;
		}
		COMPILE(&r->vars[i], r->var_fields[i], cr->var_templates[i], cr->var_lines[i]);
	}
#undef COMPILE
	r->has_extras = cr->n_vars > 0 || cr->topic_variable[0] || cr->time_variable[0];
	return M2Z_OK;
oom:
	snprintf(err, errlen, "%s: out of memory", cfg->path);
	return M2Z_ERR_NOMEM;
}

/* Ingest skips the agent's own publications (ingest.c own_topic); say so
 * when a route would otherwise take them. */
static void warn_own_topics(const struct config *cfg)
{
	const char *dl = cfg->forward.dead_letter_topic;
	const char *st = cfg->status.enabled ? cfg->status.topic : NULL;

	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct conf_route *r = &cfg->routes[i];
		if (dl && dl[0] && mqtt_topic_matches(r->topic, dl, strlen(dl)))
			log_warn("[route %s] topic %s matches [forward] dead_letter_topic %s: "
				 "dead letters are not routed (skipped, counted as own)", r->name, r->topic, dl);
		if (st && st[0] && mqtt_topic_matches(r->topic, st, strlen(st)))
			log_warn("[route %s] topic %s matches the [status] topic %s: "
				 "the status document is not routed (skipped, counted as own)", r->name, r->topic, st);
	}
}

int routes_new(const struct config *cfg, struct routes **out, char *err, size_t errlen)
{
	struct routes *rt = calloc(1, sizeof(*rt));
	int rc = M2Z_ERR_NOMEM;

	if (!rt || !(rt->r = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*rt->r)))) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		goto fail;
	}
	for (size_t i = 0; i < cfg->n_routes; i++) {
		rt->n = i + 1; /* so routes_free releases what was compiled */
		if ((rc = route_compile(cfg, &cfg->routes[i], &rt->r[i], err, errlen)) != M2Z_OK)
			goto fail;
	}
	rt->n = cfg->n_routes;
	warn_own_topics(cfg);
	*out = rt;
	return M2Z_OK;
fail:
	routes_free(rt);
	return rc;
}

size_t routes_count(const struct routes *rt) { return rt->n; }
const char *routes_name(const struct routes *rt, size_t i) { return rt->r[i].cr->name; }
const char *routes_filter(const struct routes *rt, size_t i) { return rt->r[i].cr->topic; }
bool routes_forward_retained(const struct routes *rt, size_t i)
{
	return rt->r[i].cr->retained == 1;
}

int routes_qos(const struct routes *rt, size_t i) { return rt->r[i].cr->qos; }

int routes_match(const struct routes *rt, const char *topic)
{
	size_t len = strlen(topic);

	for (size_t i = 0; i < rt->n; i++)
		if (mqtt_topic_matches(rt->r[i].filter, topic, len))
			return (int)i;
	return -1;
}

/* ---- JSON pointer ---------------------------------------------------------------- */

/* Compare an RFC 6901 token (with ~0 ~1 escapes) to a plain key. */
static bool token_eq(const char *tok, size_t n, const char *key)
{
	size_t i = 0;

	while (i < n) {
		char c = tok[i++];
		if (c == '~' && i < n)
			c = tok[i++] == '0' ? '~' : '/';
		/* a NUL in the token must not match the key's end and read past it */
		if (*key == '\0' || *key != c)
			return false;
		key++;
	}
	return *key == '\0';
}

/* Index I (0-based) of the element that token TOK names, or false. */
static bool array_index(const cJSON *arr, const char *tok, size_t n, size_t *i)
{
	size_t idx = 0, count = 0;

	if (n == 0 || n > 9 || (n > 1 && tok[0] == '0'))
		return false; /* "-" and leading zeros are not indexes */
	for (size_t k = 0; k < n; k++) {
		if (!isdigit((unsigned char)tok[k]))
			return false;
		idx = idx * 10 + (size_t)(tok[k] - '0');
	}
	for (const cJSON *c = arr->child; c; c = c->next)
		count++;
	*i = idx;
	return idx < count;
}

/* ---- the payload's JSON text ------------------------------------------------------ */

/* cJSON keeps no source text, and printing a parsed value back changes it:
 * 1e400 becomes null, "ab\u0000cd" becomes "ab", 12345678901234567890123
 * loses digits. So whatever is passed on is taken from the payload as sent.
 * The text has been validated by cJSON already, and cJSON keeps children in
 * text order, so the K-th child is the K-th member in the text. Like cJSON,
 * every byte <= 32 between tokens counts as blank. */

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && (unsigned char)*p <= 32)
		p++;
	return p;
}

/* End of the (valid) JSON value that starts at P. */
static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		char c = *p++;
		if (c == '"') {
			for (; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			p = p < end ? p + 1 : end;
		} else if (c == '{' || c == '[') {
			depth++;
			continue;
		} else if (c == '}' || c == ']') {
			depth--;
		} else if (depth == 0) {
			while (p < end && (unsigned char)*p > 32 && !strchr(",]}", *p))
				p++;
		} else {
			continue;
		}
		if (depth == 0)
			break;
	}
	return p;
}

/* P at '{' or '['; the start of the K-th member (its key, in an object). */
static const char *nth_member(const char *p, const char *end, size_t k, bool object)
{
	p = skip_blank(p + 1, end);
	while (k--) {
		if (object) /* key, ':' */
			p = skip_blank(skip_blank(skip_value(p, end), end) + 1, end);
		p = skip_blank(skip_value(p, end), end);
		p = skip_blank(p + 1, end); /* ',' */
	}
	return p;
}

/* P at an object member's key: the start of its value. */
static const char *member_value(const char *p, const char *end)
{
	return skip_blank(skip_blank(skip_value(p, end), end) + 1, end);
}

/* Does the JSON string token at P (quotes included) hold \u0000? */
static bool json_string_has_nul(const char *p, const char *end)
{
	for (p++; p < end && *p != '"'; p++) {
		if (*p != '\\')
			continue;
		if (end - p >= 6 && memcmp(p + 1, "u0000", 5) == 0)
			return true;
		p++;
	}
	return false;
}

/* Append the JSON text P[0..N) without its blanks (outside strings). */
static int append_compact(struct buf *b, const char *p, size_t n)
{
	const char *end = p + n, *run = p;
	int rc = M2Z_OK;

	while (p < end && !rc) {
		if (*p == '"') {
			p = skip_value(p, end);
		} else if ((unsigned char)*p <= 32) {
			rc = buf_append(b, run, (size_t)(p - run));
			run = p = skip_blank(p, end);
		} else {
			p++;
		}
	}
	return rc ? rc : buf_append(b, run, (size_t)(end - run));
}

/* RFC 6901 lookup in ROOT; with TEXT (what ROOT was parsed from, blanks
 * trimmed) also the value's text as sent. A key holding \u0000 never
 * matches (cJSON cuts it at the NUL). */
static cJSON *pointer_find(cJSON *root, const char *text, size_t textlen, const char *ptr, size_t ptrlen,
			   const char **vp, size_t *vn)
{
	const char *tp = text, *te = text ? text + textlen : NULL; /* NULL + 0 is UB */
	cJSON *cur = root;
	size_t i = 0;

	if (ptrlen && ptr[0] != '/')
		return NULL;
	while (cur && i < ptrlen) {
		const char *tok = ptr + i + 1;
		const char *slash = memchr(tok, '/', ptrlen - i - 1);
		size_t n = slash ? (size_t)(slash - tok) : ptrlen - i - 1, k = 0;
		cJSON *next = NULL;

		if (cJSON_IsObject(cur)) {
			for (next = cur->child; next; next = next->next, k++)
				if (next->string && token_eq(tok, n, next->string))
					break;
		} else if (cJSON_IsArray(cur) && array_index(cur, tok, n, &k)) {
			next = cur->child;
			for (size_t j = k; j; j--)
				next = next->next;
		}
		if (next && text) {
			tp = nth_member(tp, te, k, cJSON_IsObject(cur));
			if (cJSON_IsObject(cur)) {
				if (json_string_has_nul(tp, te))
					return NULL;
				tp = member_value(tp, te);
			}
		}
		cur = next;
		i += n + 1;
	}
	if (cur && text) {
		*vp = tp;
		*vn = (size_t)(skip_value(tp, te) - tp);
	}
	return cur;
}

void *json_pointer_get(void *root, const char *ptr, size_t ptrlen)
{
	return pointer_find(root, NULL, 0, ptr, ptrlen, NULL, NULL);
}

void *json_pointer_text(void *root, const char *text, size_t textlen, const char *ptr, size_t ptrlen,
			const char **value, size_t *valuelen)
{
	return pointer_find(root, text, textlen, ptr, ptrlen, value, valuelen);
}

/* ---- rendering ---------------------------------------------------------------------- */

/* Per-message state: the payload is classified and parsed lazily, once. */
struct rctx {
	const struct route *r;
	const char *topic;
	const char *payload;
	size_t len;
	int utf8;                   /* -1 unknown, 0 no, 1 yes (and no NUL) */
	bool parsed;
	cJSON *root;                /* NULL: not JSON */
	const char *json_start;     /* payload trimmed of blanks, when JSON */
	size_t json_len;
	struct render_buf *rb;
	char *reason;
	size_t reasonlen;
};

static int why(struct rctx *x, int rc, const char *field, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int why(struct rctx *x, int rc, const char *field, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(x->reason, x->reasonlen, "%s: ", field);

	if (n >= 0 && (size_t)n < x->reasonlen) {
		va_start(ap, fmt);
		vsnprintf(x->reason + n, x->reasonlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static bool payload_text(struct rctx *x)
{
	if (x->utf8 < 0)
		x->utf8 = !memchr(x->payload, '\0', x->len) && utf8_valid(x->payload, x->len);
	return x->utf8 == 1;
}

static cJSON *payload_json(struct rctx *x)
{
	const char *end = NULL, *p = x->payload;
	size_t e = x->len;

	if (x->parsed)
		return x->root;
	x->parsed = true;
	if (!payload_text(x) || x->len == 0)
		return NULL;
	x->root = cJSON_ParseWithLengthOpts(p, x->len, &end, 0);
	if (!x->root)
		return NULL;
	/* cJSON stops after the first value; anything but blanks after it means
	 * the payload was not one JSON document. */
	for (size_t i = (size_t)(end - p); i < x->len; i++) {
		if ((unsigned char)p[i] > 32) {
			cJSON_Delete(x->root);
			return x->root = NULL;
		}
	}
	while (e && (unsigned char)p[e - 1] <= 32)
		e--;
	if (e >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* cJSON skips a UTF-8 BOM; the gateway need not */
	p = skip_blank(p, x->payload + e);
	x->json_start = p;
	x->json_len = (size_t)(x->payload + e - p);
	return x->root;
}

static const char *nth_level(const char *topic, int n, size_t *len)
{
	const char *p = topic;

	while (--n > 0) {
		p = strchr(p, '/');
		if (!p)
			return NULL;
		p++;
	}
	*len = strcspn(p, "/");
	return p;
}

/* Append segment S; a default applies when it does not resolve. */
/* ITEM printed by cJSON: only for documents we hold no text of. */
static int append_printed(struct buf *b, const cJSON *item)
{
	char *p = cJSON_PrintUnformatted(item);
	int rc;

	if (!p)
		return M2Z_ERR_NOMEM;
	rc = buf_puts(b, p);
	free(p);
	return rc;
}

static int render_seg(struct rctx *x, const struct tmpl *t, const struct seg *s, struct buf *b)
{
	const char *v = NULL;
	size_t vlen = 0;
	int rc = M2Z_ERR_NOT_FOUND;

	switch (s->kind) {
	case SEG_LIT:
		return buf_append(b, s->text, s->len);
	case SEG_TOPIC:
		return buf_puts(b, x->topic);
	case SEG_LEVEL:
		if ((v = nth_level(x->topic, s->level, &vlen)))
			return buf_append(b, v, vlen);
		if (!s->dflt)
			return why(x, M2Z_ERR_NOT_FOUND, t->field, "topic level {%d} missing in '%s'", s->level, x->topic);
		break;
	case SEG_PAYLOAD:
		if (payload_text(x))
			return buf_append(b, x->payload, x->len);
		if (!s->dflt)
			return why(x, M2Z_ERR_PARSE, t->field, "payload is not UTF-8 text (needed for {payload})");
		break;
	case SEG_PTR: {
		cJSON *root = payload_json(x), *item;
		const char *vp = NULL;
		size_t vn = 0;
		if (!root) {
			if (s->dflt)
				break;
			return why(x, M2Z_ERR_PARSE, t->field, "payload is not JSON (needed for {%.*s})",
				   (int)s->len, s->text);
		}
		item = pointer_find(root, x->json_start, x->json_len, s->text, s->len, &vp, &vn);
		if (item && cJSON_IsString(item) && json_string_has_nul(vp, vp + vn))
			return why(x, M2Z_ERR_PARSE, t->field, "JSON pointer %.*s is a string holding \\u0000 (NUL), "
				   "which cannot be passed on unchanged", (int)s->len, s->text);
		if (item && cJSON_IsString(item))
			return buf_puts(b, item->valuestring);
		if (item && vp) /* as sent: cJSON would print 1e400 as null */
			return append_compact(b, vp, vn);
		if (item) /* a document without its text (the job worker's) */
			return append_printed(b, item);
		if (!s->dflt)
			return why(x, M2Z_ERR_NOT_FOUND, t->field, "JSON pointer %.*s not found in payload",
				   (int)s->len, s->text);
		break;
	}
	}
	rc = buf_append(b, s->dflt, s->dflt_len);
	return rc;
}

static int render_tmpl(struct rctx *x, const struct tmpl *t, struct buf *b)
{
	int rc;

	if ((rc = buf_reserve(b, 0)))
		return rc;
	buf_reset(b); /* after the reserve: a fresh buffer gets its NUL here */
	for (size_t i = 0; i < t->n; i++) {
		if ((rc = render_seg(x, t, &t->segs[i], b))) {
			if (rc == M2Z_ERR_NOMEM)
				why(x, rc, t->field, "out of memory");
			return rc;
		}
	}
	return M2Z_OK;
}

/* Gateway rule (RequestMapper): ^[\w.-]{1,31}$; "<default>" is the
 * default tenant's name. */
static bool tenant_ok(const char *s)
{
	size_t n = strlen(s);

	if (strcmp(s, "<default>") == 0)
		return true;
	if (n < 1 || n > 31)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
			return false;
	return true;
}

/* ---- variables ------------------------------------------------------------------------ */

static int json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;
	int rc = buf_putc(b, '"');

	for (size_t i = 0; i < n && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		rc = buf_append(b, s + run, i - run);
		run = i + 1;
		if (rc)
			break;
		switch (c) {
		case '"': rc = buf_puts(b, "\\\""); break;
		case '\\': rc = buf_puts(b, "\\\\"); break;
		case '\n': rc = buf_puts(b, "\\n"); break;
		case '\r': rc = buf_puts(b, "\\r"); break;
		case '\t': rc = buf_puts(b, "\\t"); break;
		default: {
			char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0 };
			rc = buf_puts(b, u);
		}
		}
	}
	if (!rc)
		rc = buf_append(b, s + run, n - run);
	return rc ? rc : buf_putc(b, '"');
}

/* '{' before the first member, ',' before the others. */
static int put_key(struct buf *b, const char *key)
{
	int rc = buf_putc(b, b->len ? ',' : '{');

	rc = rc ? rc : json_str(b, key, strlen(key));
	return rc ? rc : buf_putc(b, ':');
}

static int base64_append(struct buf *b, const unsigned char *s, size_t n)
{
	int rc = buf_reserve(b, base64_len(n) + 2);

	if (rc)
		return rc;
	buf_putc(b, '"');
	base64_encode_to(b->p + b->len, s, n);
	b->len += base64_len(n);
	return buf_putc(b, '"');
}

static bool is_extra_name(const struct route *r, const char *name)
{
	const struct conf_route *cr = r->cr;

	if (strcmp(cr->topic_variable, name) == 0 || strcmp(cr->time_variable, name) == 0)
		return true;
	for (size_t i = 0; i < cr->n_vars; i++)
		if (strcmp(cr->var_names[i], name) == 0)
			return true;
	return false;
}

/* Append ("name":value pairs, comma-led) for topic/time/var.NAME to frag.
 * Runs before the payload object is touched: var templates read it. */
static int render_extras(struct rctx *x, int64_t recv_ms, struct buf *frag)
{
	const struct conf_route *cr = x->r->cr;
	struct buf *tmp = &x->rb->tmp;
	int rc = M2Z_OK;

	buf_reset(frag);
	if (cr->topic_variable[0] && !rc) {
		rc = put_key(frag, cr->topic_variable);
		rc = rc ? rc : json_str(frag, x->topic, strlen(x->topic));
	}
	if (cr->time_variable[0] && !rc) {
		char ts[40];
		format_rfc3339_ms(recv_ms, ts, sizeof(ts));
		rc = put_key(frag, cr->time_variable);
		rc = rc ? rc : json_str(frag, ts, strlen(ts));
	}
	for (size_t i = 0; i < cr->n_vars && !rc; i++) {
		const struct tmpl *t = &x->r->vars[i];
		const char *vp;
		size_t vn;
		if ((rc = put_key(frag, cr->var_names[i])))
			break;
		/* {/ptr} alone keeps the value's JSON type and text, as sent. */
		if (t->single_ptr && payload_json(x) &&
		    pointer_find(x->root, x->json_start, x->json_len, t->segs[0].text, t->segs[0].len, &vp, &vn)) {
			rc = append_compact(frag, vp, vn);
			continue;
		}
		if ((rc = render_tmpl(x, t, tmp)))
			return rc;
		rc = json_str(frag, tmp->p, tmp->len);
	}
	if (rc == M2Z_ERR_NOMEM)
		return why(x, rc, "variables", "out of memory");
	return rc;
}

/* OUT is "" (no members yet) or an object missing its closing brace; FRAG
 * is "" or '{' + the extra members. Join them and close the object. */
static int close_with_extras(struct buf *out, const struct buf *frag)
{
	int rc = M2Z_OK;

	if (out->len == 0)
		rc = frag->len ? buf_append(out, frag->p, frag->len) : buf_putc(out, '{');
	else if (frag->len && !(rc = out->len > 1 ? buf_putc(out, ',') : M2Z_OK))
		rc = buf_append(out, frag->p + 1, frag->len - 1);
	return rc ? rc : buf_putc(out, '}');
}

/* The payload object's members as sent, minus those an extra overrides,
 * then the extras. */
static int vars_object(struct rctx *x, struct buf *out, const struct buf *frag)
{
	const char *p = x->json_start, *end = p + x->json_len, *m;
	int rc = M2Z_OK;

	if (!x->r->has_extras)
		return buf_append(out, p, x->json_len); /* proven a JSON object */
	p = skip_blank(p + 1, end);
	for (const cJSON *c = x->root->child; c && !rc; c = c->next) {
		m = p;
		p = skip_value(member_value(p, end), end);
		if (!is_extra_name(x->r, c->string) || json_string_has_nul(m, end)) {
			rc = buf_putc(out, out->len ? ',' : '{');
			rc = rc ? rc : append_compact(out, m, (size_t)(p - m));
		}
		p = skip_blank(skip_blank(p, end) + 1, end); /* ',' */
	}
	return rc ? rc : close_with_extras(out, frag);
}

static int render_vars(struct rctx *x, int64_t recv_ms, struct buf *out)
{
	const struct conf_route *cr = x->r->cr;
	struct buf *frag = &x->rb->frag;
	cJSON *root = NULL;
	int rc;

	buf_reset(out);
	if ((rc = render_extras(x, recv_ms, frag)))
		return rc;
	if (cr->variables == VARS_NONE || is_extra_name(x->r, cr->wrap_key)) {
		/* no payload variables, or an extra replaces the wrapped payload */
	} else if ((root = payload_json(x)) && cJSON_IsObject(root)) {
		rc = vars_object(x, out, frag);
		return rc ? why(x, rc, "variables", "out of memory") : M2Z_OK;
	} else {
		rc = put_key(out, cr->wrap_key);
		if (!rc && root) {
			rc = buf_append(out, x->json_start, x->json_len); /* valid JSON as sent */
		} else if (!rc && payload_text(x)) {
			rc = json_str(out, x->payload, x->len);
		} else if (!rc) {
			char enc[300];
			rc = base64_append(out, (const unsigned char *)x->payload, x->len);
			snprintf(enc, sizeof(enc), "%sEncoding", cr->wrap_key);
			if (!rc && !is_extra_name(x->r, enc))
				rc = put_key(out, enc) ? M2Z_ERR_NOMEM : json_str(out, "base64", 6);
		}
	}
	rc = rc ? rc : close_with_extras(out, frag);
	return rc ? why(x, rc, "variables", "out of memory") : M2Z_OK;
}

/* ---- routes_render ---------------------------------------------------------------------- */

static void auto_id(const struct route *r, const char *topic, const void *payload, size_t len, struct buf *b)
{
	static const char hex[] = "0123456789abcdef";
	struct digest_part parts[3] = {
		{ r->cr->name, strlen(r->cr->name) }, { topic, strlen(topic) }, { payload, len },
	};
	uint8_t d[32];
	char id[4 + 32 + 1] = "m2z-";

	digest_sha256_parts(parts, 3, d);
	for (int i = 0; i < 16; i++) {
		id[4 + 2 * i] = hex[d[i] >> 4];
		id[5 + 2 * i] = hex[d[i] & 15];
	}
	id[36] = '\0';
	buf_reset(b);
	buf_puts(b, id);
}

static int render_fields(struct rctx *x, int64_t recv_ms)
{
	const struct route *r = x->r;
	struct render_buf *rb = x->rb;
	int rc;

	if ((rc = render_tmpl(x, &r->name, &rb->name)) || (rc = render_tmpl(x, &r->key, &rb->key)))
		return rc;
	if ((rc = buf_reserve(&rb->id, 40)))
		return why(x, rc, "message_id", "out of memory");
	buf_reset(&rb->id);
	if (r->id_mode == ID_AUTO)
		auto_id(r, x->topic, x->payload, x->len, &rb->id);
	else if (r->id_mode == ID_TMPL && (rc = render_tmpl(x, &r->id, &rb->id)))
		return rc;
	if ((rc = render_tmpl(x, &r->tenant, &rb->tenant)))
		return rc;
	if (rb->tenant.len && !tenant_ok(rb->tenant.p))
		return why(x, M2Z_ERR_PARSE, "tenant_id",
			   "'%s' is not a valid tenant id (1-31 of A-Z a-z 0-9 _ . -)", rb->tenant.p);
	return render_vars(x, recv_ms, &rb->vars);
}

int routes_render(const struct routes *rt, size_t i, const char *topic,
		  const void *payload, size_t len, int64_t recv_ms, size_t max_bytes,
		  struct render_buf *rb, struct publish_msg *out,
		  char *reason, size_t reasonlen)
{
	struct rctx x = {
		.r = &rt->r[i], .topic = topic, .payload = payload ? payload : "", .len = len,
		.utf8 = -1, .rb = rb, .reason = reason, .reasonlen = reasonlen,
	};
	int rc;

	if (reason && reasonlen)
		reason[0] = '\0';
	rc = render_fields(&x, recv_ms);
	cJSON_Delete(x.root);
	if (rc)
		return rc;
	*out = (struct publish_msg){
		.route = x.r->cr->name, .name = rb->name.p, .correlation_key = rb->key.p,
		.message_id = rb->id.p, .ttl_ms = x.r->cr->ttl_ms, .variables = rb->vars.p,
		.tenant_id = rb->tenant.p,
	};
	if (max_bytes) {
		size_t sz = event_request_size(out);
		if (sz > max_bytes) {
			snprintf(reason, reasonlen, "request is %zu bytes, over the limit of %zu bytes "
				 "([zeebe] max_message_size)", sz, max_bytes);
			return M2Z_ERR_TOO_BIG;
		}
	}
	return M2Z_OK;
}

void render_buf_free(struct render_buf *rb)
{
	buf_free(&rb->name);
	buf_free(&rb->key);
	buf_free(&rb->id);
	buf_free(&rb->vars);
	buf_free(&rb->tenant);
	buf_free(&rb->tmp);
	buf_free(&rb->frag);
}

/* ---- printing (--check) ------------------------------------------------------------------- */

void routes_print(const struct routes *rt, FILE *f)
{
	for (size_t i = 0; i < rt->n; i++) {
		const struct route *r = &rt->r[i];
		const struct conf_route *cr = r->cr;
		char ttl[32];

		format_duration(cr->ttl_ms, ttl, sizeof(ttl));
		fprintf(f, "route %zu '%s': topic %s (QoS %d)%s\n", i + 1, cr->name, cr->topic, cr->qos,
			i ? "" : " -- first match wins");
		fprintf(f, "  message_name    %s\n", cr->message_name);
		fprintf(f, "  correlation_key %s\n", cr->correlation_key);
		fprintf(f, "  message_id      %s\n", r->id_mode == ID_AUTO ? "auto (sha-256 of route, topic, payload)"
					     : r->id_mode == ID_NONE ? "none" : cr->message_id);
		fprintf(f, "  ttl             %s\n", ttl);
		fprintf(f, "  tenant_id       %s\n", cr->tenant_id[0] ? cr->tenant_id : "(gateway default)");
		if (cr->variables == VARS_NONE)
			fprintf(f, "  variables       none\n");
		else
			fprintf(f, "  variables       payload (non-object payload as {\"%s\": ...})\n", cr->wrap_key);
		if (cr->topic_variable[0])
			fprintf(f, "  + %s = the topic\n", cr->topic_variable);
		if (cr->time_variable[0])
			fprintf(f, "  + %s = receive time\n", cr->time_variable);
		for (size_t v = 0; v < cr->n_vars; v++)
			fprintf(f, "  + %s = %s\n", cr->var_names[v], cr->var_templates[v]);
	}
}

/* ---- templates over a JSON document (the job worker) ------------------------------ */

struct doc_tmpl {
	struct tmpl t;
};

int doc_tmpl_new(const char *field, const char *src, struct doc_tmpl **out, char *why_, size_t whylen)
{
	struct doc_tmpl *d = calloc(1, sizeof(*d));
	int rc;

	if (!d) {
		snprintf(why_, whylen, "out of memory");
		return M2Z_ERR_NOMEM;
	}
	rc = tmpl_compile(&d->t, field, src, why_, whylen);
	for (size_t i = 0; rc == M2Z_OK && i < d->t.n; i++) {
		if (d->t.segs[i].kind != SEG_LIT && d->t.segs[i].kind != SEG_PTR) {
			snprintf(why_, whylen, "only {/json/pointer} expressions are allowed here, got {%.*s}",
				 (int)d->t.segs[i].len, d->t.segs[i].text);
			rc = M2Z_ERR_CONFIG;
		}
	}
	if (rc) {
		doc_tmpl_free(d);
		return rc;
	}
	*out = d;
	return M2Z_OK;
}

void doc_tmpl_free(struct doc_tmpl *d)
{
	if (!d)
		return;
	tmpl_free(&d->t);
	free(d);
}

size_t doc_tmpl_prefix(const struct doc_tmpl *d, const char **lit)
{
	if (d->t.n == 0 || d->t.segs[0].kind != SEG_LIT) {
		*lit = "";
		return 0;
	}
	*lit = d->t.segs[0].text;
	return d->t.segs[0].len;
}

/* A value put into one topic level: non-empty, no level separator and no
 * wildcard (a variable must not be able to widen where we publish), valid
 * UTF-8 without control characters (MQTT 3.1.1 4.7.3; the broker would
 * refuse the publish, or a device log would show a forged line). */
static bool level_value_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return n > 0 && !memchr(s, '/', n) && !memchr(s, '+', n) && !memchr(s, '#', n) &&
	       utf8_valid(s, n);
}

/* Up to 64 bytes of S as printable ASCII (others as \xHH) into OUT[300]. */
static const char *printable(const char *s, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n && i < 64; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

int doc_tmpl_render(const struct doc_tmpl *d, void *root, unsigned flags, struct render_buf *rb,
		    struct buf *out, char *reason, size_t reasonlen)
{
	struct rctx x = {
		.topic = "", .payload = "", .utf8 = 1, .parsed = true, .root = root,
		.rb = rb, .reason = reason, .reasonlen = reasonlen,
	};
	const struct tmpl *t = &d->t;
	int rc;

	if ((rc = buf_reserve(out, 0)))
		return rc;
	buf_reset(out);
	for (size_t i = 0; i < t->n; i++) {
		size_t at = out->len;
		if ((rc = render_seg(&x, t, &t->segs[i], out))) {
			if (rc == M2Z_ERR_NOMEM)
				why(&x, rc, t->field, "out of memory");
			return rc;
		}
		if ((flags & DOC_TMPL_TOPIC) && t->segs[i].kind != SEG_LIT &&
		    !level_value_ok(out->p + at, out->len - at)) {
			char shown[300];
			return why(&x, M2Z_ERR_INVAL, t->field,
				   "{%.*s} gave '%s': a value in a topic must be non-empty UTF-8 without "
				   "control characters and free of '/', '+' and '#'", (int)t->segs[i].len,
				   t->segs[i].text, printable(out->p + at, out->len - at, shown));
		}
	}
	return M2Z_OK;
}
