/* Lua 5.1 (LuaJIT) vs 5.4 differences, behind ap_-prefixed shims so the
 * rest of the core is written once against a single API. */
#ifndef ALIPAY_COMPAT_H
#define ALIPAY_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 502
#define ap_rawlen(L, i) lua_rawlen((L), (i))
#else
#define ap_rawlen(L, i) lua_objlen((L), (i))
#endif

/* luaL_newlib is a 5.2+ macro; LuaJIT 2.1 has luaL_setfuncs. */
#define ap_newlib(L, l) \
  (lua_createtable((L), 0, (int)(sizeof(l) / sizeof((l)[0]) - 1)), luaL_setfuncs((L), (l), 0))

/* A metatable whose __name is set on every Lua version (5.4 sets it itself). */
static inline void ap_newmetatable(lua_State *L, const char *name) {
  if (luaL_newmetatable(L, name)) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
  }
}

#endif
