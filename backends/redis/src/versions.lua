-- Which version of a Redis read model serves queries: begins a batch, or switches versions.
--
-- KEYS[1]  the prefix's owner (the projection whose versions it keeps)
-- KEYS[2]  the version that serves queries
-- KEYS[3]  the set of the versions that have written under the prefix
-- KEYS[4]  the hash of the version's parked streams (field = event id, value = stream)
-- ARGV[1]  'begin' (a batch of ARGV[3]: the first version to begin one serves at once) or
--          'activate' (ARGV[3] serves, unless a newer one does)
-- ARGV[2]  the projection
-- ARGV[3]  its version
--
-- Returns {'shared', owner} | {'begun', serving, parked streams} | {'kept', serving} |
-- {'switched', old or ''} with versions as decimal text.

local owner = redis.call('GET', KEYS[1])
if owner ~= false and owner ~= ARGV[2] then
  return { 'shared', owner }
end
local serving = redis.call('GET', KEYS[2])
local version = tonumber(ARGV[3])
if ARGV[1] == 'begin' then
  redis.call('SADD', KEYS[3], ARGV[3])
  if serving == false then
    redis.call('SET', KEYS[1], ARGV[2])
    redis.call('SET', KEYS[2], ARGV[3])
    serving = ARGV[3]
  end
  return { 'begun', serving, redis.call('HVALS', KEYS[4]) }
end
if serving ~= false and tonumber(serving) > version then
  return { 'kept', serving }
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
return { 'switched', serving or '' }
