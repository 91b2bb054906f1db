#!/bin/sh
# Runs this example against the local sandbox gateway, shows a curl of
# each endpoint, then has the sandbox send its signed notification, gateway
# check and follow event to the example's endpoints:
#   1. bin/alipay sandbox start --json    (nginx on loopback, HTTP and HTTPS)
#   2. run/alipay.json   the client's settings: the sandbox's HTTPS gateway,
#                        the fixture app key, the sandbox's "Alipay" key
#      run/trusted.pem   the system CAs plus the sandbox's CA
#   3. nginx -p examples/openresty/ -c nginx.conf   on 127.0.0.1:8080
# Both are stopped at the end; with --keep they keep running (the commands
# to stop them are printed), and `run.sh --stop` stops them. Needs `make`
# first (build/luajit/alipay/core.so).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
keep=no
case "${1:-}" in
  "") ;;
  --keep) keep=yes ;;
  --stop) keep=stop ;;
  *) echo "usage: $0 [--keep | --stop]" >&2; exit 2 ;;
esac

app_id=2021000122671080
keys="$root/spec/fixtures/keys"
state="$here/run/sandbox.json"
base=http://127.0.0.1:8080

mkdir -p "$here/logs" "$here/run"

stop_all() {
  nginx -p "$here/" -c nginx.conf -e logs/error.log -s quit 2>/dev/null || true
  "$root/bin/alipay" sandbox stop --state "$state" >/dev/null 2>&1 || true
}

# The commands that stop what --keep left running; the sandbox is the one
# recorded in the state file run/sandbox.json.
stop_commands() {
  echo "  $0 --stop"
  echo "or:"
  echo "  nginx -p $here/ -c nginx.conf -e logs/error.log -s quit"
  echo "  $root/bin/alipay sandbox stop --state $state"
}

if [ "$keep" = stop ]; then
  stop_all
  echo "stopped the example's nginx and the sandbox recorded in $state"
  exit 0
fi

nginx_running() {
  [ -f "$here/logs/nginx.pid" ] && kill -0 "$(cat "$here/logs/nginx.pid")" 2>/dev/null
}
if nginx_running || "$root/bin/alipay" sandbox status --state "$state" >/dev/null 2>&1; then
  echo "run.sh: the example is still running (an earlier run.sh --keep; sandbox state file $state)." >&2
  echo "Stop it first:" >&2
  stop_commands >&2
  exit 1
fi

if [ ! -f "$root/build/luajit/alipay/core.so" ]; then
  echo "run.sh: build the core first: make" >&2
  exit 1
fi

echo "== starting the sandbox gateway"
sandbox_json=$("$root/bin/alipay" sandbox start --app-id "$app_id" \
  --app-public-key "$keys/app_public.pem" --seed "$root/spec/fixtures/sandbox_seed.json" \
  --state "$state" --json)
if [ "$keep" = no ]; then
  trap stop_all EXIT
  trap 'exit 1' INT TERM HUP PIPE  # so that EXIT runs on these too
fi

# The client's settings and the CA bundle, from what the sandbox reported.
printf '%s' "$sandbox_json" | RUN="$here/run" KEYS="$keys" lua5.4 -e '
  local cjson = require "cjson"
  local sb = cjson.decode(io.read("a"))
  local run, keys = os.getenv("RUN"), os.getenv("KEYS")
  local function write(path, text)
    local f = assert(io.open(path, "wb")); f:write(text); f:close()
  end
  write(run .. "/alipay.json", cjson.encode {
    app_id = sb.app_id,
    private_key_file = keys .. "/app_private_pkcs1.pem",
    alipay_public_key = sb.alipay_public_key,   -- inline: the sandbox prefix is private
    gateway = sb.https_gateway,                 -- verified against run/trusted.pem
    timeout_ms = 5000,
    example = { shipped_template_id = "14330d60f0ab4516853a0900827cee35",
                order_url = "https://shop.example.com/orders/" },
  })
  local bundle = io.open("/etc/ssl/certs/ca-certificates.crt", "rb")
  local system = bundle and bundle:read("a") or ""
  if bundle then bundle:close() end
  local ca = assert(io.open(sb.ca_file, "rb"))
  write(run .. "/trusted.pem", system .. "\n" .. ca:read("a"))
  ca:close()
  print("   gateway " .. sb.https_gateway)
