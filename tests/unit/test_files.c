/* net/files: URL paths to file names (the rules of files.h), content types,
 * and answers over a socketpair from a real directory: 200 with an ETag,
 * 304, 404 for everything outside the rules or outside the directory
 * (symbolic links included), a changed file read again, the cache bound. */
#include "net/files.c"

#include <sys/stat.h>

#include "net/http.h"
#include "net_pair.h"

static int map(const char *path, char *out) {
    return files_map_path(path, strlen(path), out, 256);
}

TEST(files_map_path_rules) {
    char o[256];
    ASSERT_EQ_INT(map("/", o), 10);
    ASSERT_STR_EQ(o, "index.html");
    ASSERT(map("/app.js", o) > 0);
    ASSERT_STR_EQ(o, "app.js");
    ASSERT(map("/img/logo-1_x.svg", o) > 0);
    ASSERT_STR_EQ(o, "img/logo-1_x.svg");
    ASSERT(map("/docs/", o) > 0);
    ASSERT_STR_EQ(o, "docs/index.html");
    ASSERT(map("/a..b", o) > 0); /* dots inside a name are fine */
    const char *bad[] = {
        "", "app.js", "//", "/..", "/../etc/passwd", "/a/../b", "/./a", "/.env", "/a/.git/config", "/a//b",
        "/%2e%2e/x", "/a%20b", "/a b", "/a\\b", "/a:b", "/a?b", "/é", "/a\x01", "/..%2f",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (map(bad[i], o) != -1) TEST_FAIL_("mapped: \"%s\" -> \"%s\"", bad[i], o);
    /* bounded by cap, with index.html added */
    ASSERT_EQ_INT(files_map_path("/abc/", 5, o, 14), -1);
    ASSERT_EQ_INT(files_map_path("/abc/", 5, o, 15), 14);
    ASSERT_EQ_INT(files_map_path("/abcdef", 7, o, 6), -1);
    ASSERT_EQ_INT(files_map_path("/abcdef", 7, o, 7), 6); /* exactly: the name and its NUL */
    ASSERT_EQ_INT(files_map_path("/ab/cd", 6, o, 6), 5);
    ASSERT_EQ_INT(files_map_path("/ab/cd", 6, o, 5), -1);
}

TEST(files_types_by_extension) {
    ASSERT_STR_EQ(files_type("index.html"), "text/html; charset=utf-8");
    ASSERT_STR_EQ(files_type("a/app.JS"), "text/javascript; charset=utf-8");
    ASSERT_STR_EQ(files_type("style.css"), "text/css; charset=utf-8");
    ASSERT_STR_EQ(files_type("x.svg"), "image/svg+xml");
    ASSERT_STR_EQ(files_type("x.wasm"), "application/wasm");
    ASSERT_STR_EQ(files_type("README"), "application/octet-stream");
    ASSERT_STR_EQ(files_type("dir.js/README"), "application/octet-stream");
}

/* ---- answers -------------------------------------------------------------------- */

static char dir_[256];
static struct files *files_;
static const struct http_route no_routes[1];
static struct http_server srv_ = {
    .routes = no_routes, .n_routes = 0, .max_header_bytes = 4096, .max_upload_bytes = 4096,
    .handshake_timeout_ms = 10000, .body_timeout_ms = 10000, .fallback = files_serve,
    .fallback_route = ROUTE_WEB,
};

static void put(const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir_, name);
    FILE *f = fopen(p, "w");
    ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void setup(void) {
    snprintf(dir_, sizeof dir_, "/tmp/asrd-test-files.XXXXXX");
    ASSERT(mkdtemp(dir_) != NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/sub", dir_);
    ASSERT_EQ_INT(mkdir(p, 0755), 0);
    put("index.html", "<p>hello</p>");
    put("app.js", "console.log(1)");
    put("sub/index.html", "sub");
    put(".secret", "hidden");
    /* a link out of the directory, and one inside it */
    snprintf(p, sizeof p, "%s/passwd.txt", dir_);
    ASSERT_EQ_INT(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof p, "%s/alias.js", dir_);
    ASSERT_EQ_INT(symlink("app.js", p), 0);
    snprintf(p, sizeof p, "%s/fifo.txt", dir_);
    ASSERT_EQ_INT(mkfifo(p, 0644), 0);
    ASSERT_EQ_INT(files_create(dir_, &files_), 0);
    srv_.fallback_ctx = files_;
    np_init();
}

static void teardown(void) {
    files_destroy(files_);
    files_ = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir_);
    ASSERT_EQ_INT(system(cmd), 0);
}

/* One request; the answer in out. */
static void ask(const char *request, char *out, size_t cap) {
    int peer;
    struct conn *c = np_conn(&peer);
    ASSERT_EQ_INT(http_conn_start(c, &srv_), 0);
    np_send(peer, request, strlen(request));
    np_pump(3);
    np_recv(peer, out, cap, NULL);
    close(peer);
    np_pump(2);
}

static void get(const char *path, char *out, size_t cap) {
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    ask(req, out, cap);
}

static int status_of(const char *b) { return (int)strtol(b + 9, NULL, 10); }

TEST(files_serves_the_directory_and_nothing_else) {
    setup();
    char b[4096];
    get("/", b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 200);
    ASSERT(strstr(b, "\r\nContent-Type: text/html; charset=utf-8\r\n") != NULL);
    ASSERT(strstr(b, "\r\nCache-Control: no-cache\r\n") != NULL);
    ASSERT(strstr(b, "\r\nX-Content-Type-Options: nosniff\r\n") != NULL);
    ASSERT(strstr(b, "\r\nETag: \"") != NULL);
    ASSERT(strstr(b, "\r\n\r\n<p>hello</p>") != NULL);
    get("/sub/", b, sizeof b);
    ASSERT(strstr(b, "\r\n\r\nsub") != NULL);
    get("/alias.js", b, sizeof b); /* a link that stays inside */
    ASSERT_EQ_INT(status_of(b), 200);
    ASSERT(strstr(b, "console.log(1)") != NULL);
    const char *missing[] = {"/nope.js", "/.secret", "/passwd.txt", "/fifo.txt", "/sub", "/../etc/passwd",
                             "/%2e%2e/%2e%2e/etc/passwd", "/sub/../../etc/passwd"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        get(missing[i], b, sizeof b);
        if (status_of(b) != 404) TEST_FAIL_("%s: %.40s", missing[i], b);
        ASSERT(strstr(b, "root:") == NULL && strstr(b, "hidden") == NULL);
    }
    ask("HEAD /app.js HTTP/1.1\r\n\r\n", b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 200);
    ASSERT(strstr(b, "\r\nContent-Length: 14\r\n") != NULL);
    ASSERT(strstr(b, "console") == NULL);
    teardown();
}

TEST(files_etag_revalidation_and_changes) {
    setup();
    char b[4096], etag[64], req[256];
    get("/app.js", b, sizeof b);
    const char *e = strstr(b, "\r\nETag: ");
    ASSERT(e != NULL);
    e += 8;
    size_t el = strcspn(e, "\r");
    snprintf(etag, sizeof etag, "%.*s", (int)el, e);
    snprintf(req, sizeof req, "GET /app.js HTTP/1.1\r\nIf-None-Match: W/\"x\", %s\r\n\r\n", etag);
    ask(req, b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 304);
    ASSERT(strstr(b, "\r\nContent-Length:") == NULL);
    ASSERT(strstr(b, etag) != NULL);
    ask("GET /app.js HTTP/1.1\r\nIf-None-Match: *\r\n\r\n", b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 304);
    ask("GET /app.js HTTP/1.1\r\nIf-None-Match: \"other\"\r\n\r\n", b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 200);
    ASSERT_EQ_INT(files_->bytes, 14); /* cached once */
    /* changed on disk: read again, new ETag, the old one no longer matches */
    usleep(20000);
    put("app.js", "console.log(22)");
    ask(req, b, sizeof b);
    ASSERT_EQ_INT(status_of(b), 200);
    ASSERT(strstr(b, "console.log(22)") != NULL);
    ASSERT(strstr(b, etag) == NULL);
    ASSERT_EQ_INT(files_->bytes, 15);
    teardown();
}

TEST(files_cache_is_bounded) {
    setup();
    char b[4096], name[64], path[400];
    for (int i = 0; i < FILES_CACHE_ENTRIES + 10; i++) {
        snprintf(name, sizeof name, "f%d.txt", i);
        put(name, "0123456789");
        snprintf(path, sizeof path, "/%s", name);
        get(path, b, sizeof b);
        ASSERT_EQ_INT(status_of(b), 200);
    }
    int used = 0;
    for (int i = 0; i < FILES_CACHE_ENTRIES; i++) used += files_->e[i].name[0] != 0;
    ASSERT_EQ_INT(used, FILES_CACHE_ENTRIES);
    ASSERT_EQ_INT(files_->bytes, 10 * FILES_CACHE_ENTRIES);
    /* the least recently used went first: f0 is gone, the last one is there */
    struct stat st;
    snprintf(path, sizeof path, "%s/f0.txt", dir_);
    ASSERT_EQ_INT(stat(path, &st), 0);
    ASSERT(lookup(files_, "f0.txt", &st) == NULL);
    snprintf(path, sizeof path, "%s/f%d.txt", dir_, FILES_CACHE_ENTRIES + 9);
    ASSERT_EQ_INT(stat(path, &st), 0);
    snprintf(name, sizeof name, "f%d.txt", FILES_CACHE_ENTRIES + 9);
    ASSERT(lookup(files_, name, &st) != NULL);
    teardown();
}

static void nothing(void *arg) { (void)arg; }

TEST(files_create_needs_a_directory) {
    ASSERT_EQ_INT(np_aborts(nothing, NULL), 0); /* (net_pair.h's helper, used once) */
    struct files *f = NULL;
    ASSERT_EQ_INT(files_create("/nonexistent/asrd-web", &f), ASR_EINVAL);
    ASSERT_EQ_INT(files_create("/etc/passwd", &f), ASR_EINVAL);
    ASSERT(f == NULL);
}
