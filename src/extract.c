/* Extraction of the signed content of a v2 response (docs/protocol.md §2.1).
 *
 * Alipay signs the exact bytes of the "<method>_response" value as it sent
 * them ("\/" escapes, "&amp;", spacing), so the value is never parsed and
 * re-serialised: this unit scans the top-level object once, remembers where
 * the interesting values start and end, and hands those spans to Lua.
 *
 * Values nested inside the top level are skipped, not validated: a string
 * ends at a quote preceded by an even number of backslashes, and objects
 * and arrays are skipped with a depth counter in a loop, so hostile nesting
 * costs no C stack (only the bracket closing the value must match the one
 * opening it). Their grammar is checked later by the JSON parser that reads
 * the verified content. */
#include <string.h>
#include "alipay.h"

#define RESPONSE_SUFFIX "_response"
#define RESPONSE_SUFFIX_LEN (sizeof(RESPONSE_SUFFIX) - 1)

/* ---- scanner ---- */

typedef struct {
  const char *s;
  size_t n;
  size_t i;         /* offset of the next unread byte */
  const char *err;  /* what is wrong, NULL while all is well */
  size_t err_at;    /* 0-based offset the problem was found at */
  int err_at_end;   /* the body ended where more was required */
} scanner;

static int fail(scanner *sc, const char *what, size_t at) {
  sc->err = what;
  sc->err_at = at;
  sc->err_at_end = 0;
  return 0;
}

static int fail_at_end(scanner *sc) {
  sc->err = "body ends unexpectedly";
  sc->err_at = sc->n;
  sc->err_at_end = 1;
  return 0;
}

static int is_json_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static void skip_space(scanner *sc) {
  while (sc->i < sc->n && is_json_space((unsigned char)sc->s[sc->i])) sc->i++;
}

/* Offset of the quote that closes the string whose opening quote is at
 * `open`, or n when the body ends first. A quote closes the string when it
 * is preceded by an even number of backslashes (docs/protocol.md §2.1); memchr
 * finds the candidates, and each backslash run is counted only once, at
 * the quote it precedes, so the scan stays linear. */
static size_t closing_quote(const char *s, size_t n, size_t open) {
  size_t from = open + 1;
  while (from < n) {
    const char *q = memchr(s + from, '"', n - from);
    if (!q) break;
    size_t at = (size_t)(q - s), run = 0;
    while (s[at - 1 - run] == '\\') run++; /* stops at the opening quote */
    if (run % 2 == 0) return at;
    from = at + 1;
  }
  return n;
}

static int skip_string(scanner *sc) {
  size_t close = closing_quote(sc->s, sc->n, sc->i);
  if (close >= sc->n) return fail(sc, "unterminated string starting", sc->i);
  sc->i = close + 1;
  return 1;
}

/* Objects and arrays share one counter: brackets only count outside
 * strings, and the bracket that brings the depth back to zero must match
 * the one that opened the value. */
static int skip_container(scanner *sc) {
  const char *s = sc->s;
  size_t open = sc->i;
  char closer = s[open] == '{' ? '}' : ']';
  size_t depth = 0;
  for (size_t i = open; i < sc->n; i++) {
    char c = s[i];
    if (c == '"') {
      size_t close = closing_quote(s, sc->n, i);
      if (close >= sc->n) return fail(sc, "unterminated string starting", i);
      i = close;
    } else if (c == '{' || c == '[') {
      depth++;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      if (c != closer) return fail(sc, "mismatched bracket", i);
      sc->i = i + 1;
      return 1;
    }
  }
  return fail(sc, closer == '}' ? "unterminated object starting" : "unterminated array starting",
              open);
}

