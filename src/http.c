/* core.http: a libcurl engine for the gateway calls.
 *
 * One engine owns one curl multi handle (whose connection cache gives
 * keep-alive reuse across every call) and one share handle (TLS sessions,
 * DNS). Both the blocking engine:request() and the concurrent
 * engine:submit()/engine:wait() run their transfers on that multi handle.
 *
 * No Lua code ever runs inside libcurl: the header and body callbacks only
 * append to C buffers of the transfer, and each transfer belongs to the
 * engine from the moment it is taken until it is recycled. Whatever raises
 * a Lua error (misuse, a memory error while pushing a result), the engine
 * still reaches every byte, so __gc frees everything. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <openssl/err.h>
#include "alipay.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_MS 15000
#define DEFAULT_MAX_RESPONSE_BYTES (4 * 1024 * 1024)
#define DEFAULT_USER_AGENT "lua-alipay"
/* Upper bound of one curl_multi_poll; it returns earlier when a transfer
 * has news or one of curl's own timers (timeouts) is due. */
#define POLL_SLICE_MS 1000
/* Recycled transfers keep their easy handle (and so its buffers) for the
 * next call, up to this many; body buffers above KEEP_BUFFER_BYTES are
 * released so that one large response does not pin memory. */
#define MAX_IDLE_TRANSFERS 64
#define KEEP_BUFFER_BYTES (64 * 1024)
#define MAX_TIMEOUT_MS (24L * 3600 * 1000)
/* The header block of one response, whatever max_response_bytes allows:
 * libcurl refuses one header line over CURL_MAX_HTTP_HEADER (100 KiB) with
 * a bare "Out of memory", so the whole block is held to the same size and
 * a larger one is named for what it is. */
#define MAX_HEADER_BYTES ((size_t)CURL_MAX_HTTP_HEADER)
#define MAX_LIMIT_BYTES ((lua_Integer)1 << 40)

static CURLcode global_init_result = CURLE_FAILED_INIT;

/* ---- growable byte buffers ---- */

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

static int buffer_append(buffer *b, const char *p, size_t n) {
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < n) {
      if (cap > SIZE_MAX / 2) return 0;
      cap *= 2;
    }
    char *data = realloc(b->data, cap);
    if (!data) return 0;
    b->data = data;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

