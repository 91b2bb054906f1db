/* Userdata types of alipay.core (http handles, keys): one metatable per
 * type with its metamethods and a method table as __index. A unit of its
 * own, below the units that define types, so that none of them calls back
 * into core.c (spec/unit/09-c_units_spec.lua). */
#include "alipay.h"

void ap_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  ap_newmetatable(L, name);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
