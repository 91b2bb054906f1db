/* Codecs: base64, PEM framing, application/x-www-form-urlencoded, random
 * hex. Hand-written because each has a strictness OpenSSL's and libcurl's
 * versions lack (whitespace-tolerant but otherwise strict base64, '+' for
 * space, duplicate-field rejection). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>
#include "alipay.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet, 64 for '=', 65 for whitespace, 66 for anything else. */
static unsigned char b64_class(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return (unsigned char)(c - 'A');
  if (c >= 'a' && c <= 'z') return (unsigned char)(c - 'a' + 26);
  if (c >= '0' && c <= '9') return (unsigned char)(c - '0' + 52);
  if (c == '+') return 62;
  if (c == '/') return 63;
  if (c == '=') return 64;
  if (c == ' ' || c == '\t' || c == '\r' || c == '\n') return 65;
  return 66;
}

size_t ap_b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

void ap_b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *out++ = B64[v >> 18];
    *out++ = B64[(v >> 12) & 63];
    *out++ = B64[(v >> 6) & 63];
    *out++ = B64[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    *out++ = B64[v >> 18];
    *out++ = B64[(v >> 12) & 63];
    *out++ = '=';
    *out++ = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    *out++ = B64[v >> 18];
    *out++ = B64[(v >> 12) & 63];
    *out++ = B64[(v >> 6) & 63];
    *out++ = '=';
  }
}

size_t ap_b64_decoded_max(size_t n) { return n / 4 * 3 + 3; }

long ap_b64_decode(const char *in, size_t n, unsigned char *out) {
  uint32_t acc = 0;
  int have = 0, pad = 0;
  long len = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = b64_class((unsigned char)in[i]);
    if (c == 65) continue;
    if (c == 66) return -1;
    if (c == 64) {
      /* '=' only in the last quantum, at most two of them. */
      if (have < 2 || ++pad > 2) return -1;
      if (have + pad == 4) {
        if (pad == 2) out[len++] = (unsigned char)(acc >> 4);
        else { out[len++] = (unsigned char)(acc >> 10); out[len++] = (unsigned char)(acc >> 2); }
        have = 4; /* the quantum is closed: nothing may follow */
      }
      continue;
    }
    if (pad || have == 4) return -1;
    acc = acc << 6 | c;
    if (++have == 4) {
      out[len++] = (unsigned char)(acc >> 16);
      out[len++] = (unsigned char)(acc >> 8);
      out[len++] = (unsigned char)acc;
      have = 0;
      acc = 0;
    }
  }
  if (pad) return have == 4 ? len : -1;
  return have == 0 ? len : -1;
}

void ap_push_b64(lua_State *L, const unsigned char *in, size_t n) {
  size_t m = ap_b64_encoded_len(n);
  char stackbuf[1024];
  char *out = m <= sizeof stackbuf ? stackbuf : lua_newuserdata(L, m);
  ap_b64_encode(in, n, out);
  lua_pushlstring(L, out, m);
  if (out != stackbuf) lua_remove(L, -2);
}

unsigned char *ap_b64_decode_scratch(lua_State *L, const char *in, size_t n, size_t *out_len) {
  unsigned char *out = lua_newuserdata(L, ap_b64_decoded_max(n));
  long m = ap_b64_decode(in, n, out);
  if (m < 0) {
    lua_pop(L, 1);
    return NULL;
  }
  *out_len = (size_t)m;
  return out;
}

/* ---- PEM framing ---- */

static const char *find(const char *hay, size_t hay_len, const char *needle) {
  size_t nl = strlen(needle);
  if (nl > hay_len) return NULL;
  for (const char *p = hay; (p = memchr(p, needle[0], (size_t)(hay + hay_len - p) - nl + 1));
       p++) {
    if (memcmp(p, needle, nl) == 0) return p;
    if ((size_t)(hay + hay_len - p) <= nl) break;
  }
  return NULL;
}

int ap_pem_next(const char *text, size_t len, size_t *pos, char *label, size_t label_cap,
                const char **body, size_t *body_len) {
  if (*pos >= len) return 0;
  const char *end = text + len;
  const char *begin = find(text + *pos, len - *pos, "-----BEGIN ");
  if (!begin) return 0;
  const char *lab = begin + 11;
  const char *lab_end = find(lab, (size_t)(end - lab), "-----");
  if (!lab_end || memchr(lab, '\n', (size_t)(lab_end - lab))) return -1;
  size_t ll = (size_t)(lab_end - lab);
  if (ll + 1 > label_cap) ll = label_cap - 1;
  memcpy(label, lab, ll);
  label[ll] = '\0';
  const char *b = lab_end + 5;
  const char *stop = find(b, (size_t)(end - b), "-----END ");
  if (!stop) return -1;
  const char *stop_lab = stop + 9;
  if ((size_t)(end - stop_lab) < (size_t)(lab_end - lab) + 5 ||
      memcmp(stop_lab, lab, (size_t)(lab_end - lab)) != 0 ||
      memcmp(stop_lab + (lab_end - lab), "-----", 5) != 0)
    return -1;
  *body = b;
  *body_len = (size_t)(stop - b);
  *pos = (size_t)(stop_lab + (lab_end - lab) + 5 - text);
  return 1;
}

/* ---- Lua: base64 ---- */

static int l_b64encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  ap_push_b64(L, (const unsigned char *)s, n);
  return 1;
}

static int l_b64decode(lua_State *L) {
  size_t n, m;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char *out = ap_b64_decode_scratch(L, s, n, &m);
  if (!out) return ap_push_error(L, "b64decode: not valid base64");
  lua_pushlstring(L, (const char *)out, m);
  return 1;
}

