/* core.form_decode(body): application/x-www-form-urlencoded, decoded once,
 * malformed escapes and repeated fields refused. A decoded table must
 * re-encode and decode to the same fields. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_push_fn(L, "form_decode");
  lua_pushlstring(L, (const char *)data, size);
  if (fz_call(L, "form_decode", 1)) {
    int t = lua_gettop(L);
    fz_push_fn(L, "form_encode");
    lua_pushvalue(L, t);
    if (fz_call(L, "form_encode", 1)) {
      fz_push_fn(L, "form_decode");
      lua_insert(L, -2);
      if (!fz_call(L, "form_decode(form_encode(t))", 1)) {
        fprintf(stderr, "\nFUZZ CONTRACT: form_encode output does not decode\n");
        abort();
      }
      int u = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, t)) {
        lua_pushvalue(L, -2);
        lua_rawget(L, u);
        if (!lua_rawequal(L, -1, -2)) {
          fprintf(stderr, "\nFUZZ CONTRACT: form_decode(form_encode(t)) differs from t\n");
          abort();
        }
        lua_pop(L, 2);
      }
    }
  }
  fz_done(L);
  return 0;
}
