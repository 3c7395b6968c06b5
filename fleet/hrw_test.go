package fleet

import (
	"fmt"
	"slices"
	"testing"
)

func accounts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("acct-%d", i)
	}
	return out
}

func TestPreferredStability(t *testing.T) {
	accts := accounts(10000)
	tests := []struct {
		name         string
		before       []string
		after        []string
		wantFraction float64 // expected share of accounts that move
	}{
		{"join 4 to 5", []string{"a", "b", "c", "d"}, []string{"a", "b", "c", "d", "e"}, 1.0 / 5},
		{"join 1 to 2", []string{"a"}, []string{"a", "b"}, 1.0 / 2},
		{"leave 5 to 4", []string{"a", "b", "c", "d", "e"}, []string{"a", "b", "c", "e"}, 1.0 / 5},
		{"order does not matter", []string{"a", "b", "c"}, []string{"c", "a", "b"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moved := 0
			for _, a := range accts {
				from, to := Preferred(a, tt.before), Preferred(a, tt.after)
				if from == to {
					continue
				}
				moved++
				joined := !slices.Contains(tt.before, to)
				left := !slices.Contains(tt.after, from)
				if !joined && !left {
					t.Fatalf("%s moved from %s to %s, neither joined nor left", a, from, to)
				}
			}
			got := float64(moved) / float64(len(accts))
			if got < tt.wantFraction-0.03 || got > tt.wantFraction+0.03 {
				t.Fatalf("moved %.3f of the accounts, want about %.3f", got, tt.wantFraction)
			}
		})
	}
}

func TestPreferredBalance(t *testing.T) {
	members := []string{"host-1-100", "host-2-200", "host-3-300"}
	count := map[string]int{}
	for _, a := range accounts(9000) {
		count[Preferred(a, members)]++
	}
	for _, m := range members {
		if count[m] < 2700 || count[m] > 3300 {
			t.Fatalf("member %s prefers %d of 9000 accounts: %v", m, count[m], count)
		}
	}
	if Preferred("x", nil) != "" {
		t.Fatal("Preferred with no members")
	}
}

func TestDecide(t *testing.T) {
	members := []string{"a", "b"}
	accts := accounts(40)
	var prefA, prefB []string
	for _, x := range accts {
		if Preferred(x, members) == "a" {
			prefA = append(prefA, x)
		} else {
			prefB = append(prefB, x)
		}
	}
	allHeld := map[string]bool{}
	for _, x := range accts {
		allHeld[x] = true
	}
	tests := []struct {
		name         string
		in           PlanInput
		acquire      int
		handOver     int
		drop         []string
		acquireExact []string
	}{
		{"fresh instance acquires its preferred", PlanInput{Assignment: Assign("a", members, accts), MaxMoves: 3}, len(prefA), 0, nil, prefA},
		{"self missing from members still counts", PlanInput{Assignment: Assign("a", []string{"b"}, accts), MaxMoves: 3}, len(prefA), 0, nil, nil},
		{"holds all, stable: bounded hand-over", PlanInput{Assignment: Assign("a", members, accts), Held: allHeld, Stable: true, MaxMoves: 3}, 0, 3, nil, nil},
		{"holds all, unstable: no hand-over", PlanInput{Assignment: Assign("a", members, accts), Held: allHeld, MaxMoves: 3}, 0, 0, nil, nil},
		{"sticky accounts stay", PlanInput{Assignment: Assign("a", members, accts), Held: allHeld, Stable: true, MaxMoves: 100, Sticky: map[string]bool{prefB[0]: true}}, 0, len(prefB) - 1, nil, nil},
		{"orphans are tried", PlanInput{Assignment: Assign("a", members, accts), Held: map[string]bool{}, Orphans: []string{prefB[0], "unconfigured", prefA[0]}, MaxMoves: 3}, len(prefA) + 1, 0, nil, nil},
		{"removed accounts are dropped", PlanInput{Assignment: Assign("a", members, accts[:1]), Held: map[string]bool{accts[0]: true, "gone": true}, MaxMoves: 3}, 0, 0, []string{"gone"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(tt.in)
			if len(p.Acquire) != tt.acquire || len(p.HandOver) != tt.handOver || !slices.Equal(p.Drop, tt.drop) {
				t.Fatalf("plan = acquire %d, hand over %d, drop %v; want %d, %d, %v", len(p.Acquire), len(p.HandOver), p.Drop, tt.acquire, tt.handOver, tt.drop)
			}
			if tt.acquireExact != nil {
				want := slices.Sorted(slices.Values(tt.acquireExact))
				if !slices.Equal(p.Acquire, want) {
					t.Fatalf("acquire %v, want %v", p.Acquire, want)
				}
			}
			for _, x := range p.HandOver {
				if Preferred(x, members) == "a" {
					t.Fatalf("hands over %s which it prefers", x)
				}
			}
		})
	}
}

// TestAssign: an assignment agrees with Preferred, and each account has
// exactly one preferred member and, with two members or more, exactly one
// backup (the member that would be preferred without the first).
func TestAssign(t *testing.T) {
	members := []string{"m-1", "m-2", "m-3", "m-4"}
	accts := accounts(4000)
	mine, backup := map[string]int{}, map[string]int{}
	for _, m := range members {
		as := Assign(m, members, accts)
		if !slices.IsSorted(as.Mine()) || !slices.IsSorted(as.Backup()) {
			t.Fatalf("%s: Mine and Backup are not sorted", m)
		}
		for _, a := range as.Mine() {
			if p := Preferred(a, members); p != m {
				t.Fatalf("%s: Mine holds %s, preferred by %s", m, a, p)
			}
			if !as.Prefers(a) || as.Backs(a) {
				t.Fatalf("%s: Prefers(%s) = %v, Backs = %v", m, a, as.Prefers(a), as.Backs(a))
			}
			mine[a]++
		}
		for _, a := range as.Backup() {
			rest := slices.DeleteFunc(slices.Clone(members), func(x string) bool { return x == Preferred(a, members) })
			if p := Preferred(a, rest); p != m {
				t.Fatalf("%s: Backup holds %s, whose second is %s", m, a, p)
			}
			backup[a]++
		}
		if !as.Configured(accts[17]) || as.Configured("unconfigured") {
			t.Fatal("Configured is wrong")
		}
	}
	for _, a := range accts {
		if mine[a] != 1 || backup[a] != 1 {
			t.Fatalf("%s is preferred by %d members and backed up by %d, want 1 and 1", a, mine[a], backup[a])
		}
	}
	if as := Assign("solo", nil, accts); len(as.Mine()) != len(accts) || len(as.Backup()) != 0 {
		t.Fatalf("a lone instance prefers %d and backs up %d of %d", len(as.Mine()), len(as.Backup()), len(accts))
	}
}

// BenchmarkAssign: what the Coordinator pays when the members or the
// accounts change (never on a tick that changes neither).
func BenchmarkAssign(b *testing.B) {
	members := make([]string, 20)
	for i := range members {
		members[i] = fmt.Sprintf("instance-%02d", i)
	}
	accts := slices.Sorted(slices.Values(accounts(100_000)))
	b.ReportAllocs()
	for b.Loop() {
		Assign(members[3], members, accts)
	}
}
