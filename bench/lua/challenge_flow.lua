-- The server-to-server flow: a backend starts a challenge for a test identity with its API
-- key, then checks the identity's fixed code with the challenge token the start returned.
-- Each connection alternates as the browser flow does: a 201 carrying a token queues a
-- check, and the next request sends it; otherwise the next request starts a challenge.
-- Arguments: identity prefix, identity count, API key, correct code.

function init(args)
  prefix, identities, index = args[1], tonumber(args[2]), 0
  api_key, code, pending = args[3], args[4], {}
end

local function api_request(path, body)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. api_key,
  }, body)
end

function request()
  local token = table.remove(pending)
  if token ~= nil then
    return api_request("/v1/challenges/check", '{"challenge":"' .. token .. '","code":"' .. code .. '"}')
  end
  index = index % identities + 1
  return api_request("/v1/challenges", '{"email":"' .. identity(prefix, index) .. '"}')
end

function response(status, headers, body)
  count_status(status)
  if status == 201 then
    local token = body:match('"challenge":"([^"]+)"')
    if token ~= nil then
      table.insert(pending, token)
    end
  elseif status == 200 and body:find('"status":"approved"', 1, true) then
    bump("verified")
  end
end
