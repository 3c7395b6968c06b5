package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/store"
)

// An account's Signal state (store.SignalStore) is one hash in the
// device's slot, PREFIX:{ACCT}:signal, with the fields the store package
// names (store.SessionKey, IdentityKey, SenderKeyKey). ApplySignal is one
// fenced script (signalApply), one round trip: through the Store it is an
// administrative write, through Fenced and Bound it needs the account's
// lease, else store.ErrLeaseLost and nothing changes. Session and sender
// key records are sealed with the Store's Sealer before they leave the
// process.

// Session implements store.SignalStore.
func (s *Store) Session(ctx context.Context, id, addr string) ([]byte, error) {
	const op = "load session"
	rec, err := s.signalRecord(ctx, op, id, store.SessionKey(addr))
	if err != nil {
		return nil, fmt.Errorf("redis: %s %s of %q: %w", op, addr, id, err)
	}
	return rec, nil
}

// SenderKey implements store.SignalStore.
func (s *Store) SenderKey(ctx context.Context, id, group, sender string) ([]byte, error) {
	const op = "load sender key"
	rec, err := s.signalRecord(ctx, op, id, store.SenderKeyKey(group, sender))
	if err != nil {
		return nil, fmt.Errorf("redis: %s of %s in %s of %q: %w", op, sender, group, id, err)
	}
	return rec, nil
}

func (s *Store) signalRecord(ctx context.Context, op, id, field string) ([]byte, error) {
	v, err := s.signalGet(ctx, op, id, field)
	if err != nil {
		return nil, err
	}
	if len(v) > store.MaxSignalStoredLen {
		return nil, fmt.Errorf("%w: stored value of %d bytes", store.ErrCorrupt, len(v))
	}
	b := []byte(v)
	defer clear(b)
	rec, _, err := store.DecodeSignal(id, field, b, s.sealer)
	return rec, err
}

// signalGet reads one field of the Signal hash of id (ErrNotFound when
// absent).
func (s *Store) signalGet(ctx context.Context, op, id, field string) (string, error) {
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return "", err
	}
	defer cancel()
	if store.ValidateID(id) != nil {
		return "", store.ErrNotFound
	}
	v, err := s.c.HGet(ctx, s.k.signal(id), field).Result()
	if errors.Is(err, goredis.Nil) {
		return "", store.ErrNotFound
	}
	return v, err
}

// PeerIdentity implements store.SignalStore.
func (s *Store) PeerIdentity(ctx context.Context, id, addr string) ([32]byte, error) {
	const op = "load identity"
	var key [32]byte
	v, err := s.signalGet(ctx, op, id, store.IdentityKey(addr))
	if err == nil && len(v) != len(key) {
		err = fmt.Errorf("%w: identity of %d bytes", store.ErrCorrupt, len(v))
	}
	if err != nil {
		return key, fmt.Errorf("redis: %s %s of %q: %w", op, addr, id, err)
	}
	copy(key[:], v)
	return key, nil
}

// ApplySignal implements store.SignalStore as an administrative write
// (see Save).
func (s *Store) ApplySignal(ctx context.Context, id string, c store.SignalChanges) (store.SignalApplied, error) {
	return s.applySignal(ctx, id, c, Lease{})
}

