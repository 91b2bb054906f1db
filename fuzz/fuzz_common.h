/* Shared by the libFuzzer targets of alipay.core: one lua_State per
 * process with the core opened by luaopen_alipay_core (compiled into the
 * fuzzer), and a checked call through the Lua API.
 *
 * The contract checked on every call (README, "Conventions"): for string
 * arguments a core function returns a value, or nil and a string message.
 * It never raises. A raised Lua error, or nil without a message, aborts:
 * libFuzzer then saves the input as a crash. */
#ifndef ALIPAY_FUZZ_COMMON_H
#define ALIPAY_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

int luaopen_alipay_core(lua_State *L);

static lua_State *fz_L;
static int fz_core; /* registry reference to the module table */

static inline lua_State *fz_state(void) {
  if (fz_L) return fz_L;
  fz_L = luaL_newstate();
  if (!fz_L) abort();
  luaL_openlibs(fz_L);
  luaL_requiref(fz_L, "alipay.core", luaopen_alipay_core, 0);
  fz_core = luaL_ref(fz_L, LUA_REGISTRYINDEX);
  return fz_L;
}

/* Pushes core[name]. */
static inline void fz_push_fn(lua_State *L, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, fz_core);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* Calls the function under the nargs arguments on the stack (pushed after
 * it) in protected mode and checks the contract. Leaves the first result
 * on the stack when it is not nil (for follow-up calls), else nothing.
 * Returns 1 when a value was left, 0 for nil, err. */
static inline int fz_call(lua_State *L, const char *what, int nargs) {
  int base = lua_gettop(L) - nargs - 1;
  if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
    fprintf(stderr, "\nFUZZ CONTRACT: %s raised a Lua error: %s\n", what,
            lua_tostring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
    abort();
  }
  int nres = lua_gettop(L) - base;
  if (nres < 1) {
    fprintf(stderr, "\nFUZZ CONTRACT: %s returned nothing\n", what);
    abort();
  }
  if (lua_isnil(L, base + 1)) {
    if (nres < 2 || lua_type(L, base + 2) != LUA_TSTRING) {
      fprintf(stderr, "\nFUZZ CONTRACT: %s returned nil without a message\n", what);
      abort();
    }
    lua_settop(L, base);
    return 0;
  }
  lua_settop(L, base + 1);
  return 1;
}

/* Ends the calls of one input. */
static inline void fz_done(lua_State *L) {
  lua_settop(L, 0);
  /* A full collection after every input: libFuzzer runs a leak check
   * whenever an input leaves more mallocs than frees, and Lua garbage
   * would trigger one on every input. */
  lua_gc(L, LUA_GCCOLLECT, 0);
}

#endif