static void buffer_free(buffer *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void buffer_empty(buffer *b) {
  if (b->cap > KEEP_BUFFER_BYTES) buffer_free(b);
  b->len = 0;
}

/* ---- transfers and the queues that own them ---- */

typedef struct transfer transfer;

typedef struct {
  transfer *head, *tail;
  int count;
} queue;

typedef enum { FAIL_NONE, FAIL_TOO_LARGE, FAIL_HEADERS_TOO_LARGE, FAIL_NO_MEMORY, FAIL_NOT_RESENT } failure;

struct transfer {
  CURL *easy;
  queue *on; /* every transfer is on exactly one queue of its engine */
  transfer *prev, *next;
  lua_Integer id;            /* 0 for a blocking request */
  int blocking;
  int is_head;               /* HEAD: Content-Length announces no body */
  int idempotent;            /* req.idempotent: a resend is harmless */
  int attempts;              /* times libcurl was about to send it (prereq) */
  int headers_done;          /* the final response's header block has ended */
  size_t limit;              /* max_response_bytes, for headers and for the body */
  buffer body, headers;      /* headers: the raw lines of the last response */
  buffer upload;             /* the request body of a non-idempotent call */
  size_t upload_pos;         /* how much of it libcurl has taken */
  struct curl_slist *req_headers;
  failure failed;            /* set by our callbacks when they abort */
  CURLcode result;
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct {
  CURLM *multi; /* NULL once closed */
  CURLSH *share;
  char *ca_file, *proxy, *user_agent;
  long connect_timeout_ms, timeout_ms;
  size_t max_response;
  int insecure_skip_verify; /* 1 only when the caller passed insecure_skip_verify = true */
  lua_Integer last_id;
  queue idle;    /* easy handles ready for reuse */
  queue running; /* added to the multi handle */
  queue done;    /* finished submitted transfers, in completion order, until wait() returns them */
  queue held;    /* a finished blocking transfer while its result is pushed */
} engine;

static void queue_push(queue *q, transfer *t) {
  t->on = q;
  t->prev = q->tail;
  t->next = NULL;
  if (q->tail) q->tail->next = t;
  else q->head = t;
  q->tail = t;
  q->count++;
}

static void queue_remove(transfer *t) {
  queue *q = t->on;
  if (t->prev) t->prev->next = t->next;
  else q->head = t->next;
  if (t->next) t->next->prev = t->prev;
  else q->tail = t->prev;
  q->count--;
  t->on = NULL;
  t->prev = t->next = NULL;
}

static void queue_move(transfer *t, queue *to) {
  queue_remove(t);
  queue_push(to, t);
}

/* A new transfer goes straight onto the idle queue, so that the engine owns
 * it before anything can raise. */
static transfer *transfer_new(engine *e) {
  transfer *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->easy = curl_easy_init();
  if (!t->easy) {
    free(t);
    return NULL;
  }
  queue_push(&e->idle, t);
  return t;
}

/* Forgets the previous request: options (including the copied request
 * body), header list, flags. The easy handle itself is kept. */
static void transfer_clear(transfer *t) {
  curl_easy_reset(t->easy);
  curl_slist_free_all(t->req_headers);
  t->req_headers = NULL;
  buffer_empty(&t->body);
  buffer_empty(&t->headers);
  buffer_empty(&t->upload);
  t->upload_pos = 0;
  t->id = 0;
  t->blocking = 0;
  t->is_head = 0;
  t->idempotent = 0;
  t->attempts = 0;
  t->headers_done = 0;
  t->failed = FAIL_NONE;
  t->result = CURLE_OK;
  t->errbuf[0] = '\0';
}

static void transfer_free(transfer *t) {
  curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->req_headers);
  buffer_free(&t->body);
  buffer_free(&t->headers);
  buffer_free(&t->upload);
  free(t);
}

/* The idle transfer to fill next (cleared), or NULL when out of memory. It
 * stays on the idle queue until it is started. */
static transfer *transfer_acquire(engine *e) {
  transfer *t = e->idle.head ? e->idle.head : transfer_new(e);
  if (t) transfer_clear(t);
  return t;
}

/* Back to the idle queue once its result has been handed to Lua. */
static void transfer_recycle(engine *e, transfer *t) {
  if (e->idle.count >= MAX_IDLE_TRANSFERS) {
    queue_remove(t);
    transfer_free(t);
    return;
  }
  transfer_clear(t);
  queue_move(t, &e->idle);
}

/* ---- engine lifetime ---- */

static void free_queue(engine *e, queue *q) {
  while (q->head) {
    transfer *t = q->head;
    if (q == &e->running) curl_multi_remove_handle(e->multi, t->easy);
    queue_remove(t);
    transfer_free(t);
  }
}

/* Idempotent, and safe on a half-built engine. Order matters: easy handles
 * leave the multi handle and are cleaned up before it, and the share goes
 * last because easy handles use it. */
static void engine_release(engine *e) {
  free_queue(e, &e->running);
  free_queue(e, &e->done);
  free_queue(e, &e->held);
  free_queue(e, &e->idle);
  if (e->multi) curl_multi_cleanup(e->multi);
  if (e->share) curl_share_cleanup(e->share);
  e->multi = NULL;
  e->share = NULL;
  free(e->ca_file);
  free(e->proxy);
  free(e->user_agent);
  e->ca_file = e->proxy = e->user_agent = NULL;
}

static engine *check_engine(lua_State *L, int idx) {
  engine *e = luaL_checkudata(L, idx, AP_HTTP_MT);
  if (!e->multi) luaL_error(L, "the http engine has been closed");
  return e;
}

/* ---- libcurl callbacks: C buffers only, never Lua ---- */

/* Parses a decimal Content-Length; 0 when it is not one. */
static int parse_length(const char *p, const char *end, uintmax_t *out) {
  uintmax_t v = 0;
  int digits = 0;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  for (; p < end && *p >= '0' && *p <= '9'; p++, digits++) {
    if (v > (UINTMAX_MAX - 9) / 10) return 0;
    v = v * 10 + (uintmax_t)(*p - '0');
  }
  *out = v;
  return digits > 0;
}

/* True when the line is a Content-Length above the limit: the transfer is
 * abandoned before a single body byte is read. */
static int announces_too_much(const transfer *t, const char *line, size_t n) {
  static const char name[] = "content-length:";
  const size_t name_len = sizeof name - 1;
  uintmax_t length;
  if (t->is_head || n < name_len || strncasecmp(line, name, name_len) != 0) return 0;
  return parse_length(line + name_len, line + n, &length) && length > t->limit;
}

static size_t header_limit(const transfer *t) {
  return t->limit < MAX_HEADER_BYTES ? t->limit : MAX_HEADER_BYTES;
}

static size_t on_header(char *line, size_t size, size_t n, void *userdata) {
  transfer *t = userdata;
  size_t len = size * n;
  /* A status line starts a new response (after a 1xx): keep only the
   * headers of the last one. */
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    t->headers.len = 0;
    t->headers_done = 0;
  }
  if (announces_too_much(t, line, len)) {
    t->failed = FAIL_TOO_LARGE;
    return 0;
  }
  if (len > header_limit(t) - t->headers.len) {
    t->failed = FAIL_HEADERS_TOO_LARGE;
    return 0;
  }
  /* The empty line ends a block (of a 1xx too: the next status line
   * reopens it). */
  if ((len == 2 && line[0] == '\r') || (len == 1 && line[0] == '\n')) t->headers_done = 1;
  if (!buffer_append(&t->headers, line, len)) {
    t->failed = FAIL_NO_MEMORY;
    return 0;
  }
  return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
  transfer *t = userdata;
  size_t len = size * n;
  if (len > t->limit - t->body.len) {
    t->failed = FAIL_TOO_LARGE;
    return 0;
  }
  if (!buffer_append(&t->body, data, len)) {
    t->failed = FAIL_NO_MEMORY;
    return 0;
  }
  return len;
}

