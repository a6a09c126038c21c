#include "test.h"

#include "base/config.h"
#include "base/err.h"
#include "base/util.h"
#include "engines/registry.h"

static const char *vars[32][2];
static int n_vars;
static const char *get(const char *name) {
    for (int i = 0; i < n_vars; i++)
        if (strcmp(vars[i][0], name) == 0) return vars[i][1];
    return NULL;
}
static void set(const char *k, const char *v) { vars[n_vars][0] = k; vars[n_vars][1] = v; n_vars++; }

TEST(config_defaults) {
    struct config c;
    char err[256];
    n_vars = 0;
    ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), 0);
    ASSERT_STR_EQ(c.host, "0.0.0.0");
    ASSERT_EQ_INT(c.port, 8000);
    ASSERT_EQ_INT(c.endpointing_ms, 300);
    ASSERT_EQ_INT(c.max_chunk_bytes, 65536);
    ASSERT_EQ_INT(c.idle_timeout_s, 300);
    ASSERT_EQ_INT(c.resume_timeout_s, 60);
    ASSERT_EQ_INT(c.max_detached_sessions, 1000);
    ASSERT_EQ_INT(c.max_detached_per_ip, 0);
    ASSERT_EQ_INT(c.ping_interval_s, 10);
    ASSERT_EQ_INT(c.ping_timeout_s, 10);
    ASSERT_EQ_INT(c.vad_frame_ms, 30);
    ASSERT_EQ_INT(config_max_message_bytes(&c), 88000);
    ASSERT_EQ_INT(config_audio_rate(&c, 16000), 64000);
    ASSERT_EQ_INT(config_audio_rate(&c, 48000), 192000);
    /* the mock engine's own settings, from its table */
    const struct engine_ops *mock = engines_find("mock");
    void *st = engines_settings_load(mock, get, err, sizeof err);
    ASSERT(st != NULL);
    c.engine_settings = st;
    char out[4096];
    config_dump_json(&c, mock->settings, mock->n_settings, out, sizeof out);
    ASSERT(strstr(out, "\"ASR_MOCK_LATENCY_MS\":50") != NULL);
    ASSERT(strstr(out, "\"ASR_MOCK_WORDS_PER_CHUNK\":2") != NULL);
    free(st);
}

TEST(config_overrides) {
    struct config c;
    char err[256];
    n_vars = 0;
    set("ASR_PORT", "9001");
    set("ASR_MOCK_ERROR_RATE", "0.25");
    set("ASR_VAD_FRAME_MS", "10");
    set("ASR_LOG_FORMAT", "logfmt");
    ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), 0);
    ASSERT_EQ_INT(c.port, 9001);
    const struct engine_ops *mock = engines_find("mock");
    void *st = engines_settings_load(mock, get, err, sizeof err);
    ASSERT(st != NULL);
    c.engine_settings = st;
    char out[4096];
    config_dump_json(&c, mock->settings, mock->n_settings, out, sizeof out);
    ASSERT(strstr(out, "\"ASR_MOCK_ERROR_RATE\":0.25") != NULL);
    free(st);
    ASSERT_EQ_INT(c.vad_frame_ms, 10);
    ASSERT_STR_EQ(c.log_format, "logfmt");
}

static void expect_bad(const char *k, const char *v) {
    struct config c;
    char err[256] = "";
    n_vars = 0;
    set(k, v);
    if (strncmp(k, "ASR_MOCK_", 9) == 0) /* the mock engine's own table */
        ASSERT(engines_settings_load(engines_find("mock"), get, err, sizeof err) == NULL);
    else
        ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), ASR_EINVAL);
    if (!strstr(err, k)) TEST_FAIL_("error for %s=%s does not name it: %s", k, v, err);
    if (!strstr(err, "allowed")) TEST_FAIL_("error for %s=%s gives no range: %s", k, v, err);
}

TEST(config_rejects_bad_values_naming_the_variable) {
    expect_bad("ASR_PORT", "70000");
    expect_bad("ASR_PORT", "0");
    expect_bad("ASR_PORT", "80a");
    expect_bad("ASR_PORT", "");
    expect_bad("ASR_VAD_MODE", "9");
    expect_bad("ASR_VAD_FRAME_MS", "25");
    expect_bad("ASR_MOCK_ERROR_RATE", "1.5");
    expect_bad("ASR_MOCK_ERROR_RATE", "nan");
    expect_bad("ASR_MOCK_LATENCY_MS", "-1");
    expect_bad("ASR_MAX_CHUNK_BYTES", "2.5");
    expect_bad("ASR_MAX_CHUNK_BYTES", "65535");
    expect_bad("ASR_LOG_LEVEL", "loud");
    expect_bad("ASR_ENDPOINTING_MS", "20");
}

