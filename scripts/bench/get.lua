-- wrk script: GET with a bearer token from the TOKEN variable.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
local bad = 0
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("non-200 responses: %d\n", bad))
end