/* ---- the request body of a non-idempotent call: never sent twice ----
 *
 * libcurl resends a request on its own when a reused connection dies before
 * any byte of the answer (lib/transfer.c Curl_retry_request, libcurl 7.88):
 * right for a query, a second delivery for a send. A body given as
 * CURLOPT_POSTFIELDS is resent without asking anyone; a body that libcurl
 * reads through CURLOPT_READFUNCTION must first be rewound through
 * CURLOPT_SEEKFUNCTION when any of it was written (its rewindbeforesend),
 * and ours refuses: the transfer then fails with CURLE_SEND_FAIL_REWIND,
 * which we report as reason "reset" (unknown: it may have arrived). We
 * prevent rather than detect: a second delivery cannot be taken back. A
 * resend before any of the body was taken is harmless (a server cannot act
 * on a request it has not got whole) and stays. on_prereq covers what the
 * rewind cannot see: body bytes libcurl took but did not count as written,
 * and a request without a body, whose headers are the whole request (there
 * it also stops the rare harmless resend after the headers failed to
 * leave: we cannot tell it apart, and unknown is the safe side). A request
 * marked idempotent keeps CURLOPT_POSTFIELDS and libcurl's resend.
 * Connections are still reused: only the resend is refused. */

static size_t on_read(char *dest, size_t size, size_t n, void *userdata) {
  transfer *t = userdata;
  size_t room = size * n, left = t->upload.len - t->upload_pos;
  size_t take = left < room ? left : room;
  if (take) memcpy(dest, t->upload.data + t->upload_pos, take);
  t->upload_pos += take;
  return take;
}

static int on_seek(void *userdata, curl_off_t offset, int origin) {
  transfer *t = userdata;
  (void)offset;
  (void)origin;
  t->failed = FAIL_NOT_RESENT;
  return CURL_SEEKFUNC_CANTSEEK;
}

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80: CURLOPT_PREREQFUNCTION */
/* Called each time libcurl is about to send the request: once, or again on
 * a new connection after a reused one died. */
static int on_prereq(void *userdata, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port) {
  transfer *t = userdata;
  (void)conn_primary_ip;
  (void)conn_local_ip;
  (void)conn_primary_port;
  (void)conn_local_port;
  if (++t->attempts > 1 && !t->idempotent && (t->upload.len == 0 || t->upload_pos > 0)) {
    t->failed = FAIL_NOT_RESENT;
    return CURL_PREREQFUNC_ABORT;
  }
  return CURL_PREREQFUNC_OK;
}
#endif

/* ---- reading Lua arguments (misuse raises) ---- */

static const char *field_string(lua_State *L, int t, const char *key, size_t *len) {
  lua_getfield(L, t, key); /* left on the stack: it anchors the string */
  if (lua_isnil(L, -1)) return NULL;
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "http: field '%s' must be a string, got %s", key, luaL_typename(L, -1));
  return lua_tolstring(L, -1, len);
}

/* A string without NUL bytes (it is handed to C as a C string). */
static const char *field_cstring(lua_State *L, int t, const char *key) {
  size_t len;
  const char *s = field_string(L, t, key, &len);
  if (s && strlen(s) != len) luaL_error(L, "http: field '%s' contains a NUL byte", key);
  return s;
}

static lua_Integer field_integer(lua_State *L, int t, const char *key, lua_Integer dflt,
                                 lua_Integer min, lua_Integer max) {
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return dflt;
  }
  if (lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "http: field '%s' must be a number, got %s", key, luaL_typename(L, -1));
  lua_Number v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= (lua_Number)min && v <= (lua_Number)max) || v != (lua_Number)(lua_Integer)v) {
    char range[64]; /* lua_pushfstring has no 64-bit integer format on LuaJIT */
    snprintf(range, sizeof range, "%lld to %lld", (long long)min, (long long)max);
    luaL_error(L, "http: field '%s' must be an integer from %s", key, range);
  }
  return (lua_Integer)v;
}

/* ---- the engine constructor ---- */

typedef struct {
  const char *ca_file, *proxy, *user_agent;
  lua_Integer connect_timeout_ms, timeout_ms, max_response, max_connections;
  int insecure_skip_verify;
} engine_options;

/* insecure_skip_verify turns TLS peer and host verification off. Only the
 * boolean true does: anything else but nil/false is a misuse and raises, so
 * that a stray "0" or "false" string can never switch verification off. */
static int field_insecure(lua_State *L, int t) {
  lua_getfield(L, t, "insecure_skip_verify");
  int on = 0;
  if (lua_type(L, -1) == LUA_TBOOLEAN) on = lua_toboolean(L, -1);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "http: field 'insecure_skip_verify' must be a boolean, got %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  return on;
}

/* Reads core.http's options; the strings stay on the stack. */
static void read_engine_options(lua_State *L, int idx, engine_options *o) {
  memset(o, 0, sizeof *o);
  o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  o->timeout_ms = DEFAULT_TIMEOUT_MS;
  o->max_response = DEFAULT_MAX_RESPONSE_BYTES;
  o->user_agent = DEFAULT_USER_AGENT;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  luaL_checkstack(L, 8, "http options");
  o->ca_file = field_cstring(L, idx, "ca_file");
  o->proxy = field_cstring(L, idx, "proxy");
  o->insecure_skip_verify = field_insecure(L, idx);
  const char *ua = field_cstring(L, idx, "user_agent");
  if (ua) o->user_agent = ua;
  o->connect_timeout_ms =
      field_integer(L, idx, "connect_timeout_ms", o->connect_timeout_ms, 1, MAX_TIMEOUT_MS);
  o->timeout_ms = field_integer(L, idx, "timeout_ms", o->timeout_ms, 1, MAX_TIMEOUT_MS);
  o->max_response =
      field_integer(L, idx, "max_response_bytes", o->max_response, 1, MAX_LIMIT_BYTES);
  o->max_connections = field_integer(L, idx, "max_connections", 0, 1, 100000);
}

