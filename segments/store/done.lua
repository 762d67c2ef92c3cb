-- Removes what one flush loaded from a segment, atomically. Spans that arrived while
-- the segment was being flushed stay, with their counts, redirects and queue entry;
-- the redirects of the spans flushed go in any case.
--
-- The span ids flushed are recorded in the trace's flushed-span hash for the
-- redelivery window, so that add.lua drops copies of them read again from Kafka.
--
-- KEYS       member keys, span count, byte count, flush lock, redirect map, flushed
--            spans; all under the trace's hash tag {P:T}
-- ARGV[1..6] lock token ("" without a lock), spans loaded, bytes loaded, root id,
--            member count n, redelivery window ms (0: off)
-- ARGV[7..]  n members of the member keys loaded (salts, and "~<id>" of spans to
--            skip), then the span ids flushed
--
-- Returns 1 when the segment is gone, 0 when newer spans remain.
local mkey, ic, ibc, lock, ssr, fs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local token, nspans, nbytes, root, nsalts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local window = tonumber(ARGV[6])

if token ~= "" and redis.call("GET", lock) == token then
	redis.call("DEL", lock)
end

local function each_slice(from, to, fn)
	local batch = {}
	for i = from, to do
		batch[#batch + 1] = ARGV[i]
		if #batch >= 1000 then
			fn(batch)
			batch = {}
		end
	end
	if #batch > 0 then
		fn(batch)
	end
end

each_slice(7, 6 + nsalts, function(b) redis.call("SREM", mkey, unpack(b)) end)
-- The flushed spans' redirects go now even if newer spans keep the segment: no later
-- cleanup names these spans, so they would stay until the hash expires. A span
-- arriving later under one of them starts a segment of its own, as it would had the
-- whole segment been flushed.
each_slice(7 + nsalts, #ARGV, function(b) redis.call("HDEL", ssr, unpack(b)) end)
if window > 0 and #ARGV > 6 + nsalts then
	each_slice(7 + nsalts, #ARGV, function(b)
		local fields = {}
		for _, id in ipairs(b) do
			fields[#fields + 1] = id
			fields[#fields + 1] = "1"
		end
		redis.call("HSET", fs, unpack(fields))
	end)
	redis.call("PEXPIRE", fs, window)
end

if redis.call("EXISTS", mkey) == 0 then
	redis.call("DEL", ic, ibc)
	-- The root's entry may name no span loaded here: its payload may have been lost,
	-- or a partial cleanup of an earlier version left it.
	redis.call("HDEL", ssr, root)
	return 1
end
redis.call("DECRBY", ic, nspans)
redis.call("DECRBY", ibc, nbytes)
return 0
