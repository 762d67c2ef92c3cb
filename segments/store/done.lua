-- Removes what one flush loaded from segments, atomically for each. Spans that
-- arrived while a segment was being flushed stay, with their counts, redirects and
-- queue entry; the redirects of the spans flushed go in any case. The span ids
-- flushed are recorded in the trace's flushed-span hash for the redelivery window,
-- so that add.lua drops copies of them read again from Kafka.
--
-- Each segment takes its keys and arguments in turn; on a Redis Cluster the caller
-- runs the script once per segment (its keys share the trace's slot) and removes the
-- payload sets and queue entries itself, on a single Redis one call covers many
-- segments and all of their keys.
--
-- Per segment:
-- KEYS        member keys, span count, byte count, flush lock, redirect map, flushed
--             spans (all under the trace's hash tag {P:T}), then p payload sets,
--             then q flush queues
-- ARGV[1..10] lock token ("" without a lock), spans loaded, bytes loaded, root id,
--             segment key, member count n, span id count m, p, q, redelivery
--             window ms (0: off)
-- ARGV[11..]  n members of the member keys loaded (salts, and "~<id>" of spans to
--             skip), m span ids flushed, then the q deadlines read (ms): a queue
--             entry is removed only if its deadline did not change, else new spans
--             arrived and the segment must be flushed again later
--
-- Returns the number of segments that are gone (the others keep newer spans).

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

local k, a, gone = 1, 1, 0
while a <= #ARGV do
	local mkey, ic, ibc, lock, ssr, fs = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
	local token, nspans, nbytes, root, seg = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3], ARGV[a + 4]
	local nmembers, nids, npayloads, nqueues = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
	local window = tonumber(ARGV[a + 9])
	k, a = k + 6, a + 10

	if token ~= "" and redis.call("GET", lock) == token then
		redis.call("DEL", lock)
	end
	each_slice(a, a + nmembers - 1, function(b) redis.call("SREM", mkey, unpack(b)) end)
	a = a + nmembers
	-- The flushed spans' redirects go now even if newer spans keep the segment: no
	-- later cleanup names these spans, so they would stay until the hash expires. A
	-- span arriving later under one of them starts a segment of its own, as it would
	-- had the whole segment been flushed.
	each_slice(a, a + nids - 1, function(b) redis.call("HDEL", ssr, unpack(b)) end)
	if window > 0 and nids > 0 then
		each_slice(a, a + nids - 1, function(b)
			local fields = {}
			for _, id in ipairs(b) do
				fields[#fields + 1] = id
				fields[#fields + 1] = "1"
			end
			redis.call("HSET", fs, unpack(fields))
		end)
		redis.call("PEXPIRE", fs, window)
	end
	a = a + nids

	for i = k, k + npayloads - 1 do
		redis.call("DEL", KEYS[i])
	end
	k = k + npayloads
	for i = 0, nqueues - 1 do
		local score = redis.call("ZSCORE", KEYS[k + i], seg)
		if score and tonumber(score) == tonumber(ARGV[a + i]) then
			redis.call("ZREM", KEYS[k + i], seg)
		end
	end
	k, a = k + nqueues, a + nqueues

	if redis.call("EXISTS", mkey) == 0 then
		redis.call("DEL", ic, ibc)
		-- The root's entry may name no span loaded here: its payload may have been
		-- lost, or a partial cleanup of an earlier version left it.
		redis.call("HDEL", ssr, root)
		gone = gone + 1
	else
		redis.call("DECRBY", ic, nspans)
		redis.call("DECRBY", ibc, nbytes)
	end
end
return gone
