-- wrk's summary as one JSON line on stdout (times in microseconds), for bench/load.py: the
-- totals, the latency percentiles of every response (p50 ... and "grid", the 0.1st to the
-- 100th percentile in steps of 0.1) and how many responses had each status ("statuses").
-- With the argument "polite" (wrk ... -s wrk.lua URL -- polite), a connection answered 503
-- waits the response's Retry-After seconds before its next request, as a client should; by
-- default it sends the next one at once. wrk times a request from when it is sent, so the wait
-- is in no latency.
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  statuses = {}
  polite = args[1] == "polite"
  wait = 0
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if polite and status == 503 then
    wait = 1000 * (tonumber(headers["retry-after"] or headers["Retry-After"] or "1") or 1)
  end
end

-- wrk asks right after response(), for the same connection's next request
delay = function()
  local ms = wait
  wait = 0
  return ms
end

done = function(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local by_status = {}
  for status, n in pairs(counts) do
    table.insert(by_status, string.format('"%d": %d', status, n))
  end
  local grid = {}
  for i = 1, 999 do
    table.insert(grid, string.format("%d", latency:percentile(i / 10)))
  end
  table.insert(grid, string.format("%d", latency.max)) -- wrk's percentile(100) is 0
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "statuses": {%s}, "grid": [%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(by_status, ", "), table.concat(grid, ", ")))
end
