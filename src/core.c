/* alipay.core: the exact and hot primitives of the Alipay protocol.
 * This file only assembles the module and holds the shared helpers (errors,
 * userdata classes); each area lives in its own unit (keys.c, sign.c, ...). */
#include <stdarg.h>
#include <stdio.h>
#include <openssl/err.h>
#include "alipay.h"

#define AP_VERSION "0.1.0"

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

void ap_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  ap_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int ap_push_ssl_error(lua_State *L, const char *what) {
  /* Only the library's reason string is used: OpenSSL never puts key
   * bytes in it, and we never add the input ourselves. */
  unsigned long e = ERR_peek_last_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  return ap_push_error(L, "%s: %s", what, reason ? reason : "OpenSSL error");
}

__attribute__((visibility("default"))) int luaopen_alipay_core(lua_State *L) {
  lua_newtable(L);
  ap_register_keys(L);
  ap_register_sign(L);
  ap_register_extract(L);
  ap_register_cert(L);
  ap_register_aes(L);
  ap_register_codec(L);
  ap_register_http(L);
  ap_register_charset(L);
  ap_register_clock(L);
  lua_pushliteral(L, AP_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
