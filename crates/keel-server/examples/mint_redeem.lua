-- wrk script: durable mints and redeems of 0.001 tokens, alternating, each with its own
-- Idempotency-Key, spread over the holder keys printed by `loadgen ... setup`.
-- usage: wrk -t2 -c64 -d10s --latency -s mint_redeem.lua URL -- PRODUCT KEY1,KEY2,...

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  product = args[1]
  keys = {}
  for k in string.gmatch(args[2], "[^,]+") do
    table.insert(keys, k)
  end
  n = 0
  body = '{"quantity":"0.001"}'
end

function request()
  n = n + 1
  local key = keys[(n % #keys) + 1]
  local kind = (math.floor(n / #keys) % 2 == 0) and "mint" or "redeem"
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = "wrk-" .. tid .. "-" .. n,
    ["Content-Type"] = "application/json",
  }
  return wrk.format("POST", "/products/" .. product .. "/" .. kind, headers, body)
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("acknowledged/s %.0f (non-2xx %d) p50 %.2f ms p99 %.2f ms max %.2f ms\n",
    (summary.requests - non2xx) / (summary.duration / 1e6), non2xx,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
