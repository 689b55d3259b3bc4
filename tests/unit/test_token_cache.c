/* test_token_cache.c - the on-disk token cache: key, round trip, mode, the
 * refresh margin, and every way a file is refused (missing, corrupt,
 * foreign, unsafe). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "token_cache.h"

#define NOW 1800000000000LL /* a fixed wall clock, ms */

static const struct token_cache_key KEY = { "https://login.example/oauth/token", "cid", "zeebe.example", "" };

struct fx {
	char dir[64];
	char path[256];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/m2z-tc-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->dir + strlen(f->dir), sizeof(f->dir) - strlen(f->dir), "/state"); /* created by store */
	assert_int_equal(token_cache_path(f->dir, &KEY, f->path, sizeof(f->path)), M2Z_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strrchr(f->dir, '/') - f->dir), f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void store(const struct fx *f, const struct token_cache_key *k, const char *tok, int64_t exp)
{
	struct token_cache_entry e = { "Bearer", (char *)tok, exp };
	char why[300] = "";
	if (token_cache_store(f->path, k, &e, why, sizeof(why)) != M2Z_OK)
		fail_msg("store: %s", why);
}

static int load(const struct fx *f, const struct token_cache_key *k, int64_t margin, struct token_cache_entry *e,
		char *why)
{
	return token_cache_load(f->path, k, NOW, margin, e, why, 300);
}

static void write_raw(const struct fx *f, const char *text, mode_t mode)
{
	FILE *fp;
	mkdir(f->dir, 0700);
	fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	chmod(f->path, mode);
}

static void test_path_is_per_key(void **state)
{
	struct fx *f = *state;
	struct token_cache_key other = KEY;
	char p2[256];

	other.scope = "Zeebe";
	assert_int_equal(token_cache_path(f->dir, &other, p2, sizeof(p2)), M2Z_OK);
	assert_string_not_equal(f->path, p2);
	assert_non_null(strstr(f->path, "/state/oauth-token-"));
	assert_int_equal(strlen(strrchr(f->path, '/')), strlen("/oauth-token-0123456789abcdef.json"));
	assert_int_equal(token_cache_path(f->dir, &KEY, p2, 20), M2Z_ERR_TOO_BIG);
}

static void test_round_trip_private_and_atomic(void **state)
{
	struct fx *f = *state;
	struct token_cache_entry e;
	char why[300], body[1024];
	struct stat st;
	struct dirent *d;
	DIR *dir;
	FILE *fp;
	size_t n;

	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_ERR_NOT_FOUND);
	store(f, &KEY, "tok-1", NOW + 3600000);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* nothing but the file itself: the temporary was renamed */
	dir = opendir(f->dir);
	n = 0;
	while ((d = readdir(dir)))
		n += d->d_name[0] != '.';
	closedir(dir);
	assert_int_equal(n, 1);
	fp = fopen(f->path, "r");
	n = fread(body, 1, sizeof(body) - 1, fp);
	fclose(fp);
	body[n] = '\0';
	assert_null(strstr(body, "secret"));

	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_OK);
	assert_string_equal(e.access_token, "tok-1");
	assert_string_equal(e.token_type, "Bearer");
	assert_int_equal(e.expires_at_ms, NOW + 3600000);
	token_cache_entry_clear(&e);

	store(f, &KEY, "tok-2", TOKEN_CACHE_NEVER); /* replaces */
	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_OK);
	assert_string_equal(e.access_token, "tok-2");
	assert_int_equal(e.expires_at_ms, TOKEN_CACHE_NEVER);
	token_cache_entry_clear(&e);

	assert_int_equal(token_cache_drop(f->path), M2Z_OK);
	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_ERR_NOT_FOUND);
	assert_int_equal(token_cache_drop(f->path), M2Z_OK);
}

static void test_refresh_margin(void **state)
{
	struct fx *f = *state;
	struct token_cache_entry e;
	char why[300];

	store(f, &KEY, "tok", NOW + 30001);
	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_OK);
	token_cache_entry_clear(&e);
	store(f, &KEY, "tok", NOW + 30000);
	assert_int_equal(load(f, &KEY, 30000, &e, why), M2Z_ERR_TIMEOUT);
	assert_non_null(strstr(why, "within the refresh margin"));
	assert_null(e.access_token);
	store(f, &KEY, "tok", NOW - 1);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_TIMEOUT);
}

static void test_foreign_corrupt_unsafe(void **state)
{
	struct fx *f = *state;
	struct token_cache_key other = KEY;
	struct token_cache_entry e;
	char why[300];

	/* same file name, another key inside (as if copied from elsewhere) */
	other.client_id = "someone-else";
	store(f, &other, "theirs", NOW + 3600000);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_INVAL);
	assert_non_null(strstr(why, "another token URL, client id, audience or scope"));

	write_raw(f, "{not json", 0600);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_CORRUPT);
	write_raw(f, "{\"version\":2,\"access_token\":\"x\",\"token_type\":\"Bearer\",\"expires_at_ms\":null}", 0600);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_CORRUPT);
	write_raw(f, "{\"version\":1,\"url\":\"https://login.example/oauth/token\",\"client_id\":\"cid\","
		  "\"audience\":\"zeebe.example\",\"scope\":\"\",\"token_type\":\"Bearer\","
		  "\"access_token\":\"bad token\",\"expires_at_ms\":null}", 0600);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_CORRUPT);

	store(f, &KEY, "tok", NOW + 3600000);
	chmod(f->path, 0644);
	assert_int_equal(load(f, &KEY, 0, &e, why), M2Z_ERR_INVAL);
	assert_non_null(strstr(why, "not a private regular file"));
	assert_null(e.access_token);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path_is_per_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip_private_and_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_margin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_corrupt_unsafe, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
