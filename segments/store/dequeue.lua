-- Removes a segment from a flush queue unless its deadline changed since it was read,
-- which means new spans arrived and the segment must be flushed again later.
-- KEYS[1] queue; ARGV[1] segment key, ARGV[2] deadline read (ms).
local score = redis.call("ZSCORE", KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
	return redis.call("ZREM", KEYS[1], ARGV[1])
end
return 0