static char *copy_string(const char *s, int *ok) {
  if (!s) return NULL;
  char *copy = strdup(s);
  if (!copy) *ok = 0;
  return copy;
}

/* Creates the curl handles and copies the options into e. */
/* curl_multi_init opens a socketpair to wake up its poll, without
 * close-on-exec and out of our reach: mark every descriptor that appeared
 * during the call (new descriptors take the lowest free numbers). */
#define FD_WINDOW 64
static CURLM *multi_init_cloexec(void) {
  int first = dup(0), was_open[FD_WINDOW];
  if (first >= 0) close(first);
  for (int i = 0; i < FD_WINDOW && first >= 0; i++) was_open[i] = fcntl(first + i, F_GETFD) != -1;
  CURLM *multi = curl_multi_init();
  for (int i = 0; i < FD_WINDOW && first >= 0; i++) {
    int flags = was_open[i] ? -1 : fcntl(first + i, F_GETFD);
    if (flags != -1) fcntl(first + i, F_SETFD, flags | FD_CLOEXEC);
  }
  return multi;
}

static int engine_init(engine *e, const engine_options *o) {
  int ok = 1;
  e->connect_timeout_ms = (long)o->connect_timeout_ms;
  e->timeout_ms = (long)o->timeout_ms;
  e->max_response = (size_t)o->max_response;
  e->insecure_skip_verify = o->insecure_skip_verify;
  e->ca_file = copy_string(o->ca_file, &ok);
  e->proxy = copy_string(o->proxy, &ok);
  e->user_agent = copy_string(o->user_agent, &ok);
  e->multi = multi_init_cloexec();
  e->share = curl_share_init();
  if (!ok || !e->multi || !e->share) return 0;
  /* Single-threaded use: the share needs no lock callbacks. */
  if (curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
      curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
    return 0;
  if (o->max_connections > 0 &&
      curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->max_connections) !=
          CURLM_OK)
    return 0;
  return 1;
}

/* A missing CA file is a configuration error worth reporting now rather
 * than as a TLS failure on the first call. */
static int readable(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  fclose(f);
  return 1;
}

/* core.http([opts]) -> engine | nil, err */
static int l_http(lua_State *L) {
  engine_options o;
  read_engine_options(L, 1, &o);
  if (global_init_result != CURLE_OK)
    return ap_push_error(L, "http: libcurl failed to initialise: %s",
                         curl_easy_strerror(global_init_result));
  if (o.ca_file && !readable(o.ca_file))
    return ap_push_error(L, "http: cannot read ca_file %s: %s", o.ca_file, strerror(errno));
  engine *e = lua_newuserdata(L, sizeof *e);
  memset(e, 0, sizeof *e);
  luaL_setmetatable(L, AP_HTTP_MT);
  if (!engine_init(e, &o)) {
    engine_release(e);
    return ap_push_error(L, "http: cannot create the curl engine (out of memory)");
  }
  return 1;
}

/* ---- building a transfer from a request table ---- */

typedef struct {
  const char *url, *method, *body;
  size_t body_len;
  long timeout_ms;
  int idempotent;
  int headers_idx; /* stack index of the headers table, 0 when absent */
} request;

static int is_token_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_token_char((unsigned char)s[i])) return 0;
  return 1;
}

/* Header values may not smuggle a line break (or a NUL into a C string). */
static int is_header_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

/* Reads and checks req (raises on misuse); its strings stay on the stack. */
static void read_request(lua_State *L, int idx, const engine *e, request *r) {
  size_t len;
  luaL_checktype(L, idx, LUA_TTABLE);
  luaL_checkstack(L, 12, "http request");
  memset(r, 0, sizeof *r);
  r->url = field_cstring(L, idx, "url");
  if (!r->url) luaL_error(L, "http: field 'url' is required");
  r->body = field_string(L, idx, "body", &r->body_len);
  r->method = field_string(L, idx, "method", &len);
  if (!r->method) r->method = r->body ? "POST" : "GET";
  else if (!is_token(r->method, len)) luaL_error(L, "http: field 'method' is not an HTTP method");
  r->timeout_ms = (long)field_integer(L, idx, "timeout_ms", e->timeout_ms, 1, MAX_TIMEOUT_MS);
  lua_getfield(L, idx, "idempotent");
  if (lua_type(L, -1) == LUA_TBOOLEAN) r->idempotent = lua_toboolean(L, -1);
  else if (!lua_isnil(L, -1))
    luaL_error(L, "http: field 'idempotent' must be a boolean, got %s", luaL_typename(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, idx, "headers");
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_error(L, "http: field 'headers' must be a table");
    r->headers_idx = lua_gettop(L);
  }
}

