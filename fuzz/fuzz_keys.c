/* core.private_key(text) and core.public_key(text): PEM framing, bare
 * base64, PKCS#1/PKCS#8/SPKI/X.509 parsing. A key that parses is used. */
#include "fuzz_common.h"

static void use_key(lua_State *L, int is_private) {
  int key = lua_gettop(L);
  static const char *const methods[] = {"bits", "format", "public_pem", "public_base64"};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
    lua_getfield(L, key, methods[i]);
    lua_pushvalue(L, key);
    if (fz_call(L, methods[i], 1)) lua_pop(L, 1);
  }
  if (is_private) {
    lua_getfield(L, key, "sign");
    lua_pushvalue(L, key);
    lua_pushliteral(L, "fuzz");
    if (fz_call(L, "sign", 2)) lua_pop(L, 1);
  } else {
    /* false, reason is a valid answer of verify: check it raises nothing. */
    lua_getfield(L, key, "verify");
    lua_pushvalue(L, key);
    lua_pushliteral(L, "fuzz");
    lua_pushliteral(L, "AAAA");
    if (lua_pcall(L, 3, LUA_MULTRET, 0) != LUA_OK) {
      fprintf(stderr, "\nFUZZ CONTRACT: verify raised: %s\n", lua_tostring(L, -1));
      abort();
    }
  }
  lua_settop(L, key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  fz_push_fn(L, "private_key");
  lua_pushlstring(L, (const char *)data, size);
  if (fz_call(L, "private_key", 1)) use_key(L, 1);
  fz_done(L);
  fz_push_fn(L, "public_key");
  lua_pushlstring(L, (const char *)data, size);
  if (fz_call(L, "public_key", 1)) use_key(L, 0);
  fz_done(L);
  return 0;
}
