package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors of the account registry.
var (
	// ErrExists: an account with that id is already in the registry;
	// nothing was written.
	ErrExists = errors.New("store: account already exists")
	// ErrInvalidAccount: an account record out of bounds (see
	// ValidateAccount); nothing was written.
	ErrInvalidAccount = errors.New("store: invalid account record")
)

// Where an account of the registry comes from.
const (
	// SourceConfig: the YAML file names the account; SeedAccounts keeps
	// these records equal to the file's list.
	SourceConfig = "config"
	// SourceAPI: the account was created through the API; only the API
	// changes or removes it.
	SourceAPI = "api"
)

// Limits of an account record.
const (
	MaxProxyLen      = 2048 // AccountRecord.Proxy, in bytes
	MaxDeviceNameLen = 256  // AccountRecord.DeviceName, in bytes (the configuration allows less)
)

// AccountRecord is one account of the registry: an account this fleet
// runs. Proxy may carry credentials: it is sealed at rest like a device's
// secrets when the store has a Sealer, and never printed (String leaves it
// out).
type AccountRecord struct {
	ID         string
	Proxy      string
	DeviceName string
	Phone      string // pair by link code for this E.164 number ("": QR)
	Source     string // SourceConfig or SourceAPI
	Created    time.Time
	Updated    time.Time
}

// String describes the record without its proxy.
func (r AccountRecord) String() string {
	proxy := "none"
	if r.Proxy != "" {
		proxy = "set"
	}
	return fmt.Sprintf("account %q (source %s, device name %q, proxy %s)", r.ID, r.Source, r.DeviceName, proxy)
}

// sameSettings reports whether r and o run the account alike.
func (r AccountRecord) sameSettings(o AccountRecord) bool {
	return r.Proxy == o.Proxy && r.DeviceName == o.DeviceName && r.Phone == o.Phone && r.Source == o.Source
}

// ValidateAccount checks a record's id (ValidateID), the lengths of its
// proxy and device name, and its source. Errors wrap ErrInvalidAccount,
// name the field and never echo the proxy.
func ValidateAccount(r AccountRecord) error {
	if err := ValidateID(r.ID); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidAccount, err)
	}
	switch {
	case len(r.Proxy) > MaxProxyLen:
		return fmt.Errorf("%w: proxy is %d bytes long, at most %d allowed", ErrInvalidAccount, len(r.Proxy), MaxProxyLen)
	case len(r.DeviceName) > MaxDeviceNameLen:
		return fmt.Errorf("%w: device name is %d bytes long, at most %d allowed", ErrInvalidAccount, len(r.DeviceName), MaxDeviceNameLen)
	case len(r.Phone) > maxPhoneLen:
		return fmt.Errorf("%w: phone is %d bytes long, at most %d allowed", ErrInvalidAccount, len(r.Phone), maxPhoneLen)
	case r.Source != SourceConfig && r.Source != SourceAPI:
		return fmt.Errorf("%w: source %q is not %q or %q", ErrInvalidAccount, r.Source, SourceConfig, SourceAPI)
	}
	return nil
}

// Registry is the list of accounts a fleet runs, kept in the store so
// that it survives restarts and, with Redis, every instance sees the same
// one. The YAML file's accounts are in it with SourceConfig (SeedAccounts
// keeps them equal to the file), the accounts created through the API with
// SourceAPI. Writes are not fenced by any lease. Implementations are safe
// for concurrent use.
type Registry interface {
	// CreateAccount adds r, with Created and Updated set to now, and
	// returns it. An id already in the registry is an error wrapping
	// ErrExists: of concurrent creates of one id exactly one succeeds.
	CreateAccount(ctx context.Context, r AccountRecord) (AccountRecord, error)

	// UpdateAccount replaces the proxy and device name of the account
	// r.ID (its source and creation time are kept), sets Updated, and
	// returns the record; an unknown id wraps ErrNotFound.
	UpdateAccount(ctx context.Context, r AccountRecord) (AccountRecord, error)

	// DeleteAccount removes the account id from the registry (its device,
	// if any, stays where it is); an unknown id wraps ErrNotFound.
	DeleteAccount(ctx context.Context, id string) error

	// Account returns the record of id, or an error wrapping ErrNotFound.
	Account(ctx context.Context, id string) (AccountRecord, error)

	// Accounts returns every record, by id.
	Accounts(ctx context.Context) ([]AccountRecord, error)

	// SeedAccounts makes the SourceConfig records equal to recs in one
	// atomic step: each of recs is stored with SourceConfig (an API
	// record of the same id becomes a config one: the file wins), config
	// records whose id is not in recs are removed, API records are kept.
	// Records whose proxy is in the clear while the store has a Sealer are
	// written again, sealed. It reports whether anything changed.
	SeedAccounts(ctx context.Context, recs []AccountRecord) (bool, error)
}

// SeedPlan is what SeedAccounts changes: the records to write (new or
// changed) and the ids to remove, each by id.
type SeedPlan struct {
	Put    []AccountRecord
	Delete []string
}

