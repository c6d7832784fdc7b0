-- Reads one key of the version of a Redis read model that serves queries, in one round trip.
--
-- KEYS[1]  the version that serves queries (none yet: version 0, which holds nothing)
-- ARGV[1]  the prefix, `{prefix}:v`
-- ARGV[2]  the rest of the key, `:{key}`
-- ARGV[3]  the read command (GET, EXISTS, ZREVRANGE, ZSCORE, HGET, HGETALL, PTTL)
-- ARGV[4..] its arguments after the key

local serving = redis.call('GET', KEYS[1]) or '0'
return redis.call(ARGV[3], ARGV[1] .. serving .. ARGV[2], unpack(ARGV, 4))
