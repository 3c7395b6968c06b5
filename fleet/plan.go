package fleet

import (
	"slices"
	"sort"
)

// Assignment is where rendezvous hashing puts the configured accounts, as
// seen from one instance: the accounts it is preferred for, and those for
// which it ranks second (their backup: it watches whether anyone holds
// them). Computing it costs one score per account and member, so the
// Coordinator computes it when the members or the accounts change, not on
// every tick; a tick then costs in proportion to this instance's share.
type Assignment struct {
	self     string
	accounts []string // configured, sorted
	mine     []string // sorted
	mineSet  map[string]struct{}
	backup   []string // sorted
}

// Assign scores every account against members (self counts as one even
// when missing). accounts should be sorted (it is sorted into a copy
// otherwise); it must not change afterwards.
func Assign(self string, members, accounts []string) *Assignment {
	if !slices.Contains(members, self) {
		members = append(slices.Clone(members), self)
	}
	if !slices.IsSorted(accounts) {
		accounts = slices.Sorted(slices.Values(accounts))
	}
	hashes := make([]uint64, len(members))
	for i, m := range members {
		hashes[i] = memberHash(m)
	}
	a := &Assignment{self: self, accounts: accounts, mineSet: map[string]struct{}{}}
	for _, acct := range accounts {
		first, second := -1, -1
		var s1, s2 uint64
		for i, m := range members {
			s := scoreFrom(hashes[i], acct)
			switch {
			case first < 0 || beats(s, m, s1, members[first]):
				second, s2 = first, s1
				first, s1 = i, s
			case second < 0 || beats(s, m, s2, members[second]):
				second, s2 = i, s
			}
		}
		switch {
		case members[first] == self:
			a.mine = append(a.mine, acct)
			a.mineSet[acct] = struct{}{}
		case second >= 0 && members[second] == self:
			a.backup = append(a.backup, acct)
		}
	}
	return a
}

// Mine returns the accounts this instance is preferred for, sorted. The
// slice is shared: do not change it.
func (a *Assignment) Mine() []string { return a.mine }

// Backup returns the accounts for which this instance ranks second,
// sorted: those whose holders it watches for orphans. Shared, like Mine.
func (a *Assignment) Backup() []string { return a.backup }

// Configured reports whether acct is one of the accounts.
func (a *Assignment) Configured(acct string) bool {
	i := sort.SearchStrings(a.accounts, acct)
	return i < len(a.accounts) && a.accounts[i] == acct
}

// Prefers reports whether this instance is acct's preferred member.
func (a *Assignment) Prefers(acct string) bool {
	_, ok := a.mineSet[acct]
	return ok
}

// Backs reports whether this instance ranks second for acct.
func (a *Assignment) Backs(acct string) bool {
	_, ok := slices.BinarySearch(a.backup, acct)
	return ok
}

// PlanInput is what one instance knows when it decides a tick.
type PlanInput struct {
	// Assignment of the configured accounts to the live members.
	Assignment *Assignment
	Held       map[string]bool // accounts whose lease Self holds
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
	// MaxMoves (the first in sort order), only when Stable. Stop each,
	// then release it.
	HandOver []string
	// Drop: held accounts no longer configured. Stop and release.
	Drop []string
}

// Decide computes the plan of one tick. It is a pure function; the
// results are sorted. It costs in proportion to the preferred and held
// accounts, not to all the configured ones.
func Decide(in PlanInput) Plan {
	var p Plan
	as := in.Assignment
	for _, a := range as.mine {
		if !in.Held[a] {
			p.Acquire = append(p.Acquire, a)
		}
	}
	var moves []string
	for a, h := range in.Held {
		switch {
		case !h || as.Prefers(a):
		case !as.Configured(a):
			p.Drop = append(p.Drop, a)
		case in.Stable && !in.Sticky[a]:
			moves = append(moves, a)
		}
	}
	if len(moves) > 0 && in.MaxMoves > 0 {
		slices.Sort(moves)
		p.HandOver = moves[:min(len(moves), in.MaxMoves)]
	}
	added := false
	for _, a := range in.Orphans {
		if as.Configured(a) && !in.Held[a] && !as.Prefers(a) {
			p.Acquire = append(p.Acquire, a)
			added = true
		}
	}
	if added {
		slices.Sort(p.Acquire)
		p.Acquire = slices.Compact(p.Acquire)
	}
	slices.Sort(p.Drop)
	return p
}
