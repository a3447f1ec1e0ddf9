-- wrk script for bench/run.py: one ledger endpoint per wrk run, a random member per request.
--
-- Configured through the environment, so the same file serves every endpoint:
--   BENCH_MODE     earn | redeem | points
--   BENCH_MEMBERS  members are m1 .. m<BENCH_MEMBERS>
--   BENCH_API_KEY  sent as "Authorization: Bearer <key>"
--
-- done() prints one line "BENCH_RESULT {json}" that run.py parses. Latencies are in ms.
-- Non-2xx responses are counted here (wrk's own count treats 3xx as success).

local threads = {}

function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

local MODES = {
   earn = { method = "POST", suffix = "/points/earn", body = '{"points": 10, "reason": "bench"}' },
   redeem = { method = "POST", suffix = "/points/redeem", body = '{"points": 1}' },
   points = { method = "GET", suffix = "/points", body = nil },
}

local method, suffix, body, members
local counts = {}

function init(args)
   local mode = MODES[os.getenv("BENCH_MODE") or ""]
   if mode == nil then
      error("BENCH_MODE must be one of earn, redeem, points")
   end
   method, suffix, body = mode.method, mode.suffix, mode.body
   members = tonumber(os.getenv("BENCH_MEMBERS"))
   -- Each thread has its own Lua state; seed each one differently.
   math.randomseed(os.time() * 1009 + thread_id * 7919)
   wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_API_KEY")
   wrk.headers["Content-Type"] = "application/json"
   -- Read back by done() through thread:get (strings and numbers copy between Lua states).
   non2xx = 0
   statuses = ""
   first_error = ""
end

function request()
   return wrk.format(method, "/v1/members/m" .. math.random(members) .. suffix, nil, body)
end

function response(status, headers, response_body)
   if status < 200 or status > 299 then
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