static void append_header(lua_State *L, transfer *t, const char *line) {
  struct curl_slist *list = curl_slist_append(t->req_headers, line);
  if (!list) luaL_error(L, "http: out of memory");
  t->req_headers = list;
}

/* One "Name: value" line per entry of the headers table. The list belongs
 * to t as it grows, so a raise here leaks nothing. The messages never quote
 * the header, which may carry credentials. */
static void add_headers(lua_State *L, transfer *t, int idx) {
  int has_expect = 0;
  if (idx) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      size_t nl, vl;
      if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "http: header names must be strings");
      int vt = lua_type(L, -1);
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        luaL_error(L, "http: header values must be strings or numbers");
      const char *name = lua_tolstring(L, -2, &nl);
      const char *value = lua_tolstring(L, -1, &vl); /* converts the value only */
      if (!is_token(name, nl)) luaL_error(L, "http: invalid header name");
      if (!is_header_value(value, vl))
        luaL_error(L, "http: invalid header value (line break or NUL)");
      has_expect = has_expect || (nl == 6 && strncasecmp(name, "expect", 6) == 0);
      /* "Name;" is curl's way to send a header with an empty value. */
      if (vl) lua_pushfstring(L, "%s: %s", name, value);
      else lua_pushfstring(L, "%s;", name);
      append_header(L, t, lua_tostring(L, -1));
      lua_pop(L, 2); /* the line and the value */
    }
  }
  /* curl would send "Expect: 100-continue" for bodies over 1 KiB and wait
   * for the interim response: a round trip (or a second) for nothing. */
  if (!has_expect) append_header(L, t, "Expect:");
}

/* Sets options until the first failure, which is kept in rc. */
#define SET(opt, value)                                       \
  do {                                                        \
    if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, value); \
  } while (0)

static CURLcode set_method(transfer *t, const request *r) {
  CURL *h = t->easy;
  CURLcode rc = CURLE_OK;
  int is_get = strcmp(r->method, "GET") == 0;
  int is_post = strcmp(r->method, "POST") == 0;
  if (strcmp(r->method, "HEAD") == 0) {
    /* A custom "HEAD" would wait for a body that never comes; a body given
     * with HEAD cannot be sent. */
    SET(CURLOPT_NOBODY, 1L);
    t->is_head = 1;
  } else if ((r->body || is_post) && r->idempotent) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    SET(CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
    if (!is_post) SET(CURLOPT_CUSTOMREQUEST, r->method);
  } else if (r->body || is_post) {
    /* Read through on_read, rewound never (see on_seek). */
    if (!buffer_append(&t->upload, r->body ? r->body : "", r->body_len)) return CURLE_OUT_OF_MEMORY;
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, (void *)t);
    SET(CURLOPT_SEEKFUNCTION, on_seek);
    SET(CURLOPT_SEEKDATA, (void *)t);
    if (!is_post) SET(CURLOPT_CUSTOMREQUEST, r->method);
  } else if (!is_get) {
    SET(CURLOPT_CUSTOMREQUEST, r->method);
  }
  return rc;
}

/* Gateway connections must not leak into processes the application starts
 * (os.execute, io.popen, a sandbox nginx): mark every socket close-on-exec
 * as curl creates it. */
static int close_on_exec(void *userdata, curl_socket_t fd, curlsocktype purpose) {
  (void)userdata;
  (void)purpose;
  int flags = fcntl(fd, F_GETFD);
  if (flags != -1) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  return CURL_SOCKOPT_OK;
}

static CURLcode set_options(const engine *e, transfer *t, const request *r) {
  CURL *h = t->easy;
  CURLcode rc = CURLE_OK;
  SET(CURLOPT_PRIVATE, (void *)t);
  SET(CURLOPT_SHARE, e->share);
  SET(CURLOPT_ERRORBUFFER, t->errbuf);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_SOCKOPTFUNCTION, close_on_exec);
  SET(CURLOPT_URL, r->url);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the bitmask form is deprecated */
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  /* Verification is on unless the client was created with the loudly named
   * insecure_skip_tls_verify (alipay.config warns every time it is used). */
  SET(CURLOPT_SSL_VERIFYPEER, e->insecure_skip_verify ? 0L : 1L);
  SET(CURLOPT_SSL_VERIFYHOST, e->insecure_skip_verify ? 0L : 2L);
  if (e->ca_file) SET(CURLOPT_CAINFO, e->ca_file);
  /* An empty proxy also disables the *_proxy environment variables: the
   * route to the payment gateway is what the configuration says. */
  SET(CURLOPT_PROXY, e->proxy ? e->proxy : "");
  SET(CURLOPT_CONNECTTIMEOUT_MS, e->connect_timeout_ms);
  SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
  /* A reused connection that dies under a request that is not idempotent
   * makes that call unknown (it is never resent: on_read). Connections are
   * reused only while idle under 30 s (curl's default is 118 s), below the
   * usual server idle timeouts (nginx 75 s), so a server seldom closes one
   * as a request goes out on it; the ngx transport keeps the same limit. */
#if LIBCURL_VERSION_NUM >= 0x074100 /* 7.65 */
  SET(CURLOPT_MAXAGE_CONN, 30L);
