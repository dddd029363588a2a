-- wrk script of benchmarks/serving/run.py: POST the file named by BODY (JSON), then print one
-- machine-readable line: requests, duration (us), p50, p99, mean (us), errors (socket + non-2xx).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %d %d %.1f %.1f %.1f %d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect + e.read + e.write + e.status + e.timeout
  ))
end