static size_t skip_digits(const char *s, size_t n, size_t i) {
  while (i < n && is_digit((unsigned char)s[i])) i++;
  return i;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int skip_number(scanner *sc) {
  const char *s = sc->s;
  size_t n = sc->n, start = sc->i, i = sc->i;
  if (s[i] == '-') i++;
  if (i >= n) return fail_at_end(sc);
  if (s[i] == '0') i++;
  else if (is_digit((unsigned char)s[i])) i = skip_digits(s, n, i);
  else return fail(sc, "invalid number", start);
  if (i < n && s[i] == '.') {
    if (++i >= n) return fail_at_end(sc);
    if (!is_digit((unsigned char)s[i])) return fail(sc, "invalid number", start);
    i = skip_digits(s, n, i);
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    if (++i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n) return fail_at_end(sc);
    if (!is_digit((unsigned char)s[i])) return fail(sc, "invalid number", start);
    i = skip_digits(s, n, i);
  }
  sc->i = i;
  return 1;
}

static int skip_literal(scanner *sc, const char *word, size_t len) {
  size_t left = sc->n - sc->i;
  if (memcmp(sc->s + sc->i, word, left < len ? left : len) != 0)
    return fail(sc, "invalid literal", sc->i);
  if (left < len) return fail_at_end(sc);
  sc->i += len;
  return 1;
}

static int skip_value(scanner *sc) {
  if (sc->i >= sc->n) return fail_at_end(sc);
  switch (sc->s[sc->i]) {
    case '"': return skip_string(sc);
    case '{':
    case '[': return skip_container(sc);
    case 't': return skip_literal(sc, "true", 4);
    case 'f': return skip_literal(sc, "false", 5);
    case 'n': return skip_literal(sc, "null", 4);
    default:
      if (sc->s[sc->i] == '-' || is_digit((unsigned char)sc->s[sc->i])) return skip_number(sc);
      return fail(sc, "unexpected character where a value should start", sc->i);
  }
}

static int expect(scanner *sc, char c, const char *what) {
  skip_space(sc);
  if (sc->i >= sc->n) return fail_at_end(sc);
  if (sc->s[sc->i] != c) return fail(sc, what, sc->i);
  sc->i++;
  return 1;
}

/* ---- the top-level members extraction cares about ---- */

enum { M_NODE, M_ERROR_RESPONSE, M_SIGN, M_CERT_SN, M_COUNT };

typedef struct {
  const char *name;
  size_t name_len;
  int seen;
  size_t at, len; /* the value: offset of its first byte and length */
} member;

typedef struct {
  member m[M_COUNT];
  int duplicate; /* index of a member seen twice, or -1 */
} members;

static void members_init(members *ms, const char *node, size_t node_len) {
  static const char *const fixed[M_COUNT] = {NULL, "error_response", "sign", "alipay_cert_sn"};
  memset(ms, 0, sizeof *ms);
  ms->duplicate = -1;
  for (int k = 0; k < M_COUNT; k++) {
    ms->m[k].name = k == M_NODE ? node : fixed[k];
    ms->m[k].name_len = k == M_NODE ? node_len : strlen(fixed[k]);
  }
}

/* Records the value span of the key s[key..key+key_len) if it is one we
 * want. The node is matched first, so asking for "error_response" itself
 * counts each occurrence once. Returns 0 on a repeated key: with two copies
 * of the node or the sign, which one a reader takes would depend on the
 * reader, which is exactly what an injected member relies on. */
static int record_member(members *ms, const char *key, size_t key_len, size_t at, size_t len) {
  for (int k = 0; k < M_COUNT; k++) {
    member *m = &ms->m[k];
    if (m->name_len != key_len || memcmp(m->name, key, key_len) != 0) continue;
    if (m->seen) {
      ms->duplicate = k;
      return 0;
    }
    m->seen = 1;
    m->at = at;
    m->len = len;
    return 1;
  }
  return 1;
}

/* One pass over the whole body: the top-level object and nothing after it
 * but whitespace. Returns 1, or 0 with sc->err set or ms->duplicate >= 0. */
static int scan_top_level(scanner *sc, members *ms) {
  skip_space(sc);
  if (sc->i >= sc->n) return fail_at_end(sc);
  if (sc->s[sc->i] != '{') return fail(sc, "top level is not a JSON object", sc->i);
  sc->i++;
  skip_space(sc);
  if (sc->i < sc->n && sc->s[sc->i] == '}') {
    sc->i++;
  } else {
    for (;;) {
      skip_space(sc);
      if (sc->i >= sc->n) return fail_at_end(sc);
      if (sc->s[sc->i] != '"') return fail(sc, "expected a key string", sc->i);
      size_t key = sc->i + 1;
      if (!skip_string(sc)) return 0;
      size_t key_len = sc->i - 1 - key;
      if (!expect(sc, ':', "expected ':' after a key")) return 0;
      skip_space(sc);
      size_t value = sc->i;
      if (!skip_value(sc)) return 0;
      if (!record_member(ms, sc->s + key, key_len, value, sc->i - value)) return 0;
      skip_space(sc);
      if (sc->i >= sc->n) return fail_at_end(sc);
      if (sc->s[sc->i] == '}') {
        sc->i++;
        break;
      }
      if (sc->s[sc->i] != ',') return fail(sc, "expected ',' or '}' after a value", sc->i);
      sc->i++;
    }
  }
  skip_space(sc);
  if (sc->i < sc->n) return fail(sc, "trailing data after the top-level object", sc->i);
  return 1;
}

/* ---- JSON string unescaping (sign, alipay_cert_sn) ---- */

static int hex4(const char *s, size_t n, size_t i, unsigned *out) {
  unsigned v = 0;
  if (i + 4 > n) return 0;
  for (size_t k = i; k < i + 4; k++) {
    unsigned char c = (unsigned char)s[k];
    unsigned d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10u;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10u;
    else return 0;
    v = v << 4 | d;
  }
  *out = v;
  return 1;
}

static void add_utf8(luaL_Buffer *b, unsigned cp) {
  if (cp < 0x80) {
    luaL_addchar(b, (char)cp);
  } else if (cp < 0x800) {
    luaL_addchar(b, (char)(0xC0 | cp >> 6));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    luaL_addchar(b, (char)(0xE0 | cp >> 12));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  } else {
    luaL_addchar(b, (char)(0xF0 | cp >> 18));
    luaL_addchar(b, (char)(0x80 | (cp >> 12 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp >> 6 & 0x3F)));
    luaL_addchar(b, (char)(0x80 | (cp & 0x3F)));
  }
}

/* Decodes the \u escape at s[i] (the backslash) into a code point, joining
 * a surrogate pair; returns the number of bytes consumed, 0 if invalid. */
static size_t read_u_escape(const char *s, size_t n, size_t i, unsigned *cp) {
  unsigned hi, lo;
  if (!hex4(s, n, i + 2, &hi)) return 0;
  if (hi >= 0xDC00 && hi <= 0xDFFF) return 0;
  if (hi < 0xD800 || hi > 0xDBFF) {
    *cp = hi;
    return 6;
  }
  if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u' || !hex4(s, n, i + 8, &lo) ||
      lo < 0xDC00 || lo > 0xDFFF)
    return 0;
  *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
  return 12;
}

