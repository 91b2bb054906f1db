/* Millisecond clocks and sleeping for plain Lua, which has only whole
 * seconds (os.time) and no sleep: rate limiting, backoff and timestamps
 * need both. Under nginx, use ngx.now/ngx.sleep instead (they yield). */
#include <errno.h>
#include <time.h>
#include "alipay.h"

static double clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* core.now_ms() -> milliseconds since the Unix epoch (wall clock) */
static int l_now_ms(lua_State *L) {
  lua_pushnumber(L, clock_ms(CLOCK_REALTIME));
  return 1;
}

/* core.monotonic_ms() -> milliseconds of a clock that never jumps (for
 * measuring intervals; its origin is arbitrary) */
static int l_monotonic_ms(lua_State *L) {
  lua_pushnumber(L, clock_ms(CLOCK_MONOTONIC));
  return 1;
}

/* core.sleep_ms(ms): blocks the thread, resuming after signals. */
static int l_sleep_ms(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_argcheck(L, ms >= 0 && ms <= 86400000, 1, "must be between 0 and 86400000");
  struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (lua_Number)((time_t)(ms / 1000)) * 1000) * 1e6)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
  return 0;
}

void ap_register_clock(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"now_ms", l_now_ms}, {"monotonic_ms", l_monotonic_ms}, {"sleep_ms", l_sleep_ms}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
