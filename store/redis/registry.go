package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// The account registry (store.Registry) is one hash, PREFIX:{registry}:accounts
// (id -> store.EncodeAccount record), beside a change counter,
// PREFIX:{registry}:version, in the same slot. Every change is one script
// that writes the hash, increments the counter and publishes the new
// counter on the channel PREFIX:registry, so that the other instances
// notice (WatchAccounts) and a missed message shows as a changed counter
// (AccountsVersion).

// registryRetries bounds the attempts of a compare-and-set change that
// other writers keep overtaking.
const registryRetries = 100

// Reply codes of scriptRegistry besides the new counter.
const (
	regAbsent   = -1 // create: the id exists; update, delete: it does not
	regConflict = -2 // the record or the counter changed since it was read
)

// scriptRegistry changes the registry. KEYS: the hash, the counter.
// ARGV: mode, channel, then
//
//	create ID REC          HSETNX
//	update ID OLD REC      HSET when the stored record is still OLD
//	delete ID              HDEL
//	seed VERSION N ID REC... ID...
//	                       when the counter is still VERSION: HSET the N
//	                       pairs, HDEL the remaining ids
//
// It returns the new counter, or regAbsent / regConflict.
var scriptRegistry = goredis.NewScript(`
local mode, channel = ARGV[1], ARGV[2]
if mode == 'create' then
  if redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) == 0 then return -1 end
elseif mode == 'update' then
  local cur = redis.call('HGET', KEYS[1], ARGV[3])
  if not cur then return -1 end
  if cur ~= ARGV[4] then return -2 end
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
elseif mode == 'delete' then
  if redis.call('HDEL', KEYS[1], ARGV[3]) == 0 then return -1 end
elseif mode == 'seed' then
  if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[3]) then return -2 end
  local n = tonumber(ARGV[4])
  local i = 5
  for _ = 1, n do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i+1])
    i = i + 2
  end
  while i <= #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
    i = i + 1
  end
else
  return redis.error_reply('unknown mode')
end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', channel, v)
return v
`)

var _ store.Registry = (*Store)(nil)

// registry runs scriptRegistry with args after mode.
func (s *Store) registry(ctx context.Context, mode string, args ...any) (int64, error) {
	cl := &call{script: scriptRegistry, keys: []string{s.k.registry(), s.k.registryVersion()}, args: append([]any{mode, s.k.registryChannel()}, args...)}
	if err := runCalls(ctx, s.c, []*call{cl}, nil); err != nil {
		return 0, err
	}
	return cl.cmd.Int64()
}

// CreateAccount implements store.Registry with HSETNX.
func (s *Store) CreateAccount(ctx context.Context, r store.AccountRecord) (store.AccountRecord, error) {
	ctx, cancel, err := s.begin(ctx, "create account")
	if err != nil {
		return store.AccountRecord{}, err
	}
	defer cancel()
	r.Created = time.Now().UTC()
	r.Updated = r.Created
	rec, err := store.EncodeAccount(r, s.sealer)
	if err != nil {
		return store.AccountRecord{}, fmt.Errorf("redis: create account: %w", err)
	}
	v, err := s.registry(ctx, "create", r.ID, rec)
	switch {
	case err != nil:
		return store.AccountRecord{}, fmt.Errorf("redis: create account %q: %w", r.ID, err)
	case v == regAbsent:
		return store.AccountRecord{}, fmt.Errorf("redis: create account %q: %w", r.ID, store.ErrExists)
	}
	return r, nil
}

// UpdateAccount implements store.Registry: read, then write if the record
// is still the one read.
func (s *Store) UpdateAccount(ctx context.Context, r store.AccountRecord) (store.AccountRecord, error) {
	ctx, cancel, err := s.begin(ctx, "update account")
	if err != nil {
		return store.AccountRecord{}, err
	}
	defer cancel()
	for range registryRetries {
		old, err := s.c.HGet(ctx, s.k.registry(), r.ID).Result()
		if errors.Is(err, goredis.Nil) {
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, store.ErrNotFound)
		}
		if err != nil {
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, err)
		}
		out, _, err := store.DecodeAccount(r.ID, []byte(old), s.sealer)
		if err != nil {
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, err)
		}
		out.Proxy, out.DeviceName, out.Updated = r.Proxy, r.DeviceName, time.Now().UTC()
		rec, err := store.EncodeAccount(out, s.sealer)
		if err != nil {
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, err)
		}
		v, err := s.registry(ctx, "update", r.ID, old, rec)
		switch {
		case err != nil:
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, err)
		case v == regAbsent:
			return store.AccountRecord{}, fmt.Errorf("redis: update account %q: %w", r.ID, store.ErrNotFound)
		case v != regConflict:
			return out, nil
		}
	}
	return store.AccountRecord{}, fmt.Errorf("redis: update account %q: changed by others %d times in a row", r.ID, registryRetries)
}

