package status

import (
	"sort"
	"sync"
	"time"

	"github.com/wafleet/wafleet/events"
)

// Account is the view of one account, as the HTTP API returns it.
type Account struct {
	ID    string       `json:"id"`
	State events.State `json:"state"`
	JID   string       `json:"jid"`
	// QR is the QR code showing while the account is pairing, else nil.
	QR *string `json:"qr"`
	// QRIndex, QRCount and QRExpiresAt say which code of the batch QR is
	// ("code 2 of 6") and when it stops being valid; set with QR.
	QRIndex     int        `json:"qr_index"`
	QRCount     int        `json:"qr_count"`
	QRExpiresAt *time.Time `json:"qr_expires_at"`
	// LinkCode is the code to type on the phone ("ABCD-EFGH") while the
	// account pairs by phone number, until LinkCodeExpiresAt; else absent
	// from the JSON. It is a secret like QR: the fleet view never
	// publishes it.
	LinkCode          *string    `json:"link_code,omitempty"`
	LinkCodeExpiresAt *time.Time `json:"link_code_expires_at,omitempty"`
	Restarts          int        `json:"restarts"`
	Reconnects        int        `json:"reconnects"`
	// LastError is the last failure since the account was last
	// connected ("" once it connects); LastErrorAt is when it happened.
	LastError      string     `json:"last_error"`
	LastErrorAt    *time.Time `json:"last_error_at"`
	ConnectedSince *time.Time `json:"connected_since"`
	// PairingSince is when the account entered pairing (for the health
	// summary's oldest pairing); not part of the JSON.
	PairingSince time.Time `json:"-"`

	// The fleet-wide view (package fleet/view) adds these; the board
	// leaves them empty, and then they are not part of the JSON.
	//
	// Instance is the instance that runs the account ("" and state
	// stopped: none holds it now). InstanceAlive says whether that instance
	// is a live member of the fleet; false keeps the last state it
	// published. QRShowing says that a QR code is showing, also where QR
	// is null (the code of an account pairing on another instance is
	// fetched from that instance for one account, never published).
	Instance      string `json:"instance,omitempty"`
	InstanceAlive *bool  `json:"instance_alive,omitempty"`
	QRShowing     bool   `json:"qr_showing,omitempty"`
}

// Board folds events into the current view of every account. It is safe
// for concurrent use and never blocks for long.
type Board struct {
	mu       sync.RWMutex
	accounts map[string]*Account
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{accounts: make(map[string]*Account)}
}

// Publish applies one event. A lease_lost removes the account's view: the
// account runs on another instance now (fleet mode), so this instance
// neither shows it nor counts it. The supervisor forgets an account it
// stopped as well, but a lease_lost may arrive after that.
func (b *Board) Publish(e events.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Kind == events.KindLeaseLost {
		delete(b.accounts, e.Account)
		return
	}
	a := b.accounts[e.Account]
	if a == nil {
		a = &Account{ID: e.Account}
		b.accounts[e.Account] = a
	}
	if e.State != "" {
		if e.State == events.StatePairing && a.State != events.StatePairing {
			a.PairingSince = e.Time
		}
		a.State = e.State
	}
	if e.JID != "" {
		a.JID = e.JID
	}
	switch e.Kind {
	case events.KindQR:
		qr := e.QR
		a.QR = &qr
		a.QRIndex, a.QRCount = e.QRIndex, e.QRCount
		a.QRExpiresAt = nil
		if !e.QRExpires.IsZero() {
			at := e.QRExpires
			a.QRExpiresAt = &at
		}
	case events.KindLinkCode:
		code, at := e.LinkCode, e.LinkCodeExpires
		a.LinkCode, a.LinkCodeExpiresAt = &code, &at
	case events.KindConnected:
		at := e.Time
		a.ConnectedSince = &at
		a.LastError = ""
		a.LastErrorAt = nil
	case events.KindReconnect:
		a.Reconnects++
	case events.KindRestart:
		a.Restarts++
	case events.KindLoggedOut:
		a.JID = ""
	}
	if e.Error != "" {
		at := e.Time
		a.LastError, a.LastErrorAt = e.Error, &at
	}
	if a.State != events.StatePairing {
		a.QR, a.QRIndex, a.QRCount, a.QRExpiresAt = nil, 0, 0, nil
		a.LinkCode, a.LinkCodeExpiresAt = nil, nil
	}
	if a.State != events.StateConnected {
		a.ConnectedSince = nil
	}
}

// Forget removes an account that is no longer configured here.
func (b *Board) Forget(id string) {
	b.mu.Lock()
	delete(b.accounts, id)
	b.mu.Unlock()
}

// Get returns a copy of one account's view.
func (b *Board) Get(id string) (Account, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	a, ok := b.accounts[id]
	if !ok {
		return Account{}, false
	}
	return a.copy(), true
}

// List returns copies of every account's view, sorted by id.
func (b *Board) List() []Account {
	b.mu.RLock()
	out := make([]Account, 0, len(b.accounts))
	for _, a := range b.accounts {
		out = append(out, a.copy())
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (a *Account) copy() Account {
	c := *a
	if a.QR != nil {
		qr := *a.QR
		c.QR = &qr
	}
	if a.LinkCode != nil {
		code, at := *a.LinkCode, *a.LinkCodeExpiresAt
		c.LinkCode, c.LinkCodeExpiresAt = &code, &at
	}
	if a.ConnectedSince != nil {
		t := *a.ConnectedSince
		c.ConnectedSince = &t
	}
	if a.QRExpiresAt != nil {
		t := *a.QRExpiresAt
		c.QRExpiresAt = &t
	}
	if a.LastErrorAt != nil {
		t := *a.LastErrorAt
		c.LastErrorAt = &t
	}
	if a.InstanceAlive != nil {
		alive := *a.InstanceAlive
		c.InstanceAlive = &alive
	}
	return c
}

// Summary is the health line: accounts by state, restarts, reconnects and
// the oldest pairing still waiting for a scan.
type Summary struct {
	Total         int
	ByState       map[events.State]int
	Restarts      int
	Reconnects    int
	OldestPairing time.Duration // 0 when no account is pairing
}

// Summarize computes the health summary at now.
func (b *Board) Summarize(now time.Time) Summary {
	b.mu.RLock()
	defer b.mu.RUnlock()
	s := Summary{Total: len(b.accounts), ByState: make(map[events.State]int)}
	for _, a := range b.accounts {
		s.ByState[a.State]++
		s.Restarts += a.Restarts
		s.Reconnects += a.Reconnects
		if a.State == events.StatePairing && !a.PairingSince.IsZero() {
			s.OldestPairing = max(s.OldestPairing, now.Sub(a.PairingSince))
		}
	}
	return s
}
