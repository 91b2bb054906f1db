/* The failure returns of alipay.core (error.h): every unit uses them, and
 * they use nothing of the core's, so they sit at the bottom of its units. */
#include <stdarg.h>
#include <stdio.h>
#include <openssl/err.h>
#include "error.h"

int ap_push_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  char msg[256];
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  ERR_clear_error();
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

int ap_push_ssl_error(lua_State *L, const char *what) {
  /* Only the library's reason string is used: OpenSSL never puts key
   * bytes in it, and we never add the input ourselves. */
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  return ap_push_error(L, "%s: %s", what, reason ? reason : "OpenSSL error");
}