// DeleteAccount implements store.Registry.
func (s *Store) DeleteAccount(ctx context.Context, id string) error {
	ctx, cancel, err := s.begin(ctx, "delete account")
	if err != nil {
		return err
	}
	defer cancel()
	v, err := s.registry(ctx, "delete", id)
	switch {
	case err != nil:
		return fmt.Errorf("redis: delete account %q: %w", id, err)
	case v == regAbsent:
		return fmt.Errorf("redis: delete account %q: %w", id, store.ErrNotFound)
	}
	return nil
}

// Account implements store.Registry.
func (s *Store) Account(ctx context.Context, id string) (store.AccountRecord, error) {
	ctx, cancel, err := s.begin(ctx, "load account")
	if err != nil {
		return store.AccountRecord{}, err
	}
	defer cancel()
	v, err := s.c.HGet(ctx, s.k.registry(), id).Result()
	if errors.Is(err, goredis.Nil) {
		return store.AccountRecord{}, fmt.Errorf("redis: load account %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.AccountRecord{}, fmt.Errorf("redis: load account %q: %w", id, err)
	}
	r, _, err := store.DecodeAccount(id, []byte(v), s.sealer)
	if err != nil {
		return store.AccountRecord{}, fmt.Errorf("redis: load account %q: %w", id, err)
	}
	return r, nil
}

// Accounts implements store.Registry.
func (s *Store) Accounts(ctx context.Context) ([]store.AccountRecord, error) {
	ctx, cancel, err := s.begin(ctx, "list accounts")
	if err != nil {
		return nil, err
	}
	defer cancel()
	recs, _, _, err := s.readRegistry(ctx)
	if err != nil {
		return nil, fmt.Errorf("redis: list accounts: %w", err)
	}
	return store.SortedAccounts(recs), nil
}

// readRegistry reads the whole registry and its counter in one MULTI, and
// says which records hold a proxy in the clear although s has a Sealer.
func (s *Store) readRegistry(ctx context.Context) (map[string]store.AccountRecord, map[string]bool, int64, error) {
	var all *goredis.MapStringStringCmd
	var ver *goredis.StringCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		all = p.HGetAll(ctx, s.k.registry())
		ver = p.Get(ctx, s.k.registryVersion())
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, nil, 0, err
	}
	version, err := parseVersion(ver)
	if err != nil {
		return nil, nil, 0, err
	}
	recs := make(map[string]store.AccountRecord, len(all.Val()))
	inClear := map[string]bool{}
	for id, v := range all.Val() {
		r, sealed, err := store.DecodeAccount(id, []byte(v), s.sealer)
		if err != nil {
			return nil, nil, 0, err
		}
		recs[id] = r
		if !sealed && s.sealer != nil {
			inClear[id] = true
		}
	}
	return recs, inClear, version, nil
}

func parseVersion(cmd *goredis.StringCmd) (int64, error) {
	v, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: registry counter %q", ErrProtocol, v)
	}
	return n, nil
}

