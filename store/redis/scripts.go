package redis

import goredis "github.com/redis/go-redis/v9"

// Lua scripts. Every script touches only the keys it is given, and all the
// keys of one call share a hash slot, except saveAtomic, acquire with its
// epoch and beats keys and heartbeat with its beats key, which are used only
// when the client is not a Cluster.

// luaFence checks that the caller may write the account: with a lease value
// (ARGV of the caller) it must equal the current lease and its token must
// not be older than the token of the last write; without one (an
// administrative write) nobody may hold the lease. It returns the token to
// store with the device, or nil and 'lost' / 'held'.
const luaFence = `
local function fence_check(dev, lease, fence, value, token)
  local cur = redis.call('GET', lease)
  if value == '' then
    if cur then return nil, 'held' end
    return tonumber(redis.call('GET', fence) or '0'), nil
  end
  if cur ~= value then return nil, 'lost' end
  local df = tonumber(redis.call('HGET', dev, 'fence') or '0')
  if df > tonumber(token) then return nil, 'lost' end
  return tonumber(token), nil
end
`

// luaMap maintains one user-mapping hash: a field per account deriving the
// mapping and "=" holding the current answer. map_del repairs "=" from the
// remaining accounts (keeping it when one still maps the same user, else
// the smallest account's) and deletes the hash when none remain.
const luaMap = `
local function map_set(key, acct, val)
  redis.call('HSET', key, acct, val, '=', val)
end
local function map_del(key, acct)
  if redis.call('HDEL', key, acct) == 0 then return end
  local cur = redis.call('HGET', key, '=')
  local kv = redis.call('HGETALL', key)
  local best, keep = nil, false
  for i = 1, #kv, 2 do
    if kv[i] ~= '=' then
      if kv[i + 1] == cur then keep = true end
      if best == nil or kv[i] < kv[best] then best = i end
    end
  end
  if best == nil then
    redis.call('DEL', key)
  elseif not keep then
    redis.call('HSET', key, '=', kv[best + 1])
  end
end
`

// luaArchive moves a device between its live keys and an archive entry
// (archive.go), all in the account's slot. archive_move checks that the
// live record is still the one the caller read (expect), then copies rec
// and the entry's description into the entry hash, renames the prekey and
// Signal keys into the entry and indexes it; archive_restore checks the
// live record the same way (” = none), drops the live prekeys and Signal
// state and renames the entry's back, then drops the entry. Both return nil, or 'changed' (the live
// record is not the one read), 'exists' or 'noentry'.
const luaArchive = `
local function archive_move(dev, pk, pend, sig, idx, entry, epk, epend, esig, key, score, reason, jid, expect, rec)
  if (redis.call('HGET', dev, 'rec') or '') ~= expect then return 'changed' end
  if redis.call('EXISTS', entry) == 1 then return 'exists' end
  local n = redis.call('HLEN', pk)
  if redis.call('HEXISTS', pk, 'max') == 1 then n = n - 1 end
  redis.call('HSET', entry, 'rec', rec, 'reason', reason, 'jid', jid, 'prekeys', n)
  if redis.call('EXISTS', pk) == 1 then redis.call('RENAME', pk, epk) end
  if redis.call('EXISTS', pend) == 1 then redis.call('RENAME', pend, epend) end
  if redis.call('EXISTS', sig) == 1 then redis.call('RENAME', sig, esig) end
  redis.call('ZADD', idx, score, key)
  return nil
end
local function archive_restore(dev, pk, pend, sig, idx, entry, epk, epend, esig, key, expect)
  if (redis.call('HGET', dev, 'rec') or '') ~= expect then return 'changed' end
  if redis.call('EXISTS', entry) == 0 then return 'noentry' end
  redis.call('DEL', pk, pend, sig)
  if redis.call('EXISTS', epk) == 1 then redis.call('RENAME', epk, pk) end
  if redis.call('EXISTS', epend) == 1 then redis.call('RENAME', epend, pend) end
  if redis.call('EXISTS', esig) == 1 then redis.call('RENAME', esig, sig) end
  redis.call('DEL', entry)
  redis.call('ZREM', idx, key)
  return nil
end
local function archive_step(op, dev, pk, pend, sig, idx, entry, epk, epend, esig, rec, key, score, reason, jid, expect)
  if op == 'archive' then
    return archive_move(dev, pk, pend, sig, idx, entry, epk, epend, esig, key, score, reason, jid, expect, rec)
  elseif op == 'restore' then
    return archive_restore(dev, pk, pend, sig, idx, entry, epk, epend, esig, key, expect)
  end
  return nil
end
`

