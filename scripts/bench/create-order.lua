-- wrk script: POST /api/orders with a bearer token from the TOKEN variable,
-- or, when TOKENS holds several (space-separated), a random one of them
-- per request: orders spread over users as a shop's are. With KEYED=1 each
-- request carries its own Idempotency-Key, as a browser client sends one
-- (docs/benchmarks.md, seventh pass).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"currency":"USD","items":[{"productId":"sku-1","quantity":2,"unitPrice":1999},' ..
  '{"productId":"sku-2","quantity":1,"unitPrice":500}],"shippingAddress":{"name":"Bench",' ..
  '"line1":"1 Main St","city":"X","postalCode":"1","country":"US"}}'

local non201 = 0
function response(status, headers, body)
  if status ~= 201 then non201 = non201 + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("non-201 responses: %d\n", non201))
end

-- Keys are unique per thread (its number) and run (the start time).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local keyed = os.getenv("KEYED") == "1"
local prefix = nil
local sent = 0

local tokens = {}
for token in string.gmatch(os.getenv("TOKENS") or "", "%S+") do
  tokens[#tokens + 1] = token
end
function request()
  if #tokens > 0 then
    wrk.headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  end
  if keyed then
    prefix = prefix or (tostring(tid) .. "-" .. tostring(os.time()))
    sent = sent + 1
    wrk.headers["Idempotency-Key"] = prefix .. "-" .. sent
  end
  return wrk.format()
end
