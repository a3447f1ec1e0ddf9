-- wrk script for bench/coupons.py: orders with and without a coupon, and coupon validation.
--
-- Configured through the environment:
--   BENCH_MODE                plain | coupon | validate
--   BENCH_MEMBERS             members are m1 .. m<BENCH_MEMBERS>
--   BENCH_API_KEY             sent as "Authorization: Bearer <key>"
--   BENCH_RUN_TAG             makes order ids unique across runs on one database
--   BENCH_CURRENCY            the program's currency
--   BENCH_COUPONS_PER_THREAD  coupon: thread t uses the codes of its own share of the pool,
--                             one per order: B<11 digits of offset + (t - 1) * share + n>
--   BENCH_COUPON_OFFSET       coupon: where this run's part of the pool starts
--   BENCH_COUPONS             validate: the pool's size (a random code of it each time)
--
-- plain:    POST /v1/orders {order_id, member_id, amount 7400, currency}
-- coupon:   the same order with "coupon_codes": [<an unused coupon>]
-- validate: POST /v1/coupons/<code>/validate {member_id, amount 7400, currency}
--
-- done() prints one line "BENCH_RESULT {json}" that coupons.py parses; latencies in ms.

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local mode, members, tag, currency, share, pool, offset
local counter = 0
local counts = {}

function init(args)
   mode = os.getenv("BENCH_MODE") or ""
   if mode ~= "plain" and mode ~= "coupon" and mode ~= "validate" then
      error("BENCH_MODE must be one of plain, coupon, validate")
   end
   members = tonumber(os.getenv("BENCH_MEMBERS"))
   tag = os.getenv("BENCH_RUN_TAG") or "bench"
   currency = os.getenv("BENCH_CURRENCY") or "USD"
   share = tonumber(os.getenv("BENCH_COUPONS_PER_THREAD") or "0")
   pool = tonumber(os.getenv("BENCH_COUPONS") or "1")
   offset = tonumber(os.getenv("BENCH_COUPON_OFFSET") or "0")
   math.randomseed(os.time() * 1009 + thread_id * 7919)
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
   wrk.headers["Content-Type"] = "application/json"
   non2xx = 0
   statuses = ""
   first_error = ""
end

local function code_of(index)
   return string.format("B%011d", index)
end

function request()
   counter = counter + 1
   local member = math.random(members)
   if mode == "validate" then
      local body = string.format(
         '{"member_id": "m%d", "amount": 7400, "currency": "%s"}', member, currency
      )
      return wrk.format("POST", "/v1/coupons/" .. code_of(math.random(pool)) .. "/validate",
                        nil, body)
   end
   local coupons = ""
   if mode == "coupon" then
      if counter > share then
         error("coupon pool exhausted: raise --coupons")
      end
      coupons = ', "coupon_codes": ["' .. code_of(offset + (thread_id - 1) * share + counter) .. '"]'
   end
   local body = string.format(
      '{"order_id": "%s-%s-%d-%d", "member_id": "m%d", "amount": 7400, "currency": "%s"%s}',
      tag, mode, thread_id, counter, member, currency, coupons
   )
   return wrk.format("POST", "/v1/orders", nil, body)
end

function response(status, headers, response_body)
   if status >= 200 and status <= 299 then
      return
   end
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

local function json_string(s)
   s = string.gsub(s, '[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local non2xx_total, status_parts, first = 0, {}, ""
   for _, thread in ipairs(threads) do
      non2xx_total = non2xx_total + (thread:get("non2xx") or 0)
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
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_s": %.3f, "rps": %.2f, '
         .. '"latency_ms": {"mean": %.3f, "p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f}, '
         .. '"non_2xx": %d, "statuses": %s, "first_error": %s, '
         .. '"socket_errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}}\n',
      summary.requests, seconds, summary.requests / seconds,
      latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      non2xx_total, json_string(table.concat(status_parts, ",")), json_string(first),
      errors.connect, errors.read, errors.write, errors.timeout
   ))
end
