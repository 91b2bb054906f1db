/* alipay.core: the exact and hot primitives of the Alipay protocol.
 * This file only assembles the module: it is the top of the units, which
 * never call back into it. Each area lives in its own unit (keys.c, sign.c,
 * extract.c, ...); what they share sits below them (error.c, codec.c). */
#include "alipay.h"

#define AP_VERSION "0.1.0"

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
  ap_register_signal(L);
  lua_pushliteral(L, AP_VERSION);
  lua_setfield(L, -2, "_VERSION");
  return 1;
}
