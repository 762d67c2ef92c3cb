-- Adds one subsegment to its segment, atomically. The layout is described in doc.go.
-- Every key but the queues is under the trace's hash tag {P:T}, the slot of KEYS[1];
-- keys built here share that tag, so in a Redis Cluster the script stays in one slot.
--
-- KEYS[1]     <prefix>ssr:{P:T}, the trace's redirect map (span id -> segment root)
-- KEYS[2..]   queues to update here; given only when they live on the same node
--             (single Redis), else the caller updates them from the result
-- ARGV[1..11] P:T, top parent span id, has root (1|0), salt, span count n, byte count,
--             TTL seconds, max segment bytes, root timeout ms, timeout ms, check the
--             flushed spans (1|0)
-- ARGV[12..11+n]  the span ids of the subsegment
-- ARGV[12+n..]    for each queue in KEYS[2..], its shard's Kafka time now, ms: every
--                 partition has a clock of its own
--
-- Returns {segment key, has root (1|0), detached (1|0), spans flushed already,
-- dropped (1|0), merged child segment keys...}. A subsegment whose spans were all
-- flushed already (<prefix>fs:{P:T}, written by done.lua) is dropped: nothing is
-- written, the segment key is "". One with only some flushed is added, and its
-- segment's member keys get "~<span id>" for each of those, so the flush skips them.
local ssr = KEYS[1]
local pt, top, has_root, salt = ARGV[1], ARGV[2], ARGV[3] == "1", ARGV[4]
local nspans, nbytes = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local root_timeout, timeout = tonumber(ARGV[9]), tonumber(ARGV[10])
local check_flushed = ARGV[11] == "1"
local first_span, last_span = 12, 11 + nspans

-- The buffer's key prefix (span-buf: and a namespace): KEYS[1] is <prefix>ssr:{P:T}.
local prefix = string.sub(ssr, 1, #ssr - #("ssr:{" .. pt .. "}"))
local function seg(id) return prefix .. "s:{" .. pt .. "}:" .. id end
local function mk(id) return prefix .. "mk:{" .. pt .. "}:" .. id end
local function num(key) return tonumber(redis.call("GET", key) or "0") end

-- A root is its own segment; anything else follows the redirects from its top parent.
local root = top
if not has_root then
	for _ = 1, 100 do
		local nxt = redis.call("HGET", ssr, root)
		if not nxt or nxt == root then break end
		root = nxt
	end
end

local detached = 0
local merged = {}
local key = seg(root)

-- The salt is a hash of the span ids, so a retried batch finds its salt already
-- recorded and changes nothing but the queue deadline.
local seen = redis.call("SISMEMBER", mk(root), salt) == 1
if not seen and redis.call("SISMEMBER", mk(salt), salt) == 1 then
	seen, root, key, detached = true, salt, seg(salt), 1
end

-- Copies of spans flushed already: read again from Kafka after a crash or a rewind,
-- their offsets not committed yet. Emitting them again would put them in a fragment
-- without their segment's other spans.
local flushed, is_flushed = {}, {}
if not seen and check_flushed then
	local fs = prefix .. "fs:{" .. pt .. "}"
	if redis.call("EXISTS", fs) == 1 then
		for i = first_span, last_span, 1000 do
			local vals = redis.call("HMGET", fs, unpack(ARGV, i, math.min(i + 999, last_span)))
			for j = 1, #vals do
				if vals[j] then
					is_flushed[ARGV[i + j - 1]] = true
					flushed[#flushed + 1] = ARGV[i + j - 1]
				end
			end
		end
	end
	if #flushed == nspans then
		return {"", 0, 0, nspans, 1}
	end
end

if not seen then
	-- Children: spans of this subsegment that were roots of segments of their own
	-- until now. A child being flushed right now is left alone.
	local children, child_bytes = {}, 0
	local locked = redis.call("EXISTS", prefix .. "fl:" .. key) == 1
	if not locked then
		for i = first_span, last_span do
			local id = ARGV[i]
			if id ~= root and redis.call("EXISTS", mk(id)) == 1
				and redis.call("EXISTS", prefix .. "fl:" .. seg(id)) == 0 then
				children[#children + 1] = id
				child_bytes = child_bytes + num(prefix .. "ibc:" .. seg(id))
			end
		end
	end

	local current = num(prefix .. "ibc:" .. key)
	if locked or (current > 0 and current + child_bytes + nbytes > max_bytes) then
		root, key, detached, children = salt, seg(salt), 1, {}
	end

	local mkey, ic, ibc = mk(root), prefix .. "ic:" .. key, prefix .. "ibc:" .. key
	if has_root then
		redis.call("SET", prefix .. "hrs:" .. key, "1", "EX", ttl)
	end

	local pairs_ = {}
	for i = first_span, last_span do
		-- A span flushed already keeps no redirect, as after its flush.
		if not is_flushed[ARGV[i]] then
			pairs_[#pairs_ + 1] = ARGV[i]
			pairs_[#pairs_ + 1] = root
		end
		-- unpack() is bounded by Lua's stack; write in slices.
		if #pairs_ >= 1000 then
			redis.call("HSET", ssr, unpack(pairs_))
			pairs_ = {}
		end
	end
	if #pairs_ > 0 then
		redis.call("HSET", ssr, unpack(pairs_))
	end
	redis.call("EXPIRE", ssr, ttl)

	for _, id in ipairs(children) do
		local ck = seg(id)
		redis.call("SUNIONSTORE", mkey, mkey, mk(id))
		redis.call("INCRBY", ic, num(prefix .. "ic:" .. ck))
		redis.call("INCRBY", ibc, num(prefix .. "ibc:" .. ck))
		redis.call("DEL", mk(id), prefix .. "ic:" .. ck, prefix .. "ibc:" .. ck)
		merged[#merged + 1] = ck
	end

	redis.call("SADD", mkey, salt)
	for _, id in ipairs(flushed) do
		redis.call("SADD", mkey, "~" .. id)
	end
	redis.call("INCRBY", ic, nspans)
	redis.call("INCRBY", ibc, nbytes)
	redis.call("EXPIRE", mkey, ttl)
	redis.call("EXPIRE", ic, ttl)
	redis.call("EXPIRE", ibc, ttl)
end

local root_flag = redis.call("EXISTS", prefix .. "hrs:" .. key)
local quiet = timeout
if root_flag == 1 then
	quiet = root_timeout
end
for i = 2, #KEYS do
	redis.call("ZADD", KEYS[i], tonumber(ARGV[last_span + i - 1]) + quiet, key)
	for _, m in ipairs(merged) do
		redis.call("ZREM", KEYS[i], m)
	end
	redis.call("EXPIRE", KEYS[i], ttl)
end

local result = {key, root_flag, detached, #flushed, 0}
for _, m in ipairs(merged) do
	result[#result + 1] = m
end
return result
