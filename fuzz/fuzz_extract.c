#define _GNU_SOURCE /* memmem */
/* core.extract(body, name): the string-aware scan of Alipay's signed
 * response bytes, with a method name, a node name and error_response. */
#include "fuzz_common.h"

static const char *const NAMES[] = {"alipay.trade.query", "alipay_trade_query_response",
                                    "error_response", "a"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
    fz_push_fn(L, "extract");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushstring(L, NAMES[i]);
    if (fz_call(L, "extract", 2)) {
      /* A result always has content and node strings; sign/cert_sn are
       * strings when present. */
      lua_getfield(L, -1, "content");
      lua_getfield(L, -2, "node");
      if (lua_type(L, -1) != LUA_TSTRING || lua_type(L, -2) != LUA_TSTRING) {
        fprintf(stderr, "\nFUZZ CONTRACT: extract result without content/node\n");
        abort();
      }
      /* content is a substring of the body. */
      size_t cl;
      const char *c = lua_tolstring(L, -2, &cl);
      if (cl > size || !memmem(data, size, c, cl)) {
        fprintf(stderr, "\nFUZZ CONTRACT: extract content is not part of the body\n");
        abort();
      }
    }
    fz_done(L);
  }
  return 0;
}
