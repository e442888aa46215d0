-- verify with a wrong code: each pending cookie takes two wrong guesses (the first answers
-- 403 with a fresh cookie and no block; the second starts a 5 s block, so the cookie is
-- dropped). The per-credential lockout caps wrong guesses at 100 per credential, which is
-- why the pool spreads them over many identities.
-- Arguments: pool file (one cookie per line), cookie name, wrong code.

function init(args)
  pool, next_index, recycled = {}, 1, {}
  for line in io.lines(args[1]) do
    table.insert(pool, line)
  end
  cookie_name, wrong_code = args[2], args[3]
end

function request()
  local cookie = table.remove(recycled)
  if cookie == nil then
    cookie = pool[next_index]
    next_index = next_index + 1
    bump("pool_used")
  end
  if cookie == nil then
    -- The pool ran out: the harness sees the 400s and reports the run as invalid.
    bump("pool_exhausted")
    cookie = "exhausted"
  end
  return verify_request(cookie_name, cookie, wrong_code)
end

function response(status, headers, body)
  count_status(status)
  if status == 403 and body:find('"attemptsLeft":2', 1, true) then
    local cookie = response_cookie(headers)
    if cookie ~= nil and cookie ~= "" then
      table.insert(recycled, cookie)
    end
  end
end
