#!/usr/bin/env bash
# kvstore's HTTP server beside Redis on this machine: 64 connections, 100-byte
# values, a keyspace of 100k keys, load generator on the same cores.
#
#   kvstore --sync always  PUT  vs  Redis appendonly yes + appendfsync always  SET  (target >= 1.5x)
#   kvstore --sync never   PUT  vs  Redis without AOF or snapshots            SET  (target >= 1.0x)
#   kvstore                GET  vs  Redis                                      GET  (target >= 1.2x)
#
# kvstore is driven by wrk (Lua scripts for PUT bodies and random GETs), Redis by
# redis-benchmark -c 64 -P 1. Both are installed with apt-get when missing.
# Every server binds 127.0.0.1 on a free port with a temporary data directory
# and is stopped by its PID on exit. Each run lasts DURATION seconds (default
# 10); redis-benchmark counts requests, so a short calibration run sizes it.
#
# Usage: benches/compare/http_vs_redis.sh   (from anywhere; env: DURATION, KEYS, CONNS)
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10}"
KEYS="${KEYS:-100000}"
CONNS="${CONNS:-64}"
VALUE_BYTES=100

pids=()
work="$(mktemp -d "${TMPDIR:-/tmp}/kvstore-http-vs-redis.XXXXXX")"
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null && return
  echo "== installing $2 (for $1)" >&2
  if ! apt-get install -y -q "$2" >/dev/null; then
    apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null
  fi
}
need redis-server redis-server
need redis-benchmark redis-tools
need wrk wrk
need curl curl
need python3 python3

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_until() { # wait_until WHAT COMMAND...: up to 10 s
  local what="$1"; shift
  for _ in $(seq 100); do
    "$@" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "$what did not come up in 10 s" >&2
  exit 1
}

stop() { # stop PID: SIGTERM, then wait for it to exit
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local keep=()
  for pid in "${pids[@]}"; do [ "$pid" != "$1" ] && keep+=("$pid"); done
  pids=("${keep[@]+"${keep[@]}"}")
}

echo "== building kvstore (release)" >&2
cargo build --release --quiet
kvstore_bin="$PWD/target/release/kvstore"

# The value as kvstore stores it: a JSON string whose bytes, quotes included, are 100.
value="$(printf 'v%.0s' $(seq $((VALUE_BYTES - 2))))"

cat > "$work/put.lua" <<EOF
-- PUT /kv/key:<random below KEYS> with a ${VALUE_BYTES}-byte JSON string value.
local keys = ${KEYS}
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"value":"${value}"}'
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
function request() return wrk.format(nil, "/kv/key:" .. math.random(0, keys - 1)) end
EOF
cat > "$work/get.lua" <<EOF
-- GET /kv/key:<random below KEYS>; every key is loaded first.
local keys = ${KEYS}
function setup(thread) thread:set("seed", math.random(1, 1000000)) end
function init(args) math.randomseed(seed) end
function request() return wrk.format("GET", "/kv/key:" .. math.random(0, keys - 1)) end
EOF

# Loads every key through POST /kv/batch, 1000 sets a request, on one connection.
preload_kvstore() { # preload_kvstore PORT
  python3 - "$1" "$KEYS" "$value" <<'EOF'
import http.client, json, sys
port, keys, value = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for start in range(0, keys, 1000):
    ops = [{"op": "set", "key": f"key:{i}", "value": value} for i in range(start, min(start + 1000, keys))]
    conn.request("POST", "/kv/batch", json.dumps({"operations": ops}), {"Content-Type": "application/json"})
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 200:
        sys.exit(f"preload: POST /kv/batch answered {reply.status}: {body[:200]!r}")
EOF
}

# Requests/s of one wrk run; fails on any non-2xx response or socket error.
wrk_rate() { # wrk_rate PORT SCRIPT
  local out
  out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" -s "$2" "http://127.0.0.1:$1/")"
  echo "$out" | sed 's/^/    /' >&2
  # A timeout on a loaded machine is slowness, not failure; any other error is.
  local errors
  errors="$(echo "$out" | awk -F'[ ,]+' '/Socket errors:/ { print $5 + $7 + $9 }')"
  if echo "$out" | grep -q 'Non-2xx' || [ "${errors:-0}" -gt 0 ]; then
    echo "wrk saw failed requests against kvstore; the rate would be meaningless" >&2
    exit 1
  fi
  echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }'
}

