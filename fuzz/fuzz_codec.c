/* core.b64decode(text), core.aes_decrypt(key_b64, text) and
 * core.aes_decrypt(text, cipher_b64): base64 with whitespace, key
 * checking, AES-CBC with PKCS#7 padding. b64decode output must
 * round-trip through b64encode. */
#include "fuzz_common.h"

/* spec/fixtures/vectors.json, aes[1]. */
#define KEY_B64 "aa4BtZ4tspm2wnXLb1ThQA=="
#define CIPHER_B64 "ILpoMowjIQjfYMR847rnFQ=="

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();

  fz_push_fn(L, "b64decode");
  lua_pushlstring(L, (const char *)data, size);
  if (fz_call(L, "b64decode", 1)) {
    int raw = lua_gettop(L);
    fz_push_fn(L, "b64encode");
    lua_pushvalue(L, raw);
    if (!fz_call(L, "b64encode", 1)) abort();
    fz_push_fn(L, "b64decode");
    lua_insert(L, -2);
    if (!fz_call(L, "b64decode(b64encode(x))", 1) || !lua_rawequal(L, -1, raw)) {
      fprintf(stderr, "\nFUZZ CONTRACT: b64decode(b64encode(x)) ~= x\n");
      abort();
    }
  }
  fz_done(L);

  fz_push_fn(L, "aes_decrypt");
  lua_pushliteral(L, KEY_B64);
  lua_pushlstring(L, (const char *)data, size);
  fz_call(L, "aes_decrypt(KEY, input)", 2);
  fz_done(L);

  fz_push_fn(L, "aes_decrypt");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushliteral(L, CIPHER_B64);
  fz_call(L, "aes_decrypt(input, CIPHER)", 2);
  fz_done(L);
  return 0;
}