static int simple_escape(char c, char *out) {
  switch (c) {
    case '"': *out = '"'; return 1;
    case '\\': *out = '\\'; return 1;
    case '/': *out = '/'; return 1;
    case 'b': *out = '\b'; return 1;
    case 'f': *out = '\f'; return 1;
    case 'n': *out = '\n'; return 1;
    case 'r': *out = '\r'; return 1;
    case 't': *out = '\t'; return 1;
    default: return 0;
  }
}

/* Pushes the unescaped text of the string body s[0..n) (quotes excluded).
 * Returns 0, or the offset + 1 of an invalid escape, pushing nothing. */
static size_t push_unescaped(lua_State *L, const char *s, size_t n) {
  const char *backslash = memchr(s, '\\', n);
  if (!backslash) { /* the usual case: nothing to decode */
    lua_pushlstring(L, s, n);
    return 0;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && s[run] != '\\') run++;
    luaL_addlstring(&b, s + i, run - i);
    if (run >= n) break;
    char c;
    unsigned cp;
    size_t used;
    if (run + 1 < n && simple_escape(s[run + 1], &c)) {
      luaL_addchar(&b, c);
      i = run + 2;
    } else if (run + 1 < n && s[run + 1] == 'u' && (used = read_u_escape(s, n, run, &cp))) {
      add_utf8(&b, cp);
      i = run + used;
    } else {
      luaL_pushresult(&b);
      lua_pop(L, 1);
      return run + 1;
    }
  }
  luaL_pushresult(&b);
  return 0;
}

/* ---- Lua: extract ---- */

static int is_name_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '.';
}

