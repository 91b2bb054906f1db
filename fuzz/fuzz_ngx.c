/* The ngx transport's HTTP/1.1 response parser (Lua, in
 * lua/alipay/transport/ngx.lua), driven through fuzz/harness.lua with a
 * fake ngx table and cosocket that serve the input as the server's bytes.
 *
 * libFuzzer only sees the coverage of instrumented C; the parser is Lua.
 * A line hook turns Lua's (previous line, line) pairs into an extra
 * module of 8-bit counters, so new paths through the Lua code count as
 * new coverage. ALIPAY_ROOT (set by run.sh) is the repository;
 * ALIPAY_FUZZ_LUA_PATH, when set, goes first on package.path (to fuzz a
 * patched copy of the transport past a known bug without editing it). */
#include "fuzz_common.h"

#ifndef ALIPAY_ROOT
#define ALIPAY_ROOT "."
#endif

#define LUA_EDGES (1 << 16)
static uint8_t lua_counters[LUA_EDGES];
static uintptr_t lua_prev;
/* libFuzzer wants a PC table as long as the counters: {pc, flags} pairs,
 * here made-up PCs (never symbolized unless -print_pcs is given). */
static uintptr_t lua_pcs[2 * LUA_EDGES];

void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop);
void __sanitizer_cov_pcs_init(const uintptr_t *pcs_beg, const uintptr_t *pcs_end);

__attribute__((constructor)) static void register_lua_counters(void) {
  for (uintptr_t i = 0; i < LUA_EDGES; i++) lua_pcs[2 * i] = 0x10000000u + 4 * i;
  __sanitizer_cov_8bit_counters_init(lua_counters, lua_counters + LUA_EDGES);
  __sanitizer_cov_pcs_init(lua_pcs, lua_pcs + 2 * LUA_EDGES);
}

static void line_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t here = ((uintptr_t)ar->source * 31u) ^ ((uintptr_t)ar->currentline * 2654435761u);
  uint8_t *c = &lua_counters[(here ^ (lua_prev >> 1)) & (LUA_EDGES - 1)];
  if (*c != 255) (*c)++;
  lua_prev = here;
}

static int harness_ref = LUA_NOREF;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fz_state();
  if (harness_ref == LUA_NOREF) {
    const char *setup =
        "local root, extra = ...\n"
        "package.path = (extra and extra .. ';' or '') .. root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. root .."
        " '/fuzz/?.lua;' .. package.path\n"
        "return require('harness').ngx\n";
    if (luaL_loadstring(L, setup) != LUA_OK) abort();
    lua_pushliteral(L, ALIPAY_ROOT);
    lua_pushstring(L, getenv("ALIPAY_FUZZ_LUA_PATH")); /* nil when unset */
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
      fprintf(stderr, "fuzz_ngx: cannot load the harness: %s\n", lua_tostring(L, -1));
      abort();
    }
    harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
  lua_pushlstring(L, (const char *)data, size);
  lua_prev = 0;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "\nFUZZ CONTRACT: %s\n", lua_tostring(L, -1));
    abort();
  }
  fz_done(L);
  return 0;
}
