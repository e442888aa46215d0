-- The full flow: create for a test identity, then verify its fixed code with the cookie the
-- create returned. Each connection alternates: a response carrying a new cookie queues a
-- verify, and the next request sends it; otherwise the next request is a create.
-- Arguments: identity prefix, identity count, cookie name, correct code.

function init(args)
  prefix, identities, index = args[1], tonumber(args[2]), 0
  cookie_name, code, pending = args[3], args[4], {}
end

function request()
  local cookie = table.remove(pending)
  if cookie ~= nil then
    return verify_request(cookie_name, cookie, code)
  end
  return next_create()
end

function response(status, headers, body)
  count_status(status)
  local cookie = response_cookie(headers)
  if status == 200 and cookie ~= nil and cookie ~= "" then
    table.insert(pending, cookie)
  elseif status == 200 and body:find('"verified":true', 1, true) then
    bump("verified")
  end
end