#endif
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, 60L);
  SET(CURLOPT_TCP_KEEPINTVL, 30L);
  SET(CURLOPT_USERAGENT, e->user_agent);
  SET(CURLOPT_HTTPHEADER, t->req_headers);
  SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
  SET(CURLOPT_HEADERFUNCTION, on_header);
  SET(CURLOPT_HEADERDATA, (void *)t);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)t);
#if LIBCURL_VERSION_NUM >= 0x075000
  SET(CURLOPT_PREREQFUNCTION, on_prereq);
  SET(CURLOPT_PREREQDATA, (void *)t);
#else
  /* No prereq callback before 7.80: a request without a body would be
   * resent whole; a fresh connection is never retried. */
  if (!r->idempotent && !r->body) SET(CURLOPT_FRESH_CONNECT, 1L);
#endif
  if (rc == CURLE_OK) rc = set_method(t, r);
  return rc;
}

#undef SET

/* Validates the request at idx (raising on misuse), fills an idle transfer
 * and adds it to the multi handle. Returns it, or NULL with *err set. */
static transfer *start_transfer(lua_State *L, engine *e, int idx, int blocking, const char **err) {
  int top = lua_gettop(L);
  request r;
  read_request(L, idx, e, &r);
  transfer *t = transfer_acquire(e);
  if (!t) {
    *err = "out of memory";
    return NULL;
  }
  add_headers(L, t, r.headers_idx);
  t->limit = e->max_response;
  t->blocking = blocking;
  t->idempotent = r.idempotent;
  CURLcode rc = set_options(e, t, &r);
  lua_settop(L, top); /* curl has copied every string */
  if (rc != CURLE_OK) {
    *err = curl_easy_strerror(rc);
    return NULL;
  }
  queue_move(t, &e->running);
  CURLMcode mc = curl_multi_add_handle(e->multi, t->easy);
  if (mc != CURLM_OK) {
    queue_move(t, &e->idle);
    *err = curl_multi_strerror(mc);
    return NULL;
  }
  return t;
}

/* ---- driving the multi handle ---- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Lets curl do all it can without waiting, then moves each finished
 * transfer off the multi handle: submitted ones to the done queue (kept
 * for wait(), whoever is driving), the blocking one to held. */
static CURLMcode drive(engine *e) {
  int still_running, left;
  CURLMsg *msg;
  CURLMcode mc = curl_multi_perform(e->multi, &still_running);
  if (mc != CURLM_OK) return mc;
  while ((msg = curl_multi_info_read(e->multi, &left))) {
    char *priv = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
    transfer *t = (transfer *)(void *)priv;
    t->result = msg->data.result;
    curl_multi_remove_handle(e->multi, t->easy);
    queue_move(t, t->blocking ? &e->held : &e->done);
  }
  return CURLM_OK;
}

/* Waits for socket activity or curl's next timer, at most slice_ms. */
static CURLMcode poll_once(engine *e, long slice_ms) {
  CURLMcode mc = curl_multi_poll(e->multi, NULL, 0, (int)slice_ms, NULL);
  return mc == CURLM_OK ? drive(e) : mc;
}

/* ---- pushing results ---- */

static const char *trim(const char *p, const char *end, const char **out_end) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
  *out_end = end;
  return p;
}

/* t[key] = value, or "old, value" when the header is repeated (the list
 * form of RFC 9110 §5.3), or "old value" for an obsolete folded line. */
static void add_value(lua_State *L, int tbl, int key, const char *v, size_t n, const char *sep) {
  lua_pushvalue(L, key);
  lua_rawget(L, tbl);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushlstring(L, v, n);
  } else {
    lua_pushstring(L, sep);
    lua_pushlstring(L, v, n);
    lua_concat(L, 3);
  }
  lua_pushvalue(L, key);
  lua_insert(L, -2);
  lua_rawset(L, tbl);
}

static void push_lower(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    luaL_addchar(&b, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
  }
  luaL_pushresult(&b);
}

/* {lowercased name = value} from the raw header lines. */
static void push_headers(lua_State *L, const buffer *raw) {
  const char *p = raw->data, *end = p + raw->len;
  lua_newtable(L);
  int tbl = lua_gettop(L);
  lua_pushnil(L); /* the last name, for folded lines */
  int last = tbl + 1;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = nl ? nl : end, *v_end;
    const char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (p < line_end && (*p == ' ' || *p == '\t')) {
      const char *v = trim(p, line_end, &v_end);
      if (!lua_isnil(L, last) && v < v_end) add_value(L, tbl, last, v, (size_t)(v_end - v), " ");
    } else if (colon && colon > p && !(line_end - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      const char *v = trim(colon + 1, line_end, &v_end);
      push_lower(L, p, (size_t)(colon - p));
      lua_replace(L, last);
      add_value(L, tbl, last, v, (size_t)(v_end - v), ", ");
    }
    p = nl ? nl + 1 : end;
  }
  lua_pop(L, 1);
}

static void push_response(lua_State *L, const transfer *t) {
  long status = 0, connects = 0;
  curl_off_t total_us = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
  curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  push_headers(L, &t->headers);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, t->body.len ? t->body.data : "", t->body.len);
  lua_setfield(L, -2, "body");
  lua_pushinteger(L, (lua_Integer)connects);
  lua_setfield(L, -2, "connects");
  lua_pushnumber(L, (lua_Number)total_us / 1000.0);
  lua_setfield(L, -2, "time_ms");
}

