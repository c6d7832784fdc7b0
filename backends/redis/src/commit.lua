-- Applies one batch of a Redis read model, atomically (a script runs alone on the server).
--
-- KEYS[1]     the guard hash of the batch's version: field = an operation's guard, value = the
--             position last applied
-- KEYS[2]     the version that serves queries
-- KEYS[3]     the stream guard hash of the batch's version: field = a stream, value = the
--             version of it applied
-- KEYS[4]     the checkpoint (checkpoint mode only)
-- KEYS[n..]   one key per operation, in the batch's order
-- ARGV[1]     'checkpoint' (compare-and-set the checkpoint) or 'batch' (no checkpoint)
-- ARGV[2]     the checkpoint the batch follows; ARGV[3] the checkpoint after it
-- ARGV[4]     Position::START, what an absent checkpoint means
-- ARGV[5]     'check' (skip what the guards have seen) or 'raise' (a replay of dead letters,
--             taken once by their 'unpark': apply everything, only raise the guards)
-- ARGV[6]     the batch's version: a batch of a version older than the one serving applies
--             nothing
-- ARGV[7]     how many streams the batch moves, S
-- ARGV[8..]   three per stream: the stream, the version the batch read ('' when none), the
--             version it applies to; the batch applies nothing ('moved') when one of them is
--             no longer at the version read
-- then        five per operation: kind, position ('' when none), guard field, a, b
--
-- Positions are 41 bytes, `TTTTTTTTTTTTTTTTTTTT.SSSSSSSSSSSSSSSSSSSS` (both parts zero-padded
-- to 20 digits), compared in 10-digit chunks so neither Lua's doubles nor the server's locale
-- (string `<` is strcoll) can get the order wrong.
--
-- Redis does not roll a script back when a command fails half way, so the script first checks
-- everything (checkpoint, guards, and that each operation fits what its key holds) with reads
-- only, and writes only once nothing can fail.
--
-- Returns {'retired', serving} | {'moved'} | {'ok', applied, skipped} | {'conflict', index, reason}
--       | {'corrupt', key, field, value} | {'replayed', index}