TEST(config_dump_masks_secrets) {
    struct config c;
    char err[256], out[4096];
    n_vars = 0;
    set("ASR_API_KEYS", "supersecret,other");
    ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), 0);
    config_dump_json(&c, NULL, 0, out, sizeof out);
    ASSERT(strstr(out, "supersecret") == NULL);
    ASSERT(strstr(out, "\"ASR_API_KEYS\":\"****\"") != NULL);
    ASSERT(strstr(out, "\"ASR_PORT\":8000") != NULL);
    n_vars = 0;
    set("ASR_REDIS_URL", "redis://:pw@h:1");
    ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), 0);
    config_dump_json(&c, NULL, 0, out, sizeof out);
    ASSERT(strstr(out, "\"ASR_REDIS_URL\":\"****\"") != NULL);
    n_vars = 0;
    set("ASR_REDIS_URL", "memory");   /* holds no password: shown */
    ASSERT_EQ_INT(config_load_from(&c, get, err, sizeof err), 0);
    config_dump_json(&c, NULL, 0, out, sizeof out);
    ASSERT(strstr(out, "\"ASR_REDIS_URL\":\"memory\"") != NULL);
}

TEST(config_help_lists_every_setting) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print_help(f);
    const struct engine_ops *mock = engines_find("mock");
    config_opts_help(f, mock->settings, mock->n_settings); /* main's --help adds each engine's table */
    fclose(f);
    const char *must[] = {"ASR_HOST", "ASR_PORT", "ASR_MOCK_LATENCY_MS", "ASR_MOCK_WORDS_PER_CHUNK",
                          "ASR_MOCK_ERROR_RATE", "ASR_MOCK_SEED", "ASR_VAD_FRAME_MS", "ASR_VAD_MODE",
                          "ASR_ENDPOINTING_MS", "ASR_MAX_SESSIONS_PER_WORKER", "ASR_IDLE_TIMEOUT_S",
                          "ASR_MAX_CHUNK_BYTES", "default"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(text, must[i])) TEST_FAIL_("--help lacks %s", must[i]);
    free(text);
}

TEST(config_unknown_variables_are_named_with_the_closest_setting) {
    const struct config_names own = config_own_names();
    char err[512];
    struct config_names all[8] = {own};
    size_t n_all = 1 + engines_setting_names(all + 1, 7); /* the engines' own settings count */
    char *ok_env[] = {"PATH=/bin", "ASR_PORT=1", "ASR_API_KEYS=k", "ASRD_BIN=x", "ASR_MOCK_SEED=3", NULL};
    ASSERT_EQ_INT(config_check_unknown(ok_env, all, n_all, err, sizeof err), 0);
    ASSERT_EQ_INT(config_check_unknown(ok_env, &own, 1, err, sizeof err), ASR_EINVAL); /* a mock setting */
    char *bad_env[] = {"ASR_PORT=1", "ASR_API_KEY=secret", "ASR_ZZZ_UNHEARD_OF=1", "ASR_BARE", NULL};
    ASSERT_EQ_INT(config_check_unknown(bad_env, &own, 1, err, sizeof err), ASR_EINVAL);
    ASSERT_STR_EQ(err, "ASR_API_KEY is not a setting; did you mean ASR_API_KEYS?\n"
                       "ASR_ZZZ_UNHEARD_OF is not a setting (asrd --help lists them)\n"
                       "ASR_BARE is not a setting (asrd --help lists them)");
    ASSERT_STR_EQ(config_closest("ASR_PROT", &own, 1), "ASR_PORT");
    ASSERT_STR_EQ(config_closest("ASR_WORKER", &own, 1), "ASR_WORKERS");
    ASSERT_STR_EQ(config_closest("ASR_MAX_SESSIONS", &own, 1), "ASR_MAX_SESSIONS_PER_WORKER");
    ASSERT(config_closest("ASR_FOO", &own, 1) == NULL);
}

TEST(config_unknown_check_takes_every_table) {
    /* a module's own table (the engines' settings, say) counts as known */
    static const char *const engine_names[] = {"ASR_WHISPER_MODEL"};
    const struct config_names tables[] = {config_own_names(), {engine_names, 1}};
    char err[256];
    char *env[] = {"ASR_WHISPER_MODEL=/m", "ASR_PORT=1", NULL};
    ASSERT_EQ_INT(config_check_unknown(env, tables, 2, err, sizeof err), 0);
    ASSERT_EQ_INT(config_check_unknown(env, tables, 1, err, sizeof err), ASR_EINVAL);
    char *typo[] = {"ASR_WHISPER_MODLE=/m", NULL};
    ASSERT_EQ_INT(config_check_unknown(typo, tables, 2, err, sizeof err), ASR_EINVAL);
    ASSERT_STR_EQ(err, "ASR_WHISPER_MODLE is not a setting; did you mean ASR_WHISPER_MODEL?");
}