/* The peer closed the connection under us (RST or EPIPE). */
static int peer_reset(const transfer *t) {
  long os_errno = 0;
  curl_easy_getinfo(t->easy, CURLINFO_OS_ERRNO, &os_errno);
  return os_errno == ECONNRESET || os_errno == EPIPE;
}

/* libcurl's own refusal of a header line over CURL_MAX_HTTP_HEADER: it
 * says only CURLE_OUT_OF_MEMORY, after the request went out and while the
 * header block is still open (a real shortage there is far less likely). */
static int curl_header_too_large(const transfer *t) {
  long sent = 0;
  if (t->failed != FAIL_NONE || t->result != CURLE_OUT_OF_MEMORY || t->headers_done) return 0;
  curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
  return sent > 0;
}

/* The stable error code of a failed transfer, for retry policies. */
static const char *failure_code(const transfer *t) {
  if (t->failed == FAIL_TOO_LARGE || t->failed == FAIL_HEADERS_TOO_LARGE || curl_header_too_large(t))
    return "too_large";
  if (t->failed == FAIL_NOT_RESENT) return "reset";
  if (t->failed == FAIL_NO_MEMORY) return "other";
  switch (t->result) {
  case CURLE_SEND_FAIL_REWIND: return "reset";
  case CURLE_OPERATION_TIMEDOUT: return "timeout";
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
#if LIBCURL_VERSION_NUM >= 0x074900 /* 7.73 */
  case CURLE_PROXY:
#endif
  case CURLE_COULDNT_CONNECT: return "connect";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
#if LIBCURL_VERSION_NUM >= 0x074d00 /* 7.77 */
  case CURLE_SSL_CLIENTCERT:
#endif
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_USE_SSL_FAILED: return "tls";
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2_STREAM: return "reset";
  case CURLE_SEND_ERROR: return peer_reset(t) ? "reset" : "send";
  case CURLE_RECV_ERROR: return peer_reset(t) ? "reset" : "recv";
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_HTTP2: return "recv";
  case CURLE_FILESIZE_EXCEEDED: return "too_large";
  default: return "other";
  }
}

/* Pushes nil, message, code. The message comes from curl's error buffer,
 * which describes the connection, never the request's headers or body. */
static int push_failure(lua_State *L, const transfer *t) {
  char msg[CURL_ERROR_SIZE + 64];
  if (t->failed == FAIL_TOO_LARGE) {
    snprintf(msg, sizeof msg, "response larger than max_response_bytes (%zu bytes)", t->limit);
  } else if (t->failed == FAIL_HEADERS_TOO_LARGE || curl_header_too_large(t)) {
    snprintf(msg, sizeof msg, "response headers too large (over %zu bytes)", header_limit(t));
  } else if (t->failed == FAIL_NOT_RESENT) {
    snprintf(msg, sizeof msg, "the connection closed after the request was sent, before any answer; "
                              "not resent (it may have arrived)");
  } else if (t->failed == FAIL_NO_MEMORY) {
    snprintf(msg, sizeof msg, "out of memory while receiving the response");
  } else {
    size_t n = strlen(t->errbuf);
    while (n && (t->errbuf[n - 1] == '\n' || t->errbuf[n - 1] == '\r')) n--;
    snprintf(msg, sizeof msg, "%.*s", (int)n, t->errbuf);
    if (!n) snprintf(msg, sizeof msg, "%s", curl_easy_strerror(t->result));
  }
  lua_pushnil(L);
  lua_pushstring(L, msg);
  lua_pushstring(L, failure_code(t));
  return 3;
}

/* res | nil, err, code */
static int push_result(lua_State *L, const transfer *t) {
  if (t->result == CURLE_OK && t->failed == FAIL_NONE) {
    push_response(L, t);
    return 1;
  }
  return push_failure(L, t);
}

/* {id=, res=} or {id=, err=, code=} */
static void push_outcome(lua_State *L, const transfer *t) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, t->id);
  lua_setfield(L, -2, "id");
  if (push_result(L, t) == 1) {
    lua_setfield(L, -2, "res");
    return;
  }
  lua_setfield(L, -4, "code");
  lua_setfield(L, -3, "err");
  lua_pop(L, 1);
  /* began: response bytes (a status line at least) arrived before the
   * failure, so the server answered something: a cut answer, not a reset
   * before any byte. Campaigns record the difference (unknown reasons). */
  long header_bytes = 0;
  curl_easy_getinfo(t->easy, CURLINFO_HEADER_SIZE, &header_bytes);
  lua_pushboolean(L, header_bytes > 0);
  lua_setfield(L, -2, "began");
}

/* nil, message, "other": the engine itself failed, not a transfer. */
static int push_engine_failure(lua_State *L, const char *what) {
  ap_push_error(L, "http: %s", what);
  lua_pushliteral(L, "other");
  return 3;
}

/* ---- methods ---- */

/* engine:request(req) -> res | nil, err, code. Blocking; other submitted
 * transfers progress meanwhile and their results wait for wait(). */
