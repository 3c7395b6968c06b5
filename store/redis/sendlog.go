package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// ClaimSend implements store.SendLog as an administrative write (see
// Save): field "m:KEY" of the account's Signal state hash, pruned by the
// same script.
func (s *Store) ClaimSend(ctx context.Context, id, key, msgID string) (string, bool, error) {
	return s.claimSend(ctx, id, key, msgID, Lease{})
}

func (s *Store) claimSend(ctx context.Context, id, key, msgID string, l Lease) (string, bool, error) {
	const op = "claim send"
	if err := store.ValidateSendKey(key, msgID); err != nil {
		return "", false, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	if store.ValidateID(id) != nil {
		if err := s.ready(ctx, op); err != nil {
			return "", false, err
		}
		return "", false, fmt.Errorf("redis: %s of %q: no such device: %w", op, id, store.ErrNotFound)
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return "", false, err
	}
	defer cancel()
	if l.Value != "" && l.Account != id {
		return "", false, fmt.Errorf("redis: %s of %q with the lease of %q: %w", op, id, l.Account, store.ErrLeaseLost)
	}
	now := s.now()
	keys := []string{s.k.device(id), s.k.lease(id), s.k.fence(id), s.k.signal(id)}
	res, err := replyStrings(sendClaim.Run(ctx, s.c, keys, string(l.Value), l.Token.String(),
		store.SendKeyKey(key), store.SendEntry(now, msgID), now.Add(-store.SendKeyTTL).Unix(),
		store.SendCursorKey, store.SendPruneBatch))
	if err != nil {
		return "", false, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	if len(res) == 0 {
		return "", false, fmt.Errorf("redis: %s of %q: %w: empty script reply", op, id, ErrProtocol)
	}
	switch res[0] {
	case "ok":
		return msgID, true, nil
	case "dup":
		if existing, ok := store.LiveSendEntry(res[len(res)-1], now); len(res) == 2 && ok {
			return existing, false, nil
		}
		return "", false, fmt.Errorf("redis: %s of %q: %w: script answered %q", op, id, ErrProtocol, res)
	case "nodevice":
		return "", false, fmt.Errorf("redis: %s of %q: no such device: %w", op, id, store.ErrNotFound)
	}
	return "", false, s.outcome(op, id, res)
}

// sendClaim records an idempotency key unless a live entry holds it,
// fenced like a device write. A fresh claim then prunes: one HSCAN step
// (MATCH m:*, COUNT batch) from the cursor kept in the hash deletes the
// expired entries it returns and keeps the next cursor (none once the scan
// is through: the next claim starts a new one). HSCAN returns every field
// present throughout a scan, so each expired entry goes within a scan.
//
//	KEYS: device, lease, fence, Signal state
//	ARGV: lease value ('' = unfenced), token, field, new entry ("UNIX ID"),
//	      the oldest Unix time still live, the cursor's field, batch
//
// Returns {'ok'}, {'dup', entry}, {'lost'}, {'held'} or {'nodevice'}.
var sendClaim = goredis.NewScript(luaFence + `
local tok, err = fence_check(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if err then return {err} end
if redis.call('HEXISTS', KEYS[1], 'rec') == 0 then return {'nodevice'} end
local oldest = tonumber(ARGV[5])
local function live(entry)
  local sp = string.find(entry, ' ', 1, true)
  local at = sp and tonumber(string.sub(entry, 1, sp - 1))
  return at and at > oldest
end
local old = redis.call('HGET', KEYS[4], ARGV[3])
if old and live(old) then return {'dup', old} end
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
local cursor = redis.call('HGET', KEYS[4], ARGV[6]) or '0'
local step = redis.call('HSCAN', KEYS[4], cursor, 'MATCH', 'm:*', 'COUNT', ARGV[7])
local found = step[2]
for i = 1, #found, 2 do
  if not live(found[i + 1]) then redis.call('HDEL', KEYS[4], found[i]) end
end
if step[1] == '0' then
  redis.call('HDEL', KEYS[4], ARGV[6])
else
  redis.call('HSET', KEYS[4], ARGV[6], step[1])
end
return {'ok'}
`)

// SentWith implements store.SendLog: one HGET.
func (s *Store) SentWith(ctx context.Context, id, key string) (string, bool, error) {
	const op = "read send key"
	v, err := s.signalGet(ctx, op, id, store.SendKeyKey(key))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	msgID, ok := store.LiveSendEntry(v, s.now())
	return msgID, ok, nil
}

// SentWith of the fenced view reads without the lease.
func (v *view) SentWith(ctx context.Context, id, key string) (string, bool, error) {
	if err := v.check("read send key"); err != nil {
		return "", false, err
	}
	return v.s.SentWith(ctx, id, key)
}

// ClaimSend of the fenced view needs the account's lease.
func (v *view) ClaimSend(ctx context.Context, id, key, msgID string) (string, bool, error) {
	if err := v.check("claim send"); err != nil {
		return "", false, err
	}
	if store.ValidateID(id) != nil {
		return v.s.claimSend(ctx, id, key, msgID, Lease{})
	}
	l, ok := v.lease(id)
	if !ok {
		return "", false, fmt.Errorf("redis: claim send of %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.claimSend(ctx, id, key, msgID, l)
}