# Sets put_rate and get_rate (globals: a server started in a $(...) subshell
# would escape the EXIT trap).
kvstore_run() { # kvstore_run SYNC [put-only]
  local port dir pid
  port="$(free_port)"
  dir="$work/kvstore-$1"
  "$kvstore_bin" --host 127.0.0.1 --port "$port" --data-dir "$dir" --sync "$1" \
    2> "$work/kvstore-$1.log" &
  pid=$!
  pids+=("$pid")
  wait_until "kvstore (--sync $1)" curl -sf "http://127.0.0.1:$port/health"
  preload_kvstore "$port"
  echo "== kvstore --sync $1: PUT, $CONNS connections, ${DURATION} s" >&2
  put_rate="$(wrk_rate "$port" "$work/put.lua")"
  get_rate=
  if [ "${2:-}" != put-only ]; then
    echo "== kvstore --sync $1: GET" >&2
    get_rate="$(wrk_rate "$port" "$work/get.lua")"
  fi
  stop "$pid"
}

# Requests/s of one redis-benchmark test, sized to last about DURATION seconds.
redis_rate() { # redis_rate PORT TEST
  local args=(-h 127.0.0.1 -p "$1" -c "$CONNS" -P 1 -d "$VALUE_BYTES" -r "$KEYS" -t "$2" --csv)
  local probe n rate
  probe="$(redis-benchmark "${args[@]}" -n 20000 | awk -F'"' 'NR > 1 { print $4; exit }')"
  n="$(awk -v r="$probe" -v d="$DURATION" 'BEGIN { n = int(r * d); if (n < 20000) n = 20000; print n }')"
  rate="$(redis-benchmark "${args[@]}" -n "$n" | awk -F'"' 'NR > 1 { printf "%.0f", $4; exit }')"
  echo "    $2: $n requests, $rate/s" >&2
  echo "$rate"
}

# Sets put_rate (SET) and get_rate (GET), as kvstore_run does.
redis_run() { # redis_run always|none [put-only]
  local port dir pid
  port="$(free_port)"
  dir="$work/redis-$1"
  mkdir -p "$dir"
  local persistence=(--appendonly no --save '')
  [ "$1" = always ] && persistence=(--appendonly yes --appendfsync always --save '')
  redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize no \
    "${persistence[@]}" > "$work/redis-$1.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_until "redis-server ($1)" redis-cli -h 127.0.0.1 -p "$port" ping
  echo "== redis ($1): $CONNS connections" >&2
  put_rate="$(redis_rate "$port" set)"
  get_rate=
  if [ "${2:-}" != put-only ]; then
    get_rate="$(redis_rate "$port" get)"
  fi
  stop "$pid"
}

kvstore_run always put-only
kv_always_put="$put_rate"
kvstore_run never
kv_never_put="$put_rate" kv_get="$get_rate"
redis_run always put-only
redis_aof_set="$put_rate"
redis_run none
redis_set="$put_rate" redis_get="$get_rate"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r >= t ? "met" : "NOT met") }'; }
row() { # row WHAT KVSTORE REDIS TARGET
  local r
  r="$(ratio "$2" "$3")"
  printf '| %s | %s/s | %s/s | %s× | ≥ %s× %s |\n' "$1" "$2" "$3" "$r" "$4" "$(verdict "$r" "$4")"
}

echo
echo "$CONNS connections, ${VALUE_BYTES}-byte values, $KEYS keys, ${DURATION} s a run; load generator on the same machine."
echo
echo "| what | kvstore | Redis | kvstore ÷ Redis | target |"
echo "| --- | ---: | ---: | ---: | --- |"
row "PUT, --sync always vs appendfsync always" "$kv_always_put" "$redis_aof_set" 1.5
row "PUT, --sync never vs no AOF" "$kv_never_put" "$redis_set" 1.0
row "GET vs GET (no AOF)" "$kv_get" "$redis_get" 1.2