static int l_request(lua_State *L) {
  engine *e = check_engine(L, 1);
  const char *err = NULL;
  /* A result whose push raised last time is dropped now. */
  while (e->held.head) transfer_recycle(e, e->held.head);
  transfer *t = start_transfer(L, e, 2, 1, &err);
  if (!t) return push_engine_failure(L, err);
  CURLMcode mc = drive(e);
  while (mc == CURLM_OK && t->on == &e->running) mc = poll_once(e, POLL_SLICE_MS);
  ERR_clear_error(); /* whatever libcurl's TLS left on this thread's queue */
  if (mc != CURLM_OK) {
    if (t->on == &e->running) curl_multi_remove_handle(e->multi, t->easy);
    transfer_recycle(e, t);
    return push_engine_failure(L, curl_multi_strerror(mc));
  }
  int n = push_result(L, t);
  transfer_recycle(e, t);
  return n;
}

/* engine:submit(req) -> id | nil, err, code */
static int l_submit(lua_State *L) {
  engine *e = check_engine(L, 1);
  const char *err = NULL;
  transfer *t = start_transfer(L, e, 2, 0, &err);
  if (!t) return push_engine_failure(L, err);
  t->id = ++e->last_id;
  lua_pushinteger(L, t->id);
  return 1;
}

/* Every finished submitted transfer, in completion order. They leave the
 * done queue only once the whole list is built, so a memory error while
 * building it loses nothing. */
static int push_done(lua_State *L, engine *e) {
  int i = 0;
  lua_createtable(L, e->done.count, 0);
  for (transfer *t = e->done.head; t; t = t->next) {
    push_outcome(L, t);
    lua_rawseti(L, -2, ++i);
  }
  while (e->done.head) transfer_recycle(e, e->done.head);
  return 1;
}

/* poll_once that a signal caught by core.signals_catch also wakes: the
 * handler writes to a pipe polled with the sockets (signal.c says why a
 * pipe, not EINTR alone nor curl_multi_wakeup). */
static CURLMcode poll_or_signal(engine *e, long slice_ms) {
  struct curl_waitfd wake = {ap_signal_wake_fd(), CURL_WAIT_POLLIN, 0};
  CURLMcode mc = curl_multi_poll(e->multi, &wake, wake.fd >= 0 ? 1 : 0, (int)slice_ms, NULL);
  if (wake.revents) ap_signal_drain_wake();
  return mc == CURLM_OK ? drive(e) : mc;
}

/* engine:wait([timeout_ms]) -> list of {id=, res=, err=, code=}; returns
 * as soon as one transfer has finished, at the timeout (possibly empty),
 * or at once when nothing is in flight. No timeout: until one finishes.
 * A signal caught by core.signals_catch during the wait ends it early
 * (possibly empty), so that the caller sees it at once. */
static int l_wait(lua_State *L) {
  engine *e = check_engine(L, 1);
  lua_Number timeout = luaL_optnumber(L, 2, -1);
  if (!lua_isnoneornil(L, 2) && !(timeout >= 0 && timeout <= MAX_TIMEOUT_MS))
    return luaL_argerror(L, 2, "timeout_ms must be a number of milliseconds >= 0");
  long long deadline = now_ms() + (long long)timeout;
  int signals = ap_signal_count(); /* those caught before the wait do not end it */
  CURLMcode mc = drive(e);
  while (mc == CURLM_OK && !e->done.head && e->running.head && ap_signal_count() == signals) {
    long slice = POLL_SLICE_MS;
    if (timeout >= 0) {
      long long left = deadline - now_ms();
      if (left <= 0) break;
      if (left < slice) slice = (long)left;
    }
    mc = poll_or_signal(e, slice);
  }
  ERR_clear_error();
  if (mc != CURLM_OK) return push_engine_failure(L, curl_multi_strerror(mc));
  return push_done(L, e);
}

/* Submitted transfers whose result wait() has not returned yet (finished
 * ones included, so that `while engine:pending() > 0` drains everything). */
static int l_pending(lua_State *L) {
  engine *e = check_engine(L, 1);
  lua_pushinteger(L, e->running.count + e->done.count);
  return 1;
}

static int l_close(lua_State *L) {
  engine_release(luaL_checkudata(L, 1, AP_HTTP_MT));
  return 0;
}

static int l_tostring(lua_State *L) {
  engine *e = luaL_checkudata(L, 1, AP_HTTP_MT);
  if (!e->multi) lua_pushliteral(L, AP_HTTP_MT " (closed)");
  else lua_pushfstring(L, AP_HTTP_MT " (%d pending)", e->running.count + e->done.count);
  return 1;
}

void ap_register_http(lua_State *L) {
  static const luaL_Reg meta[] = {
      {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"request", l_request}, {"submit", l_submit},
                                     {"wait", l_wait},       {"pending", l_pending},
                                     {"close", l_close},     {NULL, NULL}};
  static const luaL_Reg fns[] = {{"http", l_http}, {NULL, NULL}};
  /* Once per process is what libcurl wants; later calls only count up. */
  if (global_init_result != CURLE_OK) global_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
  ap_new_class(L, AP_HTTP_MT, meta, methods);
  luaL_setfuncs(L, fns, 0);
}
