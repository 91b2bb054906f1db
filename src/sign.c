/* The string to sign of docs/protocol.md §1.2 and §3.2: sorted k=v pairs joined
 * by '&', raw values, no encoding. In C because it runs on every request
 * and every notification, and byte-order sorting must be exact. */
#include <stdlib.h>
#include <string.h>
#include "alipay.h"

typedef struct {
  const char *key;
  size_t key_len;
  const char *value;
  size_t value_len;
} pair;

static int pair_cmp(const void *a, const void *b) {
  const pair *x = a, *y = b;
  return ap_bytes_cmp(x->key, x->key_len, y->key, y->key_len);
}

/* Builds the set of excluded keys at stack index `set` from opts.exclude,
 * which may be a list {"sign_type"} or a set {sign_type = true}. */
static void load_excludes(lua_State *L, int opts, int set) {
  if (lua_isnoneornil(L, opts)) return;
  luaL_checktype(L, opts, LUA_TTABLE);
  lua_getfield(L, opts, "exclude");
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return; }
  if (!lua_istable(L, -1)) luaL_error(L, "sign_content: opts.exclude must be a table");
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TNUMBER && lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, set);
    } else if (lua_type(L, -2) == LUA_TSTRING && lua_toboolean(L, -1)) {
      lua_pushvalue(L, -2);
      lua_pushboolean(L, 1);
      lua_rawset(L, set);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int excluded(lua_State *L, int set, const char *key, size_t key_len) {
  if (key_len == 4 && memcmp(key, "sign", 4) == 0) return 1;
  lua_pushlstring(L, key, key_len);
  lua_rawget(L, set);
  int yes = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return yes;
}

/* sign_content(params[, opts]) -> "k=v&k=v" */
static int l_sign_content(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_newtable(L);
  int set = lua_gettop(L);
  load_excludes(L, 2, set);

  int count = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    count++;
    lua_pop(L, 1);
  }
  pair *pairs = lua_newuserdata(L, sizeof(pair) * (size_t)(count ? count : 1));
  int used = 0, anchored = 0; /* number strings live in set[1..] */
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "sign_content: parameter names must be strings, got a %s",
                        luaL_typename(L, -2));
    int t = lua_type(L, -1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_error(L, "sign_content: parameter '%s' is a %s, expected a string",
                        lua_tostring(L, -2), luaL_typename(L, -1));
    pair *p = &pairs[used];
    p->key = lua_tolstring(L, -2, &p->key_len);
    if (t == LUA_TNUMBER) {
      /* Convert a copy (never the caller's table) and anchor it, so the
       * pointer stays valid until the result is built. */
      lua_pushvalue(L, -1);
      p->value = lua_tolstring(L, -1, &p->value_len);
      lua_rawseti(L, set, ++anchored);
    } else {
      p->value = lua_tolstring(L, -1, &p->value_len);
    }
    if (p->value_len > 0 && !excluded(L, set, p->key, p->key_len)) used++;
    lua_pop(L, 1);
  }
  qsort(pairs, (size_t)used, sizeof(pair), pair_cmp);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < used; i++) {
    if (i) luaL_addchar(&b, '&');
    luaL_addlstring(&b, pairs[i].key, pairs[i].key_len);
    luaL_addchar(&b, '=');
    luaL_addlstring(&b, pairs[i].value, pairs[i].value_len);
  }
  luaL_pushresult(&b);
  return 1;
}

void ap_register_sign(lua_State *L) {
  static const luaL_Reg fns[] = {{"sign_content", l_sign_content}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
