package connection

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
)

// ErrWipePaused is the last_error of an account whose server-initiated
// wipe the WipeGuard holds: its device stays in the store, untouched,
// until an operator confirms the wipes or restarts the account.
var ErrWipePaused = errors.New("the wipe awaits an operator: too many accounts were logged out at once (POST /api/wipes/confirm archives the devices and pairs again; restarting the account keeps its device)")

// WipeGuardConfig configures NewWipeGuard.
type WipeGuardConfig struct {
	// Share is the part of the accounts (0 < Share <= 1) whose logout
	// within Window raises the alarm: more than Share of them pauses the
	// wipes. Default 0.2.
	Share float64
	// Min is the least number of logouts within Window that may pause the
	// wipes, so that one logout of a small install is never held. Default 3.
	Min int
	// Window is how far back logouts count. Default 10 min.
	Window time.Duration
	// Accounts reports how many accounts run here. Required.
	Accounts func() int
	// Logger receives the alarm. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// WipeGuard stands between a server's logouts and the wipes they cause,
// for all the accounts of one instance: a broken or hostile server that
// logs out a large part of the fleet at once gets the first few wipes
// (which archive, so they can be undone) and then none, until an operator
// confirms. It is safe for concurrent use; connection actors share one
// through Deps.WipeGuard.
type WipeGuard struct {
	cfg WipeGuardConfig

	mu      sync.Mutex
	logouts map[string]time.Time // account -> its last server logout within the window
	paused  bool                 // the alarm is raised: every wipe is held
	held    map[string]bool      // accounts whose wipe is held
}

// NewWipeGuard returns a guard; zero fields of cfg take their defaults.
func NewWipeGuard(cfg WipeGuardConfig) (*WipeGuard, error) {
	if cfg.Accounts == nil {
		return nil, errors.New("connection: wipe guard: no account count")
	}
	if cfg.Share == 0 {
		cfg.Share = 0.2
	}
	if cfg.Share < 0 || cfg.Share > 1 {
		return nil, fmt.Errorf("connection: wipe guard: share %v is outside (0, 1]", cfg.Share)
	}
	if cfg.Min <= 0 {
		cfg.Min = 3
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &WipeGuard{cfg: cfg, logouts: map[string]time.Time{}, held: map[string]bool{}}, nil
}

// Allow records that the server logged account id out and says whether
// its wipe may go ahead now. It may not while the guard is paused, nor
// when this logout makes more than Share of the accounts (and at least
// Min) logged out within Window: then the guard pauses and logs the alarm.
// A held account is listed by Held until Confirm.
func (g *WipeGuard) Allow(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.cfg.Now()
	for acct, at := range g.logouts {
		if now.Sub(at) >= g.cfg.Window {
			delete(g.logouts, acct)
		}
	}
	g.logouts[id] = now
	if !g.paused {
		n, total := len(g.logouts), g.cfg.Accounts()
		if n < g.cfg.Min || float64(n) <= g.cfg.Share*float64(total) {
			return true
		}
		g.paused = true
		g.cfg.Logger.Error("mass logout: wipes paused until an operator confirms",
			slog.Int("logged_out", n), slog.Int("accounts", total), slog.Duration("window", g.cfg.Window))
	}
	g.held[id] = true
	return false
}

// Held returns the accounts whose wipe is held, sorted.
func (g *WipeGuard) Held() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.held))
}

// Paused reports whether wipes are held.
func (g *WipeGuard) Paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// Confirm is the operator's word: the pause ends, the logouts counted so
// far are forgotten (a new window starts) and the held accounts are
// returned, sorted, for their wipes to go ahead (ConfirmWipe).
func (g *WipeGuard) Confirm() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	held := slices.Sorted(maps.Keys(g.held))
	g.paused = false
	clear(g.held)
	clear(g.logouts)
	return held
}