/* ---- Lua: forms ---- */

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '*';
}

static void add_encoded(luaL_Buffer *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c)) luaL_addchar(b, (char)c);
    else if (c == ' ') luaL_addchar(b, '+');
    else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[c >> 4]);
      luaL_addchar(b, hex[c & 15]);
    }
  }
}

typedef struct { const char *s; size_t n; int idx; } keyref;

int ap_bytes_cmp(const char *a, size_t a_len, const char *b, size_t b_len) {
  int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
  if (c) return c;
  return a_len < b_len ? -1 : a_len > b_len;
}

static int keyref_cmp(const void *a, const void *b) {
  const keyref *x = a, *y = b;
  return ap_bytes_cmp(x->s, x->n, y->s, y->n);
}

/* form_encode(string) -> encoded string; form_encode(table) -> sorted
 * "k=v&k=v" with keys and values encoded (no fields are dropped). */
static int l_form_encode(lua_State *L) {
  luaL_Buffer b;
  if (lua_type(L, 1) != LUA_TTABLE) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_buffinit(L, &b);
    add_encoded(&b, s, n);
    luaL_pushresult(&b);
    return 1;
  }
  /* Collect and sort the keys; the strings stay alive in the table. */
  int count = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "form_encode: field names must be strings");
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "form_encode: field '%s' is a %s, expected a string", lua_tostring(L, -2),
                 luaL_typename(L, -1));
    lua_pop(L, 1);
    count++;
  }
  keyref *keys = lua_newuserdata(L, sizeof(keyref) * (size_t)(count ? count : 1));
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    keys[i].s = lua_tolstring(L, -1, &keys[i].n);
    i++;
  }
  qsort(keys, (size_t)count, sizeof(keyref), keyref_cmp);
  luaL_buffinit(L, &b);
  for (i = 0; i < count; i++) {
    size_t vn;
    lua_pushlstring(L, keys[i].s, keys[i].n);
    lua_rawget(L, 1);
    const char *v = lua_tolstring(L, -1, &vn);
    lua_pop(L, 1); /* the value is still referenced by the table */
    if (i) luaL_addchar(&b, '&');
    add_encoded(&b, keys[i].s, keys[i].n);
    luaL_addchar(&b, '=');
    add_encoded(&b, v, vn);
  }
  luaL_pushresult(&b);
  return 1;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes s[0..n) onto the stack; returns 0, or the offset + 1 of a bad
 * percent-escape. */
static size_t push_decoded(lua_State *L, const char *s, size_t n) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '+') luaL_addchar(&b, ' ');
    else if (c == '%') {
      int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
      int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
      if (i + 2 >= n) hi = -1;
      if (hi < 0 || lo < 0) {
        luaL_pushresult(&b);
        lua_pop(L, 1);
        return i + 1;
      }
      luaL_addchar(&b, (char)(hi << 4 | lo));
      i += 2;
    } else luaL_addchar(&b, (char)c);
  }
  luaL_pushresult(&b);
  return 0;
}

/* form_decode(body) -> table, decoded exactly once. Rejects a repeated
 * field: with two values for "sign" or "app_id", which one was verified
 * would depend on who reads the table. */
static int l_form_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_newtable(L);
  int t = lua_gettop(L);
  size_t i = 0;
  while (i < n) {
    const char *amp = memchr(s + i, '&', n - i);
    size_t j = amp ? (size_t)(amp - s) : n;
    if (j > i) {
      const char *eq = memchr(s + i, '=', j - i);
      size_t kend = eq ? (size_t)(eq - s) : j;
      if (kend == i) return ap_push_error(L, "form_decode: empty field name at byte %zu", i + 1);
      size_t bad = push_decoded(L, s + i, kend - i);
      if (bad) return ap_push_error(L, "form_decode: malformed percent-escape at byte %zu", i + bad);
      size_t vstart = eq ? kend + 1 : j;
      bad = push_decoded(L, s + vstart, j - vstart);
      if (bad)
        return ap_push_error(L, "form_decode: malformed percent-escape at byte %zu", vstart + bad);
      lua_pushvalue(L, -2);
      lua_rawget(L, t);
      if (!lua_isnil(L, -1)) {
        lua_pop(L, 2);
        return ap_push_error(L, "form_decode: field '%.64s' appears more than once",
                             lua_tostring(L, -1));
      }
      lua_pop(L, 1);
      lua_rawset(L, t);
    }
    i = j + 1;
  }
  return 1;
}

/* ---- Lua: random ---- */

static int l_random_hex(lua_State *L) {
  static const char hex[] = "0123456789abcdef";
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char raw[256];
  char out[512];
  luaL_argcheck(L, n >= 1 && n <= 256, 1, "byte count must be between 1 and 256");
  if (RAND_bytes(raw, (int)n) != 1) return ap_push_ssl_error(L, "random_hex");
  for (lua_Integer i = 0; i < n; i++) {
    out[2 * i] = hex[raw[i] >> 4];
    out[2 * i + 1] = hex[raw[i] & 15];
  }
  lua_pushlstring(L, out, (size_t)(2 * n));
  return 1;
}

void ap_register_codec(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"b64encode", l_b64encode},     {"b64decode", l_b64decode},
      {"form_encode", l_form_encode}, {"form_decode", l_form_decode},
      {"random_hex", l_random_hex},   {NULL, NULL},
  };
  luaL_setfuncs(L, fns, 0);
}
