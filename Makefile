# lua-alipay: build the C core for Lua 5.4 and LuaJIT, test, bench, demo.
# Every entry point that needs packages calls `deps` first, so a fresh
# Debian machine needs only `make demo` or `make test`.

PREFIX ?= /usr/local
DESTDIR ?=
LUA_VERSION ?= 5.4
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_VERSION)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_VERSION)
LUAJIT_LIBDIR ?= $(PREFIX)/lib/lua/5.1
BINDIR ?= $(PREFIX)/bin

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wpointer-arith -Wformat=2
BASE_CFLAGS = -std=gnu99 -fPIC -fvisibility=hidden $(WARN)
# Recursive (=) so that pkg-config runs when a recipe needs it, after deps.
LIBS = $(shell pkg-config --libs openssl libcurl)
LUA54_CFLAGS = $(shell pkg-config --cflags lua5.4)
LUAJIT_CFLAGS = $(shell pkg-config --cflags luajit)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC := $(wildcard src/*.c)
HDR := $(wildcard src/*.h)

CORE_54 := build/lua5.4/alipay/core.so
CORE_JIT := build/luajit/alipay/core.so
CORE_ASAN := build/asan/alipay/core.so

BUSTED_54 := lua5.4 /usr/bin/busted
BUSTED_JIT := luajit /usr/bin/busted
BUSTED_FLAGS ?=
# The specs of the C core (spec/unit/0*, core.http in spec/integration/10,
# core.iconv in spec/unit/32): run under
# LuaJIT, sanitizers and valgrind as well.
CORE_SPECS := $(wildcard spec/unit/0*_spec.lua) spec/integration/10-http_spec.lua spec/integration/11-http_signal_spec.lua spec/unit/32-charset_spec.lua

# Debian packages: build (compiler, headers), run (interpreters, cjson,
# argparse for the CLI, expat for the app gateway's XML, SQLite and
# PostgreSQL through lua-dbi for the store, the openssl CLI for keys of the
# sandbox, nginx with the Lua module for the sandbox gateway), test (busted,
# luacheck, valgrind, luarocks and git for `make rock`, which packs a rock
# from a git+file:// clone, and the PostgreSQL 15 server the store's specs
# start in a temporary directory: spec/support/postgres.lua).
DEB_BUILD := gcc make pkg-config liblua5.4-dev libluajit2-5.1-dev libssl-dev libcurl4-openssl-dev
DEB_RUN := lua5.4 luajit2 lua-cjson lua-argparse lua-expat lua-dbi-sqlite3 lua-dbi-postgresql openssl nginx \
  libnginx-mod-http-lua
DEB_TEST := lua-busted lua-check valgrind luarocks git clang postgresql-15
DEB_PACKAGES := $(DEB_BUILD) $(DEB_RUN) $(DEB_TEST)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps print-deps print-core-specs rock fuzz test test-54 test-unit test-integration test-jit lint asan valgrind bench demo soak install install-product install-sandbox uninstall clean

all: $(CORE_54) $(CORE_JIT)

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

print-deps:
	@echo $(DEB_PACKAGES)

print-core-specs:
	@echo $(CORE_SPECS)

$(CORE_54): $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LUA54_CFLAGS) -shared -o $@ $(SRC) $(LIBS)

$(CORE_JIT): $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LUAJIT_CFLAGS) -shared -o $@ $(SRC) $(LIBS)

$(CORE_ASAN): $(SRC) $(HDR)
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) -O1 -g $(SANITIZE) $(LUA54_CFLAGS) -shared -o $@ $(SRC) $(LIBS)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-54 test-jit

test-54:
	$(BUSTED_54) $(BUSTED_FLAGS) spec

# spec/unit/ needs no server and no child process (seconds); spec/integration/
# starts nginx, the sandbox gateway or child processes on 127.0.0.1.
test-unit: all
	$(BUSTED_54) $(BUSTED_FLAGS) spec/unit

test-integration: all
	$(BUSTED_54) $(BUSTED_FLAGS) spec/integration

# The LuaJIT core and the modules OpenResty runs (client, sandbox gateway
# logic, notifications, app gateway) are specified under LuaJIT too.
JIT_SPECS := $(CORE_SPECS) spec/unit/11-client_spec.lua spec/unit/20-sandbox_gateway_spec.lua \
  spec/unit/24-escaped_slashes_spec.lua spec/unit/25-cert_rotation_spec.lua \
  spec/unit/30-notify_spec.lua spec/unit/31-gateway_spec.lua
# alipay.runtime and the transports' contract and request validator.
JIT_SPECS += spec/unit/12-runtime_spec.lua spec/unit/13-transport_contract_spec.lua spec/unit/14-util_spec.lua spec/unit/63-mini_limits_spec.lua
test-jit:
	ALIPAY_BUILD=build/luajit $(BUSTED_JIT) $(BUSTED_FLAGS) $(JIT_SPECS)

lint: deps
	luacheck -q $(wildcard lua sandbox bin spec bench examples fuzz soak)

# Every plain-Lua spec, with an ASan/UBSan build of the core. The Lua
# interpreter is not instrumented, so the sanitizer runtime is preloaded;
# leaks are checked at exit by LeakSanitizer. (nginx, the sandbox and child
# processes run the ordinary builds.) ASAN_SPECS=… runs fewer.
# The specs that talk to PostgreSQL run in a second pass without the leak
# check: lua-dbi-postgresql never frees a connection that failed to open
# (libpq's PGconn of a refused login or port), and reports it from a module
# Lua has unloaded by then, which no suppression can name. They are still
# checked for every memory error.
ASAN_SPECS ?= spec
PG_SPECS := $(shell grep -l 'support.postgres' spec/unit/*_spec.lua spec/integration/*_spec.lua)
ASAN_RUN = ALIPAY_BUILD=build/asan LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/spec/lsan.supp:print_suppressions=0
asan: deps all $(CORE_ASAN)
ifeq ($(ASAN_SPECS),spec)
	$(ASAN_RUN) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(BUSTED_54) $(BUSTED_FLAGS) \
	  $(filter-out $(PG_SPECS),$(wildcard spec/unit/*_spec.lua spec/integration/*_spec.lua))
	$(ASAN_RUN) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 $(BUSTED_54) $(BUSTED_FLAGS) $(PG_SPECS)
else
	$(ASAN_RUN) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 $(BUSTED_54) $(BUSTED_FLAGS) $(ASAN_SPECS)
endif

# Every plain-Lua spec under valgrind by default (slow: the whole suite
# takes a long time); VALGRIND_SPECS=… runs fewer (CI runs the core specs).
# The specs stretch the few network timings a slow client must keep up with
# by ALIPAY_SPEC_TIME_SCALE (spec/helpers.lua): valgrind runs Lua ~10x slower.
VALGRIND_SPECS ?= spec
VALGRIND_TIME_SCALE ?= 10
valgrind: deps all
	ALIPAY_SPEC_TIME_SCALE=$(VALGRIND_TIME_SCALE) valgrind --quiet --error-exitcode=99 --leak-check=full --suppressions=spec/valgrind.supp \
	  --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
	  $(BUSTED_54) $(BUSTED_FLAGS) $(VALGRIND_SPECS)

# The rockspecs, offline (--deps-mode=none: Debian's lua-cjson, lua-expat,
# lua-argparse and lua-dbi-sqlite3 (and -postgresql) stand in for the rocks), in a throwaway
# tree, each step in a fresh copy (luarocks leaves objects beside the sources):
#   1. luarocks lint on the three rockspecs;
#   2. Lua 5.4: the library and CLI rocks built and installed; the
#      luarocks-wrapped bin/alipay runs --help from /tmp with no
#      LUA_PATH/LUA_CPATH and has no `sandbox` command; then the sandbox
#      rock is installed, and `alipay --help` lists `sandbox`;
#   3. LuaJIT (what OpenResty runs): the library rock built for the 5.1 ABI
#      against LuaJIT's headers into the same tree; every module it installs
#      loads under `luajit`, and the core signs; then the 5.4 CLI starts and
#      stops a sandbox gateway (nginx loads that LuaJIT core from the tree);
#   4. `luarocks pack` of the library and sandbox rockspecs with source.url
#      git+file:// on a clone of this checkout's HEAD (commit first), and a
#      build of each packed .src.rock.
# Debian's LuaRocks 3.8 does not find curl's headers (multiarch) on its own.
ROCK_FLAGS := --deps-mode=none CURL_INCDIR=/usr/include/$(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
ROCK_LUAJIT_INCDIR ?= /usr/include/luajit-2.1
PRODUCT_ROCKSPECS := lua-alipay-scm-1.rockspec lua-alipay-cli-scm-1.rockspec
SANDBOX_ROCKSPEC := lua-alipay-sandbox-scm-1.rockspec
ROCKSPECS := $(PRODUCT_ROCKSPECS) $(SANDBOX_ROCKSPEC)
ROCK_CLEAN_ENV := env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 \
  -u ALIPAY_LUAJIT_CPATH -u ALIPAY_BUILD
rock: deps
	@set -e; tree=$$(mktemp -d); trap 'rm -rf "$$tree"' EXIT; \
	copy() { rm -rf "$$tree/checkout"; mkdir "$$tree/checkout"; \
	  cp -r src lua sandbox bin $(ROCKSPECS) "$$tree/checkout"; }; \
	rock_make() { (cd "$$tree/checkout" && for r in "$$@"; do \
	  luarocks --lua-version 5.4 --tree "$$tree" make $$r $(ROCK_FLAGS) >"$$tree/log" 2>&1 || \
	  { cat "$$tree/log"; exit 1; }; done); }; \
	for r in $(ROCKSPECS); do luarocks lint $$r; done; echo "luarocks lint: $(ROCKSPECS)"; \
	copy; rock_make $(PRODUCT_ROCKSPECS); \
	cd /tmp; $(ROCK_CLEAN_ENV) "$$tree/bin/alipay" --help >"$$tree/help"; grep -q '^Usage: alipay' "$$tree/help"; \
	if grep -q '^   sandbox ' "$$tree/help"; then echo "alipay --help lists sandbox without its rock"; exit 1; fi; \
	test ! -e "$$tree/share/lua/5.4/alipay/sandbox"; \
	echo "lua 5.4: lua-alipay and lua-alipay-cli installed; $$tree/bin/alipay --help runs, no sandbox command"; \
	cd "$(CURDIR)"; rock_make $(SANDBOX_ROCKSPEC); \
	cd /tmp; $(ROCK_CLEAN_ENV) "$$tree/bin/alipay" --help | grep -q '^   sandbox '; \
	echo "lua 5.4: lua-alipay-sandbox installed; alipay --help lists sandbox"; \
	cd "$(CURDIR)"; copy; (cd "$$tree/checkout" && luarocks --lua-version 5.1 --tree "$$tree" make \
	  lua-alipay-scm-1.rockspec $(ROCK_FLAGS) LUA_INCDIR=$(ROCK_LUAJIT_INCDIR) >"$$tree/log" 2>&1) || \
	  { cat "$$tree/log"; exit 1; }; \
	cd /tmp; eval "$$(luarocks --lua-version 5.1 --tree "$$tree" path)"; \
	modules=$$(cd "$$tree/share/lua/5.1" && find alipay -name '*.lua' | sed 's|/init\.lua$$||; s|\.lua$$||; s|/|.|g' | sort | tr '\n' ' '); \
	luajit -e "assert(package.searchpath('alipay.core', package.cpath):find('$$tree/lib/lua/5.1/', 1, true)) \
	  for m in ('$$modules'):gmatch('%S+') do require(m) end \
	  local a = require 'alipay' assert(a.core.sign_content{a='1'} == 'a=1') \
	  print('luajit: lua-alipay ' .. a.VERSION .. ' built for 5.1; loaded: $$modules')"; \
	$(ROCK_CLEAN_ENV) "$$tree/bin/alipay" sandbox start --app-id 2021000122671080 \
	  --app-public-key "$(CURDIR)/spec/fixtures/keys/app_public.pem" --state "$$tree/sandbox.json" --json >/dev/null; \
	$(ROCK_CLEAN_ENV) "$$tree/bin/alipay" sandbox stop --state "$$tree/sandbox.json" >/dev/null; \
	echo "lua 5.4 + luajit: $$tree/bin/alipay sandbox start/stop (nginx ran the tree's LuaJIT core)"; \
	cd "$(CURDIR)"; git clone -q "$(CURDIR)" "$$tree/clone"; mkdir "$$tree/pack"; \
	for r in lua-alipay-scm-1.rockspec $(SANDBOX_ROCKSPEC); do \
	  sed "s|^  url = \".*\",|  url = \"git+file://$$tree/clone\",|" $$r >"$$tree/pack/$$r"; \
	  grep -q "git+file://$$tree/clone" "$$tree/pack/$$r"; \
	  (cd "$$tree/pack" && luarocks --lua-version 5.4 pack $$r >"$$tree/log" 2>&1 && \
	    luarocks --lua-version 5.4 --tree "$$tree/packed" build $${r%.rockspec}.src.rock $(ROCK_FLAGS) >>"$$tree/log" 2>&1) || \
	    { cat "$$tree/log"; exit 1; }; \
	done; \
	test -f "$$tree/packed/lib/lua/5.4/alipay/core.so"; \
	test -f "$$tree/packed/share/lua/5.4/alipay/sandbox/openapi.lua"; \
	echo "luarocks pack: lua-alipay-scm-1.src.rock and $(SANDBOX_ROCKSPEC:.rockspec=.src.rock) from git+file://" \
	  "(HEAD $$(git rev-parse --short HEAD)), built and installed"

# libFuzzer targets of the core and of the ngx transport's response parser
# (fuzz/README.md); each runs FUZZ_SECONDS.
FUZZ_SECONDS ?= 10
fuzz: deps
	fuzz/run.sh $(FUZZ_SECONDS)

bench: deps all
	lua5.4 bench/core.lua
	lua5.4 bench/client.lua
	lua5.4 bench/campaign.lua

demo: deps all
	lua5.4 examples/demo.lua

# Issue 13's soak (soak/run.lua says what it counts): answers dropped on
# reused connections, a paused runner taken over, repeated Ctrl-C/SIGTERM,
# against the sandbox on 127.0.0.1, a few minutes. Its last line is
# `lost=L duplicated=D (checked N recipients in K runs)`; it fails unless
# both are 0 and every scenario ran. SOAK_SEED=N repeats its random moments.
# soak/tally_spec.lua (the two counts' rules) runs first.
soak: deps all
	$(BUSTED_54) soak/tally_spec.lua
	lua5.4 soak/run.lua

# bin/alipay as installed: its INSTALLED line names the PREFIX paths (not
# DESTDIR's: a staged tree is moved into place), so the command finds its
# modules and core with no LUA_PATH/LUA_CPATH, like a LuaRocks wrapper.
define INSTALL_BIN
local text = io.read("a")
local line = ("local INSTALLED = { share = %q, lib = %q }"):format(os.getenv("LUA_SHAREDIR"), os.getenv("LUA_LIBDIR"))
local out, n = text:gsub("\nlocal INSTALLED = nil[^\n]*", function() return "\n" .. line end)
assert(n == 1, "bin/alipay: no INSTALLED line to rewrite")
io.write(out)
endef
export INSTALL_BIN

# The LuaJIT build goes beside Lua 5.1 modules: OpenResty and the sandbox
# gateway load it from there (the Lua modules are shared by both).
# `make install` installs the product (lua/) and the sandbox gateway
# (sandbox/lua/, which `make demo` and `alipay sandbox` need);
# SANDBOX=no leaves the sandbox out (a production host), and
# `make install-sandbox` adds it later.
SANDBOX ?= yes
install: install-product $(if $(filter no,$(SANDBOX)),,install-sandbox)

install-product: $(CORE_54) $(CORE_JIT)
	install -d "$(DESTDIR)$(LUA_LIBDIR)/alipay" "$(DESTDIR)$(LUAJIT_LIBDIR)/alipay" \
	  "$(DESTDIR)$(LUA_SHAREDIR)" "$(DESTDIR)$(BINDIR)"
	install -m 0755 $(CORE_54) "$(DESTDIR)$(LUA_LIBDIR)/alipay/core.so"
	install -m 0755 $(CORE_JIT) "$(DESTDIR)$(LUAJIT_LIBDIR)/alipay/core.so"
	LUA_SHAREDIR='$(LUA_SHAREDIR)' LUA_LIBDIR='$(LUA_LIBDIR)' lua5.4 -e "$$INSTALL_BIN" \
	  <bin/alipay >"$(DESTDIR)$(BINDIR)/alipay"
	chmod 0755 "$(DESTDIR)$(BINDIR)/alipay"
	cd lua && for f in $$(find alipay -name '*.lua'); do \
	  install -D -m 0644 $$f "$(DESTDIR)$(LUA_SHAREDIR)/$$f"; done

install-sandbox:
	cd sandbox/lua && for f in $$(find alipay -name '*.lua'); do \
	  install -D -m 0644 $$f "$(DESTDIR)$(LUA_SHAREDIR)/$$f"; done

uninstall:
	rm -rf "$(DESTDIR)$(LUA_LIBDIR)/alipay" "$(DESTDIR)$(LUAJIT_LIBDIR)/alipay" \
	  "$(DESTDIR)$(LUA_SHAREDIR)/alipay" "$(DESTDIR)$(BINDIR)/alipay"

clean:
	rm -rf build