local guards_key = KEYS[1]
local streams_key = KEYS[3]
local checkpoint = ARGV[1] == 'checkpoint'
local first_key = checkpoint and 5 or 4
local stream_count = tonumber(ARGV[7])
local first_op = 7 + stream_count * 3
local count = #KEYS - first_key + 1
local check_guards = ARGV[5] == 'check'
-- Counters are refused before they come near the ends of a 64-bit integer, where INCRBY
-- would fail half way through the batch (Lua's doubles are exact enough for this margin).
local limit = 9e18

local function valid_position(p)
  return type(p) == 'string' and #p == 41 and string.sub(p, 21, 21) == '.'
    and string.find(p, '^%d+%.%d+$') ~= nil
end

local chunks = { 1, 10, 11, 20, 22, 31, 32, 41 }
local function newer(a, b)
  for i = 1, 8, 2 do
    local x = tonumber(string.sub(a, chunks[i], chunks[i + 1]))
    local y = tonumber(string.sub(b, chunks[i], chunks[i + 1]))
    if x ~= y then
      return x > y
    end
  end
  return false
end

-- What INCRBY/HINCRBY accept: a canonical decimal 64-bit integer.
local function counter(value)
  if type(value) ~= 'string' or #value > 20 then
    return nil
  end
  if value == '0' or string.find(value, '^%-?[1-9]%d*$') ~= nil then
    return tonumber(value)
  end
  return nil
end

local serving = redis.call('GET', KEYS[2])
if serving ~= false and tonumber(serving) ~= nil and tonumber(serving) > tonumber(ARGV[6]) then
  return { 'retired', serving }
end

if checkpoint then
  local current = redis.call('GET', KEYS[4])
  if current == false then
    current = ARGV[4]
  elseif not valid_position(current) then
    return { 'corrupt', KEYS[4], '', current }
  end
  if current ~= ARGV[2] then
    return { 'moved' }
  end
end

-- Versions are canonical decimals written by this script: equal versions are equal strings.
for s = 1, stream_count do
  local base = 7 + (s - 1) * 3
  local current = redis.call('HGET', streams_key, ARGV[base + 1])
  if current == false then
    current = ''
  end
  if current ~= ARGV[base + 2] then
    return { 'moved' }
  end
end

-- What each key will hold once the operations before the current one are applied:
-- kinds[key] is 'none', 'int' (a string that is a counter, numbers[key] its value), 'bytes'
-- (any other string), or what TYPE says ('hash', 'zset', 'list', ...). fields[key][field] is
-- false (absent), a number (a counter) or true (another value); cleared[key] means the batch
-- deleted or replaced the key, so its old fields are gone.
local kinds, numbers, fields, cleared = {}, {}, {}, {}

local function kind_of(key)
  local kind = kinds[key]
  if kind == nil then
    kind = redis.call('TYPE', key)['ok']
    if kind == 'string' then
      local value = counter(redis.call('GET', key))
      if value ~= nil then
        kind = 'int'
        numbers[key] = value
      else
        kind = 'bytes'
      end
    end
    kinds[key] = kind
  end
  return kind
end

local function field_of(key, field)
  local known = fields[key]
  if known == nil then
    known = {}
    fields[key] = known
  end
  local state = known[field]
  if state == nil then
    state = false
    if not cleared[key] then
      local value = redis.call('HGET', key, field)
      if value ~= false then
        state = counter(value) or true
      end
    end
    known[field] = state
  end
  return state
end

local function replaced(key)
  fields[key] = {}
  cleared[key] = true
end

local before, after = {}, {}
local plan = {}

for i = 1, count do
  local key = KEYS[first_key + i - 1]
  local base = first_op + (i - 1) * 5
  local op, position, guard, a, b =
    ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]

  local apply = true
  if position ~= '' then
    local seen = before[guard]
    if seen == nil then
      seen = redis.call('HGET', guards_key, guard)
      if seen ~= false and not valid_position(seen) then
        return { 'corrupt', guards_key, guard, seen }
      end
      before[guard] = seen
    end
    -- Against the guard as it was before this batch: the operations of one event on one key
    -- share its position, and all of them apply.
    apply = not check_guards or seen == false or newer(position, seen)
  end

  if apply then
    local kind = kind_of(key)
    local reason = nil
    if op == 'set' then
      local value = counter(a)
      if value ~= nil then
        kinds[key] = 'int'
        numbers[key] = value
      else
        kinds[key] = 'bytes'
      end
      replaced(key)
    elseif op == 'del' then
      kinds[key] = 'none'
      replaced(key)
    elseif op == 'incr' then
      if kind ~= 'none' and kind ~= 'int' then
        reason = 'it holds a ' .. kind .. ', not a counter'
      else
        local total = (kind == 'int' and numbers[key] or 0) + tonumber(a)
        if math.abs(total) >= limit then
          reason = 'the counter would come too near the range of a 64-bit integer'
        else
          kinds[key] = 'int'
          numbers[key] = total
        end
      end
    elseif op == 'zincr' or op == 'zadd' then
      if kind ~= 'none' and kind ~= 'zset' then
        reason = 'it holds a ' .. kind .. ', not a sorted set'
      else
        kinds[key] = 'zset'
      end
    elseif op == 'hset' or op == 'hdel' or op == 'hincr' then
      if kind ~= 'none' and kind ~= 'hash' then
        reason = 'it holds a ' .. kind .. ', not a hash'
      elseif op == 'hset' then
        field_of(key, a)
        fields[key][a] = counter(b) or true
        kinds[key] = 'hash'
      elseif op == 'hdel' then
        field_of(key, a)
        fields[key][a] = false
      else
        local state = field_of(key, a)
        if state == true then
          reason = 'its field holds a value that is not a counter'
        else
          local total = (state or 0) + tonumber(b)
          if math.abs(total) >= limit then
            reason = 'the counter would come too near the range of a 64-bit integer'
          else
            fields[key][a] = total
            kinds[key] = 'hash'
          end
        end
      end
    elseif op == 'park' or op == 'unpark' then
      -- The store's own hashes of dead letters and their streams.
      if kind ~= 'none' and kind ~= 'hash' then
        reason = 'it holds a ' .. kind .. ', not a hash'
      elseif op == 'park' then
        field_of(key, a)
        fields[key][a] = true
        kinds[key] = 'hash'
      elseif field_of(key, a) == false then
        -- Another replay took this dead letter: the whole batch is void.
        return { 'replayed', i }
      else
        fields[key][a] = false
      end
    else
      reason = 'unknown operation ' .. op
    end
    if reason ~= nil then
      return { 'conflict', i, reason }
    end
    plan[#plan + 1] = i
    -- Guards only rise: a replayed dead letter is older than what other streams applied since.
    if position ~= '' then
      local highest = after[guard] or before[guard]
      if highest == false or highest == nil or newer(position, highest) then
        after[guard] = position
      end
    end
  end
end

-- Nothing below can fail: every operation was checked against what its key holds.
for _, i in ipairs(plan) do
  local key = KEYS[first_key + i - 1]
  local base = first_op + (i - 1) * 5
  local op, a, b = ARGV[base + 1], ARGV[base + 4], ARGV[base + 5]
  if op == 'set' then
    if b == '' then
      redis.call('SET', key, a)
    else
      redis.call('SET', key, a, 'PX', b)
    end
  elseif op == 'del' then
    redis.call('DEL', key)
  elseif op == 'incr' then
    redis.call('INCRBY', key, a)
  elseif op == 'zincr' then
    redis.call('ZINCRBY', key, b, a)
  elseif op == 'zadd' then
    redis.call('ZADD', key, b, a)
  elseif op == 'hset' or op == 'park' then
    redis.call('HSET', key, a, b)
  elseif op == 'hdel' or op == 'unpark' then
    redis.call('HDEL', key, a)
  elseif op == 'hincr' then
    redis.call('HINCRBY', key, a, b)
  end
end
for guard, position in pairs(after) do
  redis.call('HSET', guards_key, guard, position)
end
for s = 1, stream_count do
  local base = 7 + (s - 1) * 3
  redis.call('HSET', streams_key, ARGV[base + 1], ARGV[base + 3])
end
if checkpoint then
  redis.call('SET', KEYS[4], ARGV[3])
end
return { 'ok', #plan, count - #plan }