// saveAtomic writes, deletes, archives or restores a device and its
// mapping in one script (single node or Sentinel); a delete or archive
// drops (moves) the account's prekeys and Signal state too.
//
//	KEYS: device, lease, fence, new pn map, new lid map, old pn map, old lid map,
//	      prekeys, pending prekeys, archive index, entry, entry prekeys,
//	      entry pending prekeys, entry Signal state, Signal state
//	ARGV: lease value ('' = unfenced), token, op ('save'|'delete'|'archive'|
//	      'restore'), rec, account, new pn, new lid, expected old pn,
//	      expected old lid, entry key, entry score, reason, jid, expected
//	      live record (the last five only for archive and restore)
//
// Returns {'ok'}, {'lost'}, {'held'}, {'retry'} when the stored mapping
// users are no longer the ones the caller read, or a word of luaArchive.
var saveAtomic = goredis.NewScript(luaFence + luaMap + luaArchive + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
local old = redis.call('HMGET', KEYS[1], 'pn', 'lid')
local opn, olid = old[1] or '', old[2] or ''
if opn ~= ARGV[8] or olid ~= ARGV[9] then return {'retry'} end
local acct, npn, nlid = ARGV[5], ARGV[6], ARGV[7]
local op = ARGV[3]
local aerr = archive_step(op, KEYS[1], KEYS[8], KEYS[9], KEYS[15], KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14],
  ARGV[4], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14])
if aerr then return {aerr} end
if op == 'save' or op == 'restore' then
  redis.call('HSET', KEYS[1], 'rec', ARGV[4], 'fence', tok, 'pn', npn, 'lid', nlid)
else
  redis.call('DEL', KEYS[1], KEYS[8], KEYS[9], KEYS[15])
end
if opn ~= '' and opn ~= npn then map_del(KEYS[6], acct) end
if olid ~= '' and olid ~= nlid then map_del(KEYS[7], acct) end
if npn ~= '' and nlid ~= '' then
  map_set(KEYS[4], acct, nlid)
  map_set(KEYS[5], acct, npn)
end
return {'ok'}
`)

// saveDevice is the first step of a split (Cluster) write: the device hash
// alone (and, for a delete or an archive, the prekeys, the Signal state and
// the archive entry in the same slot), recording which old mapping users
// still have to be cleaned up.
//
//	KEYS: device, lease, fence, prekeys, pending prekeys, archive index,
//	      entry, entry prekeys, entry pending prekeys, entry Signal state,
//	      Signal state
//	ARGV: lease value, token, op, rec, new pn, new lid, sync nonce, entry
//	      key, entry score, reason, jid, expected live record
//
// Returns {'ok', xpn, xlid}, {'lost'} / {'held'} or a word of luaArchive.
var saveDevice = goredis.NewScript(luaFence + luaArchive + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
local op = ARGV[3]
local aerr = archive_step(op, KEYS[1], KEYS[4], KEYS[5], KEYS[11], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  ARGV[4], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
if aerr then return {aerr} end
local h = redis.call('HMGET', KEYS[1], 'pn', 'lid', 'xpn', 'xlid')
local function pending(list, old, new)
  local set, out = {}, {}
  for u in string.gmatch(list or '', '%S+') do set[u] = true end
  if old and old ~= '' then set[old] = true end
  set[new] = nil
  for u in pairs(set) do out[#out + 1] = u end
  table.sort(out)
  return table.concat(out, ' ')
end
local npn, nlid = ARGV[5], ARGV[6]
local xpn, xlid = pending(h[3], h[1], npn), pending(h[4], h[2], nlid)
redis.call('DEL', KEYS[1])
if op == 'save' or op == 'restore' then
  redis.call('HSET', KEYS[1], 'rec', ARGV[4], 'fence', tok, 'pn', npn, 'lid', nlid, 'sync', ARGV[7], 'xpn', xpn, 'xlid', xlid)
else
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[11])
  if xpn ~= '' or xlid ~= '' then
    redis.call('HSET', KEYS[1], 'sync', ARGV[7], 'xpn', xpn, 'xlid', xlid)
  end
end
return {'ok', xpn, xlid}
`)

