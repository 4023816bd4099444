-- wrk script for bench/api_load.py: clients polling a job and its new metrics.
--
-- Environment (read once per wrk thread):
--   GT_TOKEN     bearer token; sent in the Authorization header (never in the URL)
--   GT_JOBS      comma-separated job ids; each wrk thread polls them in turn
--   GT_DELAY_MS  client think time after each response (0: closed loop, as fast as possible)
--   GT_LAG       how many epochs behind the newest seen one a metrics poll asks from
--
-- Requests alternate GET /v1/jobs/{id} and GET /v1/jobs/{id}/metrics?since_epoch=N. N follows
-- the job: each job response's progress.epoch is parsed, and the next metrics poll of that job
-- asks for the epochs after (seen - GT_LAG), as a dashboard asks for what is new since its
-- last poll (with a margin, so every response carries a few epochs of columns).

local token, jobs, delay_ms, lag
local seen = {}
local turn = 0

local function split(text)
  local out = {}
  for item in string.gmatch(text or "", "[^,]+") do out[#out + 1] = item end
  return out
end

function init(args)
  token = os.getenv("GT_TOKEN") or ""
  jobs = split(os.getenv("GT_JOBS"))
  delay_ms = tonumber(os.getenv("GT_DELAY_MS") or "0")
  lag = tonumber(os.getenv("GT_LAG") or "10")
  for _, id in ipairs(jobs) do seen[id] = 0 end
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Accept"] = "application/json"
end

function request()
  turn = turn + 1
  local id = jobs[(math.floor((turn - 1) / 2) % #jobs) + 1]
  if turn % 2 == 1 then
    return wrk.format("GET", "/v1/jobs/" .. id)
  end
  local since = math.max(0, seen[id] - lag)
  return wrk.format("GET", "/v1/jobs/" .. id .. "/metrics?since_epoch=" .. since)
end

function response(status, headers, body)
  -- Only a job response has "id" (metrics carry "job_id") and "progress".
  if status ~= 200 or not body then return end
  local id = string.match(body, '"id":%s*"([^"]+)"')
  local epoch = string.match(body, '"progress":%s*{%s*"epoch":%s*(%d+)')
  if id and epoch and seen[id] then seen[id] = math.max(seen[id], tonumber(epoch)) end
end

function delay()
  return delay_ms
end
