/* core.signals_catch, core.signal_caught, core.signals_restore: SIGINT and
 * SIGTERM as a flag that Lua reads when it is ready, instead of an error
 * raised at whatever instruction runs when the signal comes.
 *
 * lua5.4 (and luajit) turn SIGINT into an "interrupted!" error raised by a
 * hook at the next Lua instruction. A campaign hit by it just after the curl
 * engine returned finished transfers lost those answers (delivered, but left
 * inflight in the store). Here the handler only records the signal; the send
 * loop looks at the record between steps, where stopping loses nothing.
 *
 * What the handler does is async-signal-safe and nothing more: it stores to
 * volatile sig_atomic_t variables and write()s one byte to a non-blocking
 * pipe (the self-pipe trick). The pipe is what makes waiting correct: the
 * curl engine polls its read end with its sockets (ap_signal_wake_fd), so a
 * signal that arrives just before the engine enters poll() still wakes it,
 * where relying on poll's EINTR alone would sleep a whole slice; and a signal
 * delivered to another thread (curl's resolver thread) wakes the main one.
 * curl_multi_wakeup would do the waking too, but it is not documented as
 * async-signal-safe, so it must not be called from a handler.
 *
 * The pipe, once made, stays open for the life of the process (close-on-
 * exec): a handler running on another thread while it was being closed could
 * otherwise write its byte into whatever file next took that descriptor. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "alipay.h"

static const struct {
  const char *name;
  int number;
} SIGNALS[] = {{"INT", SIGINT},   {"TERM", SIGTERM}, {"HUP", SIGHUP},
               {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}};
#define N_SIGNALS ((int)(sizeof SIGNALS / sizeof SIGNALS[0]))

/* A third signal ends the process by the signal's own default action: the
 * way out of a process that is stuck where it cannot look at the record. */
#define ESCAPE_COUNT 3

static volatile sig_atomic_t caught_count; /* signals since the handlers were installed */
static volatile sig_atomic_t first_caught; /* the first one's number, 0 for none */
static int wake_fds[2] = {-1, -1};
static struct sigaction previous[N_SIGNALS];
static int installed[N_SIGNALS];

static void on_signal(int sig) {
  int saved_errno = errno;
  if (!first_caught) first_caught = sig;
  if (caught_count < ESCAPE_COUNT) caught_count = caught_count + 1;
  if (caught_count >= ESCAPE_COUNT) {
    /* The signal is blocked while its handler runs: raise() makes it
     * pending, and the default action runs once this returns. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
  }
  if (wake_fds[1] >= 0) {
    ssize_t n = write(wake_fds[1], "", 1); /* a full pipe already wakes the poll */
    (void)n;
  }
  errno = saved_errno;
}

static int set_flags(int fd) {
  int fd_flags = fcntl(fd, F_GETFD), fl_flags = fcntl(fd, F_GETFL);
  return fd_flags != -1 && fl_flags != -1 && fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) != -1 &&
         fcntl(fd, F_SETFL, fl_flags | O_NONBLOCK) != -1;
}

static int make_wake_pipe(void) {
  int fds[2];
  if (wake_fds[0] >= 0) return 1;
  if (pipe(fds) != 0) return 0;
  if (!set_flags(fds[0]) || !set_flags(fds[1])) {
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  wake_fds[0] = fds[0];
  wake_fds[1] = fds[1];
  return 1;
}

static int any_installed(void) {
  for (int i = 0; i < N_SIGNALS; i++)
    if (installed[i]) return 1;
  return 0;
}

static int index_of(const char *name) {
  for (int i = 0; i < N_SIGNALS; i++)
    if (strcmp(SIGNALS[i].name, name) == 0) return i;
  return -1;
}

static const char *name_of(int number) {
  for (int i = 0; i < N_SIGNALS; i++)
    if (SIGNALS[i].number == number) return SIGNALS[i].name;
  return "?";
}

int ap_signal_count(void) { return (int)caught_count; }

int ap_signal_wake_fd(void) { return wake_fds[0]; }

void ap_signal_drain_wake(void) {
  char buf[64];
  if (wake_fds[0] < 0) return;
  while (read(wake_fds[0], buf, sizeof buf) > 0) {
  }
}

/* Restores what was there before, for each signal caught; forgets the
 * record. */
static void restore_all(void) {
  for (int i = 0; i < N_SIGNALS; i++) {
    if (!installed[i]) continue;
    sigaction(SIGNALS[i].number, &previous[i], NULL);
    installed[i] = 0;
  }
  caught_count = 0;
  first_caught = 0;
  ap_signal_drain_wake();
}

/* core.signals_catch{"INT", "TERM", ...} -> true | nil, err. Installs the
 * recording handler for each named signal (INT, TERM, HUP, QUIT, USR1,
 * USR2), keeping what was there for signals_restore. The record starts
 * empty when no signal was being caught before the call; catching a signal
 * already caught changes nothing. Every signal caught is blocked while the
 * handler runs, and interrupted system calls restart (SA_RESTART), except
 * those that never do, such as poll() and nanosleep(). */
static int l_signals_catch(lua_State *L) {
  int wanted[N_SIGNALS] = {0};
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)ap_rawlen(L, 1);
  luaL_argcheck(L, n > 0, 1, "expected a list of signal names such as {\"INT\", \"TERM\"}");
  for (int k = 1; k <= n; k++) {
    lua_rawgeti(L, 1, k);
    const char *name = lua_tostring(L, -1);
    int i = lua_type(L, -1) == LUA_TSTRING ? index_of(name) : -1;
    if (i < 0)
      return luaL_error(L, "signals_catch: item %d: expected one of INT, TERM, HUP, QUIT, USR1, USR2", k);
    wanted[i] = 1;
    lua_pop(L, 1);
  }
  if (!make_wake_pipe()) return ap_push_error(L, "signals_catch: cannot make a pipe: %s", strerror(errno));
  if (!any_installed()) {
    caught_count = 0;
    first_caught = 0;
    ap_signal_drain_wake();
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < N_SIGNALS; i++)
    if (wanted[i] || installed[i]) sigaddset(&sa.sa_mask, SIGNALS[i].number);
  for (int i = 0; i < N_SIGNALS; i++) {
    if (!wanted[i] || installed[i]) continue;
    if (sigaction(SIGNALS[i].number, &sa, &previous[i]) != 0) {
      int err = errno;
      restore_all();
      return ap_push_error(L, "signals_catch: SIG%s: %s", SIGNALS[i].name, strerror(err));
    }
    installed[i] = 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.signal_caught() -> name of the first signal caught ("INT"), how many
 * were caught (1, 2, ...) | nil when none was since signals_catch. */
static int l_signal_caught(lua_State *L) {
  int count = (int)caught_count, first = (int)first_caught;
  if (count == 0 || first == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, name_of(first));
  lua_pushinteger(L, count);
  return 2;
}

/* core.signals_restore() -> true: every signal caught gets back the handler
 * it had before signals_catch; the record is forgotten. Idempotent. */
static int l_signals_restore(lua_State *L) {
  restore_all();
  lua_pushboolean(L, 1);
  return 1;
}

void ap_register_signal(lua_State *L) {
  static const luaL_Reg fns[] = {{"signals_catch", l_signals_catch},
                                 {"signal_caught", l_signal_caught},
                                 {"signals_restore", l_signals_restore},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
