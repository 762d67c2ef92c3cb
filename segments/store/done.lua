-- Removes what one flush loaded from a segment, atomically. Spans that arrived while
-- the segment was being flushed stay, with their counts, redirects and queue entry;
-- the redirects of the spans flushed go in any case.
--
-- KEYS       member keys, span count, byte count, flush lock, redirect map; all under
--            the trace's hash tag {P:T}
-- ARGV[1..5] lock token ("" without a lock), spans loaded, bytes loaded, root id,
--            salt count n
-- ARGV[6..]  n salts, then the span ids flushed
--
-- Returns 1 when the segment is gone, 0 when newer spans remain.
local mkey, ic, ibc, lock, ssr = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local token, nspans, nbytes, root, nsalts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

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

each_slice(6, 5 + nsalts, function(b) redis.call("SREM", mkey, unpack(b)) end)
-- The flushed spans' redirects go now even if newer spans keep the segment: no later
-- cleanup names these spans, so they would stay until the hash expires. A span
-- arriving later under one of them starts a segment of its own, as it would had the
-- whole segment been flushed.
each_slice(6 + nsalts, #ARGV, function(b) redis.call("HDEL", ssr, unpack(b)) end)

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
