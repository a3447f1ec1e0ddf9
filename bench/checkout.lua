-- wrk script for bench/run.py and bench/jobs.py: the checkout calls, a random member each.
--
-- Configured through the environment:
--   BENCH_MODE      orders | holds
--   BENCH_MEMBERS   members are m1 .. m<BENCH_MEMBERS>
--   BENCH_API_KEY   sent as "Authorization: Bearer <key>"
--   BENCH_RUN_TAG   makes order ids unique across wrk runs on one database (orders)
--   BENCH_CURRENCY  the program's currency (orders; default USD)
--   BENCH_HOLD_POINTS  points per hold (holds; default 5)
--   BENCH_DELAY_MS  when > 0, each connection waits this long on average (0.5x to 1.5x,
--                   random) before each request: a paced load instead of a closed loop
--                   (jobs.py uses it for "light" checkout traffic); latency excludes the wait
--
-- orders: POST /v1/orders with a 3-item basket (categories tea, ware, gift; amount 74.00) and
--   a fresh order_id per request: <tag>-<thread>-<counter>.
-- holds: the hold -> capture pair. POST /v1/members/{m}/holds {"points": N}, then
--   POST /v1/holds/{hold_id}/capture with the id from that answer. wrk's Lua API does not
--   say which connection an answer belongs to, so this mode needs ONE connection per thread
--   (run.py runs it with -t equal to -c): then a thread's answers come in the order of its
--   requests, the capture uses the hold its own connection just created, and the time from
--   request() to response() is that call's latency. A failed hold is retried as a hold; a
--   failed capture is counted and the next request is a new hold.
--
-- done() prints one line "BENCH_RESULT {json}" that run.py parses; latencies in ms. For holds
-- it adds "pairs" (captures answered 2xx) and per-call latency percentiles measured here
-- with CLOCK_MONOTONIC (LuaJIT's ffi; wrk's own latency mixes both calls).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
   return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

local threads = {}

-- wrk looks for a global delay() once, after loading the script: define it only when asked.
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if delay_ms > 0 then
   function delay()
      return math.floor(delay_ms * (0.5 + math.random()))
   end
end

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local mode, members, tag, currency, hold_body
local counter = 0
local counts = {}
-- holds: the hold this thread's connection created and will capture next, and what the
-- request in flight is.
local to_capture = nil
local in_flight = nil
local sent_at = 0

function init(args)
   mode = os.getenv("BENCH_MODE") or ""
   if mode ~= "orders" and mode ~= "holds" then
      error("BENCH_MODE must be one of orders, holds")
   end
   members = tonumber(os.getenv("BENCH_MEMBERS"))
   tag = os.getenv("BENCH_RUN_TAG") or "bench"
   currency = os.getenv("BENCH_CURRENCY") or "USD"
   hold_body = string.format('{"points": %d}', tonumber(os.getenv("BENCH_HOLD_POINTS") or "5"))
   math.randomseed(os.time() * 1009 + thread_id * 7919)
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
   wrk.headers["Content-Type"] = "application/json"
   -- Read back by done() through thread:get.
   non2xx = 0
   statuses = ""
   first_error = ""
   pairs_done = 0
   hold_ms = {}
   capture_ms = {}
end

local function order_request()
   counter = counter + 1
   local body = string.format(
      '{"order_id": "%s-%d-%d", "member_id": "m%d", "amount": 7400, "currency": "%s", '
         .. '"items": [{"sku": "TEA-01", "category": "tea", "quantity": 2, "unit_price": 1250}, '
         .. '{"sku": "CUP-02", "category": "ware", "quantity": 1, "unit_price": 3400}, '
         .. '{"sku": "BAG-03", "category": "gift", "quantity": 3, "unit_price": 500}]}',
      tag, thread_id, counter, math.random(members), currency
   )
   return wrk.format("POST", "/v1/orders", nil, body)
end

function request()
   if mode == "orders" then
      return order_request()
   end
   sent_at = now_us()
   if to_capture ~= nil then
      in_flight = "capture"
      return wrk.format("POST", "/v1/holds/" .. to_capture .. "/capture", nil, "{}")
   end
   in_flight = "hold"
   return wrk.format("POST", "/v1/members/m" .. math.random(members) .. "/holds", nil, hold_body)
end

local function count_error(status, response_body)
   non2xx = non2xx + 1
   counts[status] = (counts[status] or 0) + 1
   local parts = {}
   for code, n in pairs(counts) do
      parts[#parts + 1] = code .. ":" .. n
   end
   statuses = table.concat(parts, ",")
   if first_error == "" then
      first_error = status .. " " .. string.sub(response_body or "", 1, 300)
   end
end

function response(status, headers, response_body)
   local ok = status >= 200 and status <= 299
   if not ok then
      count_error(status, response_body)
   end
   if mode ~= "holds" then
      return
   end
   local elapsed_ms = (now_us() - sent_at) / 1000
   if in_flight == "hold" then
      hold_ms[#hold_ms + 1] = elapsed_ms
      if ok then
         to_capture = string.match(response_body or "", '"hold_id"%s*:%s*"([^"]+)"')
      end
   elseif in_flight == "capture" then
      capture_ms[#capture_ms + 1] = elapsed_ms
      to_capture = nil
      if ok then
         pairs_done = pairs_done + 1
      end
   end
   in_flight = nil
end

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

-- p50/p90/p99/max/mean of the samples every thread kept under `name`, as a JSON object.
local function percentiles(name)
   local all = {}
   for _, thread in ipairs(threads) do
      for _, v in ipairs(thread:get(name) or {}) do
         all[#all + 1] = v
      end
   end
   if #all == 0 then
      return "null"
   end
   table.sort(all)
   local sum = 0
   for _, v in ipairs(all) do
      sum = sum + v
   end
   local function at(p)
      return all[math.max(1, math.ceil(p / 100 * #all))]
   end
   return string.format(
      '{"count": %d, "mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}',
      #all, sum / #all, at(50), at(90), at(99), all[#all]
   )
end

function done(summary, latency, requests)
   local non2xx_total, pairs_total, status_parts, first = 0, 0, {}, ""
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
      pairs_total = pairs_total + (thread:get("pairs_done") or 0)
      local s = thread:get("statuses") or ""
      if s ~= "" then
         status_parts[#status_parts + 1] = s
      end
      if first == "" then
         first = thread:get("first_error") or ""
      end
   end
   local seconds = summary.duration / 1e6
   local errors = summary.errors
   local calls = "null"
   -- done() runs in the main Lua state, where init() never ran: read the mode again.
   if os.getenv("BENCH_MODE") == "holds" then
      calls = string.format(
         '{"hold": %s, "capture": %s}', percentiles("hold_ms"), percentiles("capture_ms")
      )
   end
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_s": %.3f, "rps": %.2f, '
         .. '"latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}, '
         .. '"non_2xx": %d, "statuses": %s, "first_error": %s, '
         .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, '
         .. '"pairs": %d, "pairs_per_s": %.2f, "calls_ms": %s}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      non2xx_total, json_string(table.concat(status_parts, ",")), json_string(first),
      errors.connect, errors.read, errors.write, errors.timeout,
      pairs_total, pairs_total / seconds, calls
   ))
end