// SeedAccounts implements store.Registry: read the registry and its
// counter, then write the changes if the counter has not moved meanwhile.
// Resealed records are followed by a rewrite of the AOF, as devices are.
func (s *Store) SeedAccounts(ctx context.Context, recs []store.AccountRecord) (bool, error) {
	ctx, cancel, err := s.begin(ctx, "seed accounts")
	if err != nil {
		return false, err
	}
	defer cancel()
	for range registryRetries {
		cur, inClear, version, err := s.readRegistry(ctx)
		if err != nil {
			return false, fmt.Errorf("redis: seed accounts: %w", err)
		}
		p, err := store.PlanSeed(cur, inClear, recs, time.Now().UTC())
		if err != nil {
			return false, fmt.Errorf("redis: seed accounts: %w", err)
		}
		if len(p.Put) == 0 && len(p.Delete) == 0 {
			return false, nil
		}
		args := []any{version, len(p.Put)}
		for _, r := range p.Put {
			rec, err := store.EncodeAccount(r, s.sealer)
			if err != nil {
				return false, fmt.Errorf("redis: seed accounts: %w", err)
			}
			args = append(args, r.ID, rec)
		}
		for _, id := range p.Delete {
			args = append(args, id)
		}
		v, err := s.registry(ctx, "seed", args...)
		if err != nil {
			return false, fmt.Errorf("redis: seed accounts: %w", err)
		}
		if v != regConflict {
			if len(inClear) > 0 {
				s.aof.request()
			}
			return true, nil
		}
	}
	return false, fmt.Errorf("redis: seed accounts: the registry changed %d times in a row while seeding", registryRetries)
}

// AccountsVersion returns the registry's change counter: it grows with
// every change, so an instance that missed an announcement (WatchAccounts)
// sees that the registry changed by comparing it with the last it read.
func (s *Store) AccountsVersion(ctx context.Context) (int64, error) {
	ctx, cancel, err := s.begin(ctx, "registry version")
	if err != nil {
		return 0, err
	}
	defer cancel()
	v, err := parseVersion(s.c.Get(ctx, s.k.registryVersion()))
	if err != nil {
		return 0, fmt.Errorf("redis: registry version: %w", err)
	}
	return v, nil
}

// WatchAccounts subscribes to the registry's announcements: the returned
// channel receives a value (coalesced: it holds at most one) after every
// change of the registry made by any instance, until ctx ends. The client
// subscribes again by itself after a lost connection; announcements sent
// meanwhile are lost, so pair this with a periodic AccountsVersion check.
// The subscription is in place when WatchAccounts returns.
func (s *Store) WatchAccounts(ctx context.Context) (<-chan struct{}, error) {
	return s.watch(ctx, s.k.registryChannel(), "watch accounts")
}

// watch subscribes to channel and returns a coalescing signal of its
// messages (see WatchAccounts), until ctx ends.
func (s *Store) watch(ctx context.Context, channel, what string) (<-chan struct{}, error) {
	if err := s.ready(ctx, what); err != nil {
		return nil, err
	}
	ps := s.c.Subscribe(ctx, channel)
	sctx, cancel := withTimeout(ctx, s.timeout)
	_, err := ps.Receive(sctx) // the subscription's confirmation
	cancel()
	if err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("redis: %s: %w", what, err)
	}
	out := make(chan struct{}, 1)
	msgs := ps.Channel()
	go func() {
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, nil
}

// The registry through a lease-fenced view: not fenced (store.Registry).

func (v *view) CreateAccount(ctx context.Context, r store.AccountRecord) (store.AccountRecord, error) {
	if err := v.check("create account"); err != nil {
		return store.AccountRecord{}, err
	}
	return v.s.CreateAccount(ctx, r)
}

func (v *view) UpdateAccount(ctx context.Context, r store.AccountRecord) (store.AccountRecord, error) {
	if err := v.check("update account"); err != nil {
		return store.AccountRecord{}, err
	}
	return v.s.UpdateAccount(ctx, r)
}

func (v *view) DeleteAccount(ctx context.Context, id string) error {
	if err := v.check("delete account"); err != nil {
		return err
	}
	return v.s.DeleteAccount(ctx, id)
}

func (v *view) Account(ctx context.Context, id string) (store.AccountRecord, error) {
	if err := v.check("load account"); err != nil {
		return store.AccountRecord{}, err
	}
	return v.s.Account(ctx, id)
}

func (v *view) Accounts(ctx context.Context) ([]store.AccountRecord, error) {
	if err := v.check("list accounts"); err != nil {
		return nil, err
	}
	return v.s.Accounts(ctx)
}

func (v *view) SeedAccounts(ctx context.Context, recs []store.AccountRecord) (bool, error) {
	if err := v.check("seed accounts"); err != nil {
		return false, err
	}
	return v.s.SeedAccounts(ctx, recs)
}
