/* core.iconv(from, to, text): charset conversion with glibc iconv(3).
 * Alipay's app gateway historically posts GBK; notifications are verified
 * over the bytes as received and only then converted for the caller.
 *
 * Memory discipline: every attempt runs in convert_into(), a plain C
 * function that opens, uses and closes the iconv descriptor without
 * touching the Lua state. The output buffer is a Lua userdata allocated
 * before the attempt, so nothing can raise (out of memory) while the
 * descriptor is open, and nothing malloc'ed outlives a Lua error. When the
 * buffer is too small the attempt is abandoned and redone into a buffer
 * twice as large: conversions restart from scratch, which keeps stateful
 * encodings (ISO-2022-*, UTF-7) correct without carrying iconv state
 * across Lua allocations. */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include "alipay.h"

typedef enum {
  CONV_OK,
  CONV_TOO_SMALL,  /* E2BIG: retry with a larger buffer */
  CONV_UNSUPPORTED,
  CONV_INVALID,    /* EILSEQ: a byte sequence that is invalid in `from`
                      or has no equivalent in `to` */
  CONV_INCOMPLETE, /* EINVAL: the input ends inside a multibyte sequence */
  CONV_FAILED      /* any other errno */
} conv_status;

typedef struct {
  size_t out_len; /* bytes written on CONV_OK */
  size_t at;      /* input offset of the failure (CONV_INVALID/INCOMPLETE) */
  int err;        /* errno of CONV_FAILED / CONV_UNSUPPORTED */
} conv_result;

/* Converts in[0..n) into out[0..cap). Opens and closes its own descriptor
 * on every path. */
static conv_status convert_into(const char *from, const char *to, const char *in, size_t n,
                                char *out, size_t cap, conv_result *r) {
  iconv_t cd = iconv_open(to, from);
  if (cd == (iconv_t)-1) {
    r->err = errno;
    return CONV_UNSUPPORTED;
  }
  /* iconv's prototype takes char ** for the input but does not write it. */
  char *inp = (char *)(uintptr_t)in;
  size_t inleft = n;
  char *outp = out;
  size_t outleft = cap;
  conv_status st = CONV_OK;
  size_t rc = iconv(cd, &inp, &inleft, &outp, &outleft);
  if (rc == (size_t)-1) {
    int e = errno;
    r->at = n - inleft;
    st = e == E2BIG ? CONV_TOO_SMALL
       : e == EILSEQ ? CONV_INVALID
       : e == EINVAL ? CONV_INCOMPLETE
       : CONV_FAILED;
    r->err = e;
  } else {
    /* Flush: stateful encodings emit their return-to-initial-state
     * sequence here, which may itself not fit. */
    rc = iconv(cd, NULL, NULL, &outp, &outleft);
    if (rc == (size_t)-1) {
      r->err = errno;
      st = r->err == E2BIG ? CONV_TOO_SMALL : CONV_FAILED;
    }
  }
  iconv_close(cd);
  r->out_len = cap - outleft;
  return st;
}

/* A charset name as iconv_open takes it, without glibc's "//TRANSLIT" or
 * "//IGNORE" suffixes: those turn failures into silent data changes, and
 * //IGNORE reports EILSEQ only at the end, after converting the rest. */
static int plain_charset_name(const char *name, size_t len) {
  return len > 0 && len <= 64 && strchr(name, '/') == NULL && strlen(name) == len;
}

/* iconv(from, to, text) -> converted text | nil, err */
static int l_iconv(lua_State *L) {
  size_t from_len, to_len, n;
  const char *from = luaL_checklstring(L, 1, &from_len);
  const char *to = luaL_checklstring(L, 2, &to_len);
  const char *text = luaL_checklstring(L, 3, &n);
  if (!plain_charset_name(from, from_len) || !plain_charset_name(to, to_len))
    return ap_push_error(L, "iconv: charset names must be plain names such as GBK or UTF-8");

  /* Most conversions Alipay needs (GBK <-> UTF-8) grow by at most 3/2;
   * the loop below handles anything larger. */
  size_t cap = n + n / 2 + 16;
  for (;;) {
    char *out = lua_newuserdata(L, cap);
    conv_result r = {0, 0, 0};
    conv_status st = convert_into(from, to, text, n, out, cap, &r);
    switch (st) {
      case CONV_OK:
        lua_pushlstring(L, out, r.out_len);
        return 1;
      case CONV_TOO_SMALL:
        lua_pop(L, 1);
        if (cap > ((size_t)-1) / 2) return ap_push_error(L, "iconv: output too large");
        cap *= 2;
        break;
      case CONV_UNSUPPORTED:
        return ap_push_error(L, "iconv: conversion from %.64s to %.64s is not supported", from, to);
      case CONV_INVALID:
        return ap_push_error(L, "iconv: invalid or unconvertible %.64s sequence at byte %zu", from,
                             r.at + 1);
      case CONV_INCOMPLETE:
        return ap_push_error(L, "iconv: incomplete %.64s sequence at the end of the input", from);
      case CONV_FAILED:
      default:
        return ap_push_error(L, "iconv: %s", strerror(r.err));
    }
  }
}

void ap_register_charset(lua_State *L) {
  static const luaL_Reg fns[] = {{"iconv", l_iconv}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