// PlanSeed compares the registry's records cur to the configured recs at
// time now, for the stores' SeedAccounts. resealed names the records
// whose proxy is stored in the clear and should be written again, sealed.
// A record of recs that fails ValidateAccount, or an id twice, is an error
// wrapping ErrInvalidAccount.
func PlanSeed(cur map[string]AccountRecord, resealed map[string]bool, recs []AccountRecord, now time.Time) (SeedPlan, error) {
	var p SeedPlan
	want := make(map[string]bool, len(recs))
	for _, r := range recs {
		r.Source = SourceConfig
		if err := ValidateAccount(r); err != nil {
			return SeedPlan{}, err
		}
		if want[r.ID] {
			return SeedPlan{}, fmt.Errorf("%w: account %q is listed twice", ErrInvalidAccount, r.ID)
		}
		want[r.ID] = true
		old, ok := cur[r.ID]
		switch {
		case !ok:
			r.Created, r.Updated = now, now
		case !old.sameSettings(r):
			r.Created, r.Updated = old.Created, now
		case resealed[r.ID]:
			r = old
		default:
			continue
		}
		p.Put = append(p.Put, r)
	}
	for id, old := range cur {
		switch {
		case want[id]:
		case old.Source == SourceConfig:
			p.Delete = append(p.Delete, id)
		case resealed[id]:
			p.Put = append(p.Put, old)
		}
	}
	slices.Sort(p.Delete)
	slices.SortFunc(p.Put, func(a, b AccountRecord) int { return cmp.Compare(a.ID, b.ID) })
	return p, nil
}

// accountJSON is a record as stored (the key is its id): the proxy either
// in the clear or sealed, with the id inside the sealed data so that a
// sealed proxy cannot be moved to another account.
type accountJSON struct {
	Proxy       string    `json:"proxy,omitempty"`
	ProxySealed []byte    `json:"proxy_sealed,omitempty"`
	DeviceName  string    `json:"device_name,omitempty"`
	Phone       string    `json:"phone,omitempty"`
	Source      string    `json:"source"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// maxPhoneLen bounds AccountRecord.Phone ("+" and at most 15 digits).
const maxPhoneLen = 16

// maxAccountRecordLen bounds an encoded account record.
const maxAccountRecordLen = 8 << 10

// EncodeAccount encodes r for storage, its proxy sealed when sealer is
// not nil. Shared by the stores so that a record reads the same in both.
func EncodeAccount(r AccountRecord, sealer Sealer) ([]byte, error) {
	if err := ValidateAccount(r); err != nil {
		return nil, err
	}
	j := accountJSON{DeviceName: r.DeviceName, Phone: r.Phone, Source: r.Source, Created: r.Created.UTC(), Updated: r.Updated.UTC()}
	switch {
	case r.Proxy == "":
	case sealer == nil:
		j.Proxy = r.Proxy
	default:
		sealed, err := sealer.Seal([]byte(r.ID + "\x00" + r.Proxy))
		if err != nil {
			return nil, fmt.Errorf("seal the proxy of %q: %w", r.ID, err)
		}
		j.ProxySealed = sealed
	}
	return json.Marshal(j)
}

// DecodeAccount decodes the stored record of id. sealed reports whether
// its proxy is sealed (a record without a proxy counts as sealed: it has
// nothing to hide). A sealed proxy without a sealer wraps ErrNoSealer;
// malformed data wraps ErrCorrupt.
func DecodeAccount(id string, data []byte, sealer Sealer) (r AccountRecord, sealed bool, err error) {
	if len(data) > maxAccountRecordLen {
		return AccountRecord{}, false, fmt.Errorf("%w: account record of %q is %d bytes", ErrCorrupt, id, len(data))
	}
	var j accountJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return AccountRecord{}, false, fmt.Errorf("%w: account record of %q does not decode", ErrCorrupt, id)
	}
	r = AccountRecord{ID: id, Proxy: j.Proxy, DeviceName: j.DeviceName, Phone: j.Phone, Source: j.Source, Created: j.Created, Updated: j.Updated}
	sealed = j.Proxy == ""
	if len(j.ProxySealed) > 0 {
		if sealer == nil {
			return AccountRecord{}, false, fmt.Errorf("account record of %q: %w", id, ErrNoSealer)
		}
		plain, err := sealer.Open(j.ProxySealed)
		if err != nil {
			return AccountRecord{}, false, fmt.Errorf("account record of %q: %w", id, err)
		}
		owner, proxy, ok := bytes.Cut(plain, []byte{0})
		if !ok || string(owner) != id {
			return AccountRecord{}, false, fmt.Errorf("%w: the sealed proxy of %q belongs to another account", ErrCorrupt, id)
		}
		r.Proxy, sealed = string(proxy), true
	}
	if err := ValidateAccount(r); err != nil {
		return AccountRecord{}, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return r, sealed, nil
}

// SortedAccounts returns the records of m by id.
func SortedAccounts(m map[string]AccountRecord) []AccountRecord {
	out := make([]AccountRecord, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b AccountRecord) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
