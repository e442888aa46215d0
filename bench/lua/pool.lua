-- Not measured: creates codes for the "wrong code" identities and keeps every cookie, which
-- `done` writes to a file, one per line, for verify_wrong.lua.
-- Arguments: identity prefix, identity count, output file, first identity index.

function init(args)
  prefix, identities, output_path = args[1], tonumber(args[2]), args[3]
  index = tonumber(args[4]) or 0
  output_lines = {}
end

function request()
  return next_create()
end

function response(status, headers, body)
  count_status(status)
  local cookie = response_cookie(headers)
  if status == 200 and cookie ~= nil and cookie ~= "" then
    table.insert(output_lines, cookie)
  end
end
