-- wrk script for bench/run.py: one request shape per run, chosen by BENCH_MODE.
--   bare      GET /
--   readiness GET /v1/systems/{random key}/readiness
--   evidence  PUT /v1/systems/{random key}/evidence/{random control}
--   gate      POST /v1/systems/{random key}/gate-checks (the production gate)
-- Keys are the seeder's "bench-00001".."bench-NNNNN". done() prints one machine-readable
-- line, so run.py reads exact counts and microsecond percentiles instead of wrk's rounded,
-- unit-suffixed text.

local mode = os.getenv("BENCH_MODE") or "bare"
local systems = tonumber(os.getenv("BENCH_SYSTEMS") or "1")
local token = os.getenv("BENCH_TOKEN") or ""
local controls = {}
for control in string.gmatch(os.getenv("BENCH_CONTROLS") or "", "[^,]+") do
  controls[#controls + 1] = control
end

wrk.headers["Authorization"] = "Bearer " .. token
if mode == "evidence" then
  wrk.method = "PUT"
  wrk.body = '{"status":"met","summary":"bench"}'
  wrk.headers["Content-Type"] = "application/json"
elseif mode == "gate" then
  wrk.method = "POST"
  wrk.body = '{"target_stage":"production"}'
  wrk.headers["Content-Type"] = "application/json"
end

-- Each wrk thread runs its own Lua state; number them so their random streams differ.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

function init(_args)
  math.randomseed(os.time() * 100 + (thread_number or 0))
end

local function system_key()
  return string.format("bench-%05d", math.random(systems))
end

function request()
  if mode == "readiness" then
    return wrk.format(nil, "/v1/systems/" .. system_key() .. "/readiness")
  elseif mode == "evidence" then
    local control = controls[math.random(#controls)]
    return wrk.format(nil, "/v1/systems/" .. system_key() .. "/evidence/" .. control)
  elseif mode == "gate" then
    return wrk.format(nil, "/v1/systems/" .. system_key() .. "/gate-checks")
  end
  return wrk.format(nil, "/")
end

function done(summary, latency, _requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d,'
      .. ' "max_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d,'
      .. ' "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(99)), latency.max, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout
  ))
end
