package fleet

import "slices"

// PlanInput is what one instance knows when it decides a tick.
type PlanInput struct {
	Self     string
	Members  []string        // live members (Self included)
	Accounts []string        // configured accounts
	Held     map[string]bool // accounts whose lease Self holds
	// Stable: the member set has not changed for the settle period;
	// accounts move only then (hysteresis against flapping members).
	Stable bool
	// Sticky accounts are never handed over (they came back as orphans
	// after a hand-over: their preferred member does not take them).
	Sticky map[string]bool
	// Orphans are unheld accounts nobody has held for long enough: Self
	// tries them whatever their preference.
	Orphans  []string
	MaxMoves int
}

// Plan is what to do this tick.
type Plan struct {
	// Acquire: accounts to try to take (preferred here, or orphans).
	Acquire []string
	// HandOver: held accounts another live member now prefers; at most
	// MaxMoves, only when Stable. Stop each, then release it.
	HandOver []string
	// Drop: held accounts no longer configured. Stop and release.
	Drop []string
}

// Decide computes the plan of one tick. It is a pure function; the
// results are sorted.
func Decide(in PlanInput) Plan {
	var p Plan
	members := in.Members
	if !slices.Contains(members, in.Self) {
		members = append(slices.Clone(members), in.Self)
	}
	configured := make(map[string]bool, len(in.Accounts))
	for _, a := range in.Accounts {
		configured[a] = true
		pref := Preferred(a, members)
		switch {
		case !in.Held[a] && pref == in.Self:
			p.Acquire = append(p.Acquire, a)
		case in.Held[a] && pref != in.Self && in.Stable && !in.Sticky[a] && len(p.HandOver) < in.MaxMoves:
			p.HandOver = append(p.HandOver, a)
		}
	}
	for _, a := range in.Orphans {
		if configured[a] && !in.Held[a] && !slices.Contains(p.Acquire, a) {
			p.Acquire = append(p.Acquire, a)
		}
	}
	for a, h := range in.Held {
		if h && !configured[a] {
			p.Drop = append(p.Drop, a)
		}
	}
	slices.Sort(p.Acquire)
	slices.Sort(p.HandOver)
	slices.Sort(p.Drop)
	return p
}
