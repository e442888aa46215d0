-- create: ask for a code for the next test identity, without a cookie (a fresh visitor).
-- Arguments: identity prefix, identity count. Also drives the ceiling with the same request.

function init(args)
  prefix, identities, index = args[1], tonumber(args[2]), 0
end

function request()
  return next_create()
end

function response(status, headers, body)
  count_status(status)
end