'


# As root, nginx's workers run as the `user` of nginx.conf, and each worker
# loads run/trusted.pem itself (lua_ssl_trusted_certificate): that user must
# be able to reach it. Everything else (settings, keys, code) the master reads.
worker_user=$(sed -n 's/^user[[:space:]]\{1,\}\([^[:space:];]*\).*;.*/\1/p' "$here/nginx.conf")
chmod 0644 "$here/run/trusted.pem"
if [ "$(id -u)" = 0 ] && [ -n "$worker_user" ] && \
   ! setpriv --reuid="$worker_user" --regid="$worker_user" --init-groups test -r "$here/run/trusted.pem"; then
  echo "run.sh: nginx's workers run as $worker_user, who cannot read $here/run/trusted.pem" >&2
  echo "(a directory above it is closed to that user, e.g. /root). Let it through" >&2
  echo "(chmod o+x on each directory above it), or run from a checkout elsewhere." >&2
  exit 1
fi

echo "== starting nginx on $base"
nginx -p "$here/" -c nginx.conf -e logs/error.log

show() { # show METHOD PATH [BODY] [CONTENT-TYPE]
  echo
  echo "\$ curl -X $1 $base$2${3:+ -d '$3'}"
  if [ -n "${3:-}" ]; then
    curl -sS -X "$1" -H "Content-Type: ${4:-application/json}" --data-binary "$3" "$base$2"
  else
    curl -sS -X "$1" "$base$2"
  fi
  echo
}

# A follower of the seed; the second user does not follow the Life Account.
show POST /orders/shipped '{"user_id":"2088857585575154","order_id":"SO-1001","carrier":"顺丰","tracking_no":"SF123"}'
show POST /orders/shipped '{"user_id":"2088999999999999","order_id":"SO-1002"}'
show POST /orders/shipped '{"order_id":"SO-1003"}'
# Messages only Alipay can sign: these forgeries are refused (the specs in
# spec/integration/40-openresty_spec.lua sign them with a test key acting as Alipay).
show POST /alipay/gateway 'service=alipay.service.check&app_id=2021000122671080&sign_type=RSA2&sign=Zm9yZ2Vk&charset=utf-8&biz_content=%3CXML%3E%3CEventType%3Everifygw%3C%2FEventType%3E%3C%2FXML%3E' application/x-www-form-urlencoded
show POST /alipay/notify 'notify_id=n1&app_id=2021000122671080&out_trade_no=SO-1001&trade_status=TRADE_SUCCESS&sign_type=RSA2&sign=Zm9yZ2Vk' application/x-www-form-urlencoded

# Messages Alipay signs, sent by the sandbox with its "Alipay" key (the one
# in run/alipay.json): a payment notification, retried until the endpoint
# answers success (the schedule scaled down a thousandfold), the gateway
# check, and a Life Account follow by the user refused above, which adds
# them to the sandbox's followers.
sandbox_cmd() { "$root/bin/alipay" sandbox "$@" --state "$state"; }
echo
echo "== the sandbox sends what Alipay sends"
echo "\$ alipay sandbox notify --to $base/alipay/notify --param out_trade_no=SO-1001 ..."
sandbox_cmd notify --to "$base/alipay/notify" --time-scale 0.001 \
  --param out_trade_no=SO-1001 --param trade_no=2024051322001400001 \
  --param trade_status=TRADE_SUCCESS --param total_amount=88.00
echo "\$ alipay sandbox event --to $base/alipay/gateway --event verifygw"
sandbox_cmd event --to "$base/alipay/gateway" --event verifygw
echo "\$ alipay sandbox event --to $base/alipay/gateway --event follow --user-id 2088999999999999"
sandbox_cmd event --to "$base/alipay/gateway" --event follow --user-id 2088999999999999
# The user refused above follows now: the shipping message goes out.
show POST /orders/shipped '{"user_id":"2088999999999999","order_id":"SO-1002"}'

echo
echo "== messages the sandbox recorded as delivered"
curl -sS "$(printf '%s' "$sandbox_json" | lua5.4 -e 'print(require("cjson").decode(io.read("a")).admin)')/deliveries"
echo

if [ "$keep" = yes ]; then
  echo
  echo "Left running. Stop with:"
  stop_commands
fi