/* Pushes the node name for the argument: a node name ("..._response") is
 * taken as it is, a method name ("alipay.trade.create") becomes
 * "alipay_trade_create_response". Names are plain identifiers, so a key in
 * the body can be compared byte for byte without unescaping it. */
static const char *push_node_name(lua_State *L, int arg, size_t *len) {
  size_t n;
  const char *name = luaL_checklstring(L, arg, &n);
  luaL_argcheck(L, n > 0, arg, "empty method or node name");
  for (size_t i = 0; i < n; i++)
    luaL_argcheck(L, is_name_char((unsigned char)name[i]), arg,
                  "method or node names contain only letters, digits, '_' and '.'");
  int is_node = n >= RESPONSE_SUFFIX_LEN &&
                memcmp(name + n - RESPONSE_SUFFIX_LEN, RESPONSE_SUFFIX, RESPONSE_SUFFIX_LEN) == 0;
  if (is_node) {
    lua_pushvalue(L, arg);
  } else {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) luaL_addchar(&b, name[i] == '.' ? '_' : name[i]);
    luaL_addlstring(&b, RESPONSE_SUFFIX, RESPONSE_SUFFIX_LEN);
    luaL_pushresult(&b);
  }
  return lua_tolstring(L, -1, len);
}

static int push_scan_error(lua_State *L, const scanner *sc) {
  if (sc->err_at_end) {
    if (sc->n == 0) return ap_push_error(L, "extract: empty body");
    return ap_push_error(L, "extract: %s after byte %zu", sc->err, sc->n);
  }
  return ap_push_error(L, "extract: %s at byte %zu", sc->err, sc->err_at + 1);
}

/* Sets t[field] to the unescaped string member, or leaves it nil when the
 * member is absent. Returns 0, or pushes nil, err and returns 2. */
static int set_string_member(lua_State *L, int t, const char *body, const member *m,
                             const char *field) {
  if (!m->seen) return 0;
  if (body[m->at] != '"')
    return ap_push_error(L, "extract: %s is not a string at byte %zu", m->name, m->at + 1);
  size_t bad = push_unescaped(L, body + m->at + 1, m->len - 2);
  if (bad)
    return ap_push_error(L, "extract: invalid escape in %s at byte %zu", m->name, m->at + 1 + bad);
  lua_setfield(L, t, field);
  return 0;
}

/* extract(body, method_or_node) -> {content=, sign=, cert_sn=, node=,
 * encrypted=} or nil, err. */
static int l_extract(lua_State *L) {
  size_t n, node_len;
  const char *body = luaL_checklstring(L, 1, &n);
  const char *node = push_node_name(L, 2, &node_len);

  scanner sc = {body, n, 0, NULL, 0, 0};
  members ms;
  members_init(&ms, node, node_len);
  if (!scan_top_level(&sc, &ms)) {
    if (ms.duplicate >= 0)
      return ap_push_error(L, "extract: %.100s appears more than once", ms.m[ms.duplicate].name);
    return push_scan_error(L, &sc);
  }

  const member *chosen = ms.m[M_NODE].seen ? &ms.m[M_NODE]
                         : ms.m[M_ERROR_RESPONSE].seen ? &ms.m[M_ERROR_RESPONSE]
                                                        : NULL;
  if (!chosen) return ap_push_error(L, "extract: no %.100s or error_response in the body", node);
  char first = body[chosen->at];
  if (first != '{' && first != '"')
    return ap_push_error(L, "extract: %.100s is not an object or a string at byte %zu",
                         chosen->name, chosen->at + 1);

  lua_createtable(L, 0, 5);
  int t = lua_gettop(L);
  lua_pushlstring(L, body + chosen->at, chosen->len);
  lua_setfield(L, t, "content");
  lua_pushlstring(L, chosen->name, chosen->name_len);
  lua_setfield(L, t, "node");
  lua_pushboolean(L, first == '"');
  lua_setfield(L, t, "encrypted");
  int r = set_string_member(L, t, body, &ms.m[M_SIGN], "sign");
  if (!r) r = set_string_member(L, t, body, &ms.m[M_CERT_SN], "cert_sn");
  return r ? r : 1;
}

void ap_register_extract(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"extract", l_extract},
      {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