func (s *Store) applySignal(ctx context.Context, id string, c store.SignalChanges, l Lease) (store.SignalApplied, error) {
	const op = "apply signal changes"
	var out store.SignalApplied
	if err := store.CheckSignalChanges(c); err != nil {
		return out, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	if store.ValidateID(id) != nil {
		if err := s.ready(ctx, op); err != nil {
			return out, err
		}
		return out, fmt.Errorf("redis: %s of %q: no such device: %w", op, id, store.ErrNotFound)
	}
	if c.Empty() {
		return out, s.ready(ctx, op)
	}
	usedPreKey := ""
	if c.UsedPreKey != 0 {
		usedPreKey = strconv.FormatUint(uint64(c.UsedPreKey), 10)
	}
	records := len(c.Sessions) + len(c.SenderKeys)
	args := make([]any, 0, 5+2*(len(c.Identities)+records))
	args = append(args, usedPreKey, len(c.Identities), records)
	for _, ic := range c.Identities {
		args = append(args, store.IdentityKey(ic.Addr), ic.Key[:])
	}
	var sealed [][]byte
	defer func() {
		for _, b := range sealed {
			clear(b)
		}
	}()
	add := func(field string, rec []byte) error {
		if rec == nil {
			args = append(args, field, "")
			return nil
		}
		enc, err := store.EncodeSignal(id, field, rec, s.sealer)
		if err != nil {
			return err
		}
		sealed = append(sealed, enc)
		args = append(args, field, enc)
		return nil
	}
	for _, sc := range c.Sessions {
		if err := add(store.SessionKey(sc.Addr), sc.Record); err != nil {
			return out, fmt.Errorf("redis: %s of %q: %w", op, id, err)
		}
	}
	for _, kc := range c.SenderKeys {
		if err := add(store.SenderKeyKey(kc.Group, kc.Sender), kc.Record); err != nil {
			return out, fmt.Errorf("redis: %s of %q: %w", op, id, err)
		}
	}
	if len(c.Events) > 0 {
		// First, in a round trip of their own: the stream is outside the
		// account's hash slot (see store.SignalStore.ApplySignal).
		if _, err := s.Append(ctx, c.Events...); err != nil {
			return out, err // "redis: outbox append: …"
		}
	}
	ctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return out, err
	}
	defer cancel()
	if l.Value != "" && l.Account != id {
		return out, fmt.Errorf("redis: %s of %q with the lease of %q: %w", op, id, l.Account, store.ErrLeaseLost)
	}
	keys := []string{s.k.device(id), s.k.lease(id), s.k.fence(id), s.k.prekeys(id), s.k.pending(id), s.k.signal(id)}
	res, err := replyStrings(signalApply.Run(ctx, s.c, keys, append([]any{string(l.Value), l.Token.String()}, args...)...))
	if err != nil {
		return out, fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	if len(res) == 0 {
		return out, fmt.Errorf("redis: %s of %q: %w: empty script reply", op, id, ErrProtocol)
	}
	switch res[0] {
	case "ok":
	case "nodevice":
		return out, fmt.Errorf("redis: %s of %q: no such device: %w", op, id, store.ErrNotFound)
	default:
		return out, s.outcome(op, id, res)
	}
	for _, f := range res[1:] {
		addr, ok := cutIdentityField(f)
		if !ok {
			return store.SignalApplied{}, fmt.Errorf("redis: %s of %q: %w: script answered %q", op, id, ErrProtocol, f)
		}
		out.ChangedIdentities = append(out.ChangedIdentities, addr)
	}
	return out, nil
}

// cutIdentityField returns the address of an identity field.
func cutIdentityField(f string) (string, bool) {
	addr := f[min(2, len(f)):]
	return addr, store.IdentityKey(addr) == f
}

// The fenced view: ApplySignal needs the account's lease, reads do not.

func (v *view) Session(ctx context.Context, id, addr string) ([]byte, error) {
	if err := v.check("load session"); err != nil {
		return nil, err
	}
	return v.s.Session(ctx, id, addr)
}

func (v *view) PeerIdentity(ctx context.Context, id, addr string) ([32]byte, error) {
	if err := v.check("load identity"); err != nil {
		return [32]byte{}, err
	}
	return v.s.PeerIdentity(ctx, id, addr)
}

func (v *view) SenderKey(ctx context.Context, id, group, sender string) ([]byte, error) {
	if err := v.check("load sender key"); err != nil {
		return nil, err
	}
	return v.s.SenderKey(ctx, id, group, sender)
}

func (v *view) ApplySignal(ctx context.Context, id string, c store.SignalChanges) (store.SignalApplied, error) {
	if err := v.check("apply signal changes"); err != nil {
		return store.SignalApplied{}, err
	}
	if store.ValidateID(id) != nil {
		return v.s.applySignal(ctx, id, c, Lease{}) // no device, no lease: ErrNotFound
	}
	l, ok := v.lease(id)
	if !ok {
		return store.SignalApplied{}, fmt.Errorf("redis: apply signal changes of %q: no lease held: %w", id, store.ErrLeaseLost)
	}
	return v.s.applySignal(ctx, id, c, l)
}

// resealSignal seals, under lease l, every session and sender key record
// of id still in the clear (the owner's migration, see view.Load, and
// Archive). Records changed meanwhile are left alone.
func (s *Store) resealSignal(ctx context.Context, id string, l Lease) error {
	const op = "reseal signal state"
	if s.sealer == nil || store.ValidateID(id) != nil {
		return nil
	}
	rctx, cancel, err := s.begin(ctx, op)
	if err != nil {
		return err
	}
	all, err := s.c.HGetAll(rctx, s.k.signal(id)).Result()
	cancel()
	if err != nil {
		return fmt.Errorf("redis: %s of %q: %w", op, id, err)
	}
	var args []any
	for field, v := range all {
		if !store.IsRecordKey(field) {
			continue
		}
		b := []byte(v)
		rec, info, err := store.DecodeSignal(id, field, b, s.sealer)
		clear(b)
		if err != nil {
			return fmt.Errorf("redis: %s of %q: %s: %w", op, id, field, err)
		}
		if info.Sealed {
			continue
		}
		enc, err := store.EncodeSignal(id, field, rec, s.sealer)
		clear(rec)
		if err != nil {
			return fmt.Errorf("redis: %s of %q: %w", op, id, err)
		}
		args = append(args, field, v, enc)
	}
	for len(args) > 0 {
		n := min(len(args), 3*resealChunk)
		ctx, cancel, err := s.begin(ctx, op)
		if err != nil {
			return err
		}
		keys := []string{s.k.device(id), s.k.lease(id), s.k.fence(id), s.k.signal(id)}
		res, err := replyStrings(fencedReseal.Run(ctx, s.c, keys, append([]any{string(l.Value), l.Token.String()}, args[:n]...)...))
		cancel()
		if err != nil {
			return fmt.Errorf("redis: %s of %q: %w", op, id, err)
		}
		if len(res) == 0 {
			return fmt.Errorf("redis: %s of %q: %w: empty script reply", op, id, ErrProtocol)
		}
		if err := s.outcome(op, id, res); err != nil {
			return err
		}
		args = args[n:]
	}
	return nil
}