// archiveDrop removes one archive entry (PruneArchive); not fenced.
// KEYS: archive index, entry, entry prekeys, entry pending prekeys, entry
// Signal state; ARGV: entry key. Returns 1 when it removed the entry, else 0.
var archiveDrop = goredis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return 1
`)

// mapSet and mapDel are the second step of a split write, one mapping hash
// each. KEYS: map; ARGV: account[, value]. Both are idempotent.
var (
	mapSet = goredis.NewScript(luaMap + `map_set(KEYS[1], ARGV[1], ARGV[2]) return 1`)
	mapDel = goredis.NewScript(luaMap + `map_del(KEYS[1], ARGV[1]) return 1`)
)

// syncDone is the last step of a split write: forget the pending cleanup if
// no later write started another one; drop a deleted device's tombstone.
// KEYS: device; ARGV: sync nonce.
var syncDone = goredis.NewScript(`
if redis.call('HGET', KEYS[1], 'sync') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('HDEL', KEYS[1], 'xpn', 'xlid', 'sync')
end
return 1
`)

// acquire takes an account's lease if nobody holds it, with a fencing token
// from the account's counter, re-seeded above the token of the last device
// write (after Redis lost the counter). It records the acquirer as the
// account's holder and returns the previous one (still recorded when its
// lease expired instead of being released) with that instance's heartbeat
// count, so that the caller can tell how recently it renewed (see
// Lease.NotBefore). With the beats key, the acquisition counts as a
// heartbeat of its own.
//
//	KEYS: lease, fence, device, holder[, epoch, beats]
//	ARGV: instance, nonce, ttl ms, expected epoch ('' = unchecked)
//
// Returns {1, value, previous holder, its beats} when acquired, {0,
// holder} when held, {-1, ”} when the epoch differs.
var acquire = goredis.NewScript(`
if ARGV[4] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[4] then return {-1, ''} end
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local f = redis.call('INCR', KEYS[2])
local df = tonumber(redis.call('HGET', KEYS[3], 'fence') or '0')
if f <= df then
  f = df + 1
  redis.call('SET', KEYS[2], f)
end
local v = ARGV[1] .. ':' .. f .. '.' .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
local prev = redis.call('GET', KEYS[4]) or ''
redis.call('SET', KEYS[4], ARGV[1])
local beat = ''
if KEYS[6] then
  redis.call('HINCRBY', KEYS[6], ARGV[1], 1)
  if prev ~= '' then beat = redis.call('HGET', KEYS[6], prev) or '' end
end
return {1, v, prev, beat}
`)

// renew extends every given lease still holding the given value.
// KEYS: leases; ARGV: ttl ms, then one value per key. Returns 1/0 per key.
var renew = goredis.NewScript(`
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[i + 1] then
    redis.call('PEXPIRE', k, ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`)

// release deletes every given lease still holding the given value, and
// the account's holder record with it (a released lease needs no guard).
// KEYS: lease, holder pairs; ARGV: one value per pair. Returns how many it
// deleted.
var release = goredis.NewScript(`
local n = 0
for i = 1, #KEYS, 2 do
  if redis.call('GET', KEYS[i]) == ARGV[(i + 1) / 2] then
    redis.call('DEL', KEYS[i], KEYS[i + 1])
    n = n + 1
  end
end
return n
`)

// heartbeat records an instance as live until now+ttl (Redis server time),
// drops expired members and returns the live ones. With the beats key it
// also counts the instance's heartbeats (a count that no clock can move)
// and returns every instance's count.
// KEYS: members[, beats]; ARGV: instance, ttl ms, leaving ('1' removes it).
// Returns {members, {instance, count, ...}}.
var heartbeat = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if KEYS[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if KEYS[2] then redis.call('HINCRBY', KEYS[2], ARGV[1], 1) end
end
local beats = {}
if KEYS[2] then beats = redis.call('HGETALL', KEYS[2]) end
return {redis.call('ZRANGE', KEYS[1], 0, -1), beats}
`)

