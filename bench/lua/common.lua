-- Shared by every scenario: counts statuses per thread and prints one JSON summary line
-- (prefixed "BENCH-JSON ") that the harness parses, so nothing depends on wrk's text output.

local threads = {}
statuses = {}
extra = {}

function setup(thread)
  table.insert(threads, thread)
end

function count_status(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function bump(name)
  extra[name] = (extra[name] or 0) + 1
end

-- The value of the `otp` cookie a response sets, or nil when it sets none.
function response_cookie(headers)
  local header = headers["set-cookie"] or headers["Set-Cookie"]
  if header == nil then
    return nil
  end
  return header:match("^[^=]+=([^;]*)")
end

function identity(prefix, index)
  return prefix .. index .. "@example.com"
end

-- A create for a test identity, as a fresh visitor sends it (no cookie).
function create_request(prefix, index)
  return wrk.format("POST", "/api/otp/create", { ["Content-Type"] = "application/json" },
    '{"email":"' .. identity(prefix, index) .. '"}')
end

-- The create for the next test identity in turn, from the scenario's globals `prefix`,
-- `identities` and `index` (set in its `init`).
function next_create()
  index = index % identities + 1
  return create_request(prefix, index)
end

-- A verify of `code` with a pending cookie, sent as the sign-in page's form does.
function verify_request(cookie_name, cookie, code)
  return wrk.format("POST", "/api/otp/verify", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Cookie"] = cookie_name .. "=" .. cookie,
  }, "otp=" .. code)
end

local function json_counts(counts)
  local parts = {}
  for key, value in pairs(counts) do
    table.insert(parts, string.format('"%s":%d', tostring(key), value))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local merged_statuses, merged_extra = {}, {}
  for _, thread in ipairs(threads) do
    for key, value in pairs(thread:get("statuses") or {}) do
      merged_statuses[key] = (merged_statuses[key] or 0) + value
    end
    for key, value in pairs(thread:get("extra") or {}) do
      merged_extra[key] = (merged_extra[key] or 0) + value
    end
    local out, lines = thread:get("output_path"), thread:get("output_lines")
    if out ~= nil and lines ~= nil then
      local file = assert(io.open(out, "w"))
      for _, line in ipairs(lines) do
        file:write(line, "\n")
      end
      file:close()
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"statuses":%s,"extra":%s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, json_counts(merged_statuses), json_counts(merged_extra)))
end