// reserve takes the next slot of a GCRA rate limit (Redis server time) and
// returns how many microseconds the caller must wait before using it.
// KEYS: limiter; ARGV: interval µs, burst.
var reserve = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
if wait < 0 then wait = 0 end
tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return math.floor(wait)
`)

// One-time prekeys of an account: PREFIX:{ACCT}:prekeys holds the records
// by decimal key ID and "max", the largest ID ever stored; the zset
// PREFIX:{ACCT}:prekeys:pending holds the IDs not yet uploaded. Every write
// is fenced like a device write (luaFence) and keeps both keys in step.
//
//	KEYS of every write: device, lease, fence, prekeys, pending
//	ARGV of every write: lease value ('' = unfenced), token, then per script

// preKeyAdd stores new keys, all or none, after checking that the device
// exists and that no ID is stored. ARGV: ..., then ID, record pairs.
// Returns {'ok'}, {'lost'}, {'held'}, {'nodevice'} or {'dup', ID}.
var preKeyAdd = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return {'nodevice'} end
for i = 3, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[4], ARGV[i]) == 1 then return {'dup', ARGV[i]} end
end
local top = tonumber(redis.call('HGET', KEYS[4], 'max') or '0')
for i = 3, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[5], id, ARGV[i])
  if id > top then top = id end
end
redis.call('HSET', KEYS[4], 'max', top)
return {'ok'}
`)

// preKeyMark marks the keys with ID <= ARGV[3] uploaded. Returns {'ok'},
// {'lost'} or {'held'}.
var preKeyMark = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[3])
return {'ok'}
`)

// preKeyRemove forgets key ARGV[3]; "max" stays. Returns {'ok'}, {'lost'}
// or {'held'}.
var preKeyRemove = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
return {'ok'}
`)

// fencedReseal replaces the fields of a hash (prekeys, Signal state) that
// still hold what the caller read, fenced. KEYS: device, lease, fence, the
// hash; ARGV: lease value, token, then field, old value, new value
// triples. Returns {'ok', n}, {'lost'} or {'held'}.
var fencedReseal = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
local n = 0
for i = 3, #ARGV, 3 do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return {'ok', n}
`)

// preKeysPending reads the first ARGV[1] pending keys in ID order.
// KEYS: prekeys, pending. Returns ID, record pairs (a record is false
// when the hash lacks it).
var preKeysPending = goredis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[1], id)
end
return out
`)

// preKeyCounts reads the counts at one instant. KEYS: prekeys, pending.
// Returns {fields of the hash, has max, max, pending}.
var preKeyCounts = goredis.NewScript(`
return {redis.call('HLEN', KEYS[1]), redis.call('HEXISTS', KEYS[1], 'max'),
  redis.call('HGET', KEYS[1], 'max') or '0', redis.call('ZCARD', KEYS[2])}
`)

// signalApply writes a batch of Signal state changes of an account
// (signal.go), fenced like a device write, after checking that the device
// exists.
//
//	KEYS: device, lease, fence, prekeys, pending prekeys, Signal state
//	ARGV: lease value ('' = unfenced), token, used prekey ID ('' = none),
//	      identity count, record count, then field, value pairs: the
//	      identities, then the records (value '' deletes the field)
//
// Returns {'ok', changed identity fields...}, {'lost'}, {'held'} or
// {'nodevice'}.
var signalApply = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return {'nodevice'} end
if ARGV[3] ~= '' then
  redis.call('HDEL', KEYS[4], ARGV[3])
  redis.call('ZREM', KEYS[5], ARGV[3])
end
local out = {'ok'}
local i = 6
for _ = 1, tonumber(ARGV[4]) do
  local old = redis.call('HGET', KEYS[6], ARGV[i])
  if old ~= ARGV[i + 1] then
    if old then out[#out + 1] = ARGV[i] end
    redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
for _ = 1, tonumber(ARGV[5]) do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[6], ARGV[i])
  else
    redis.call('HSET', KEYS[6], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
return out
`)
