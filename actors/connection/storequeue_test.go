package connection

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStoreWorkersBounded: more accounts than maxStoreWorkers queue store
// calls at once; at most maxStoreWorkers run at a time, every call runs,
// and each account's calls run one at a time in order.
func TestStoreWorkersBounded(t *testing.T) {
	const accounts, perAccount = 3 * maxStoreWorkers, 3
	release := make(chan struct{})
	var running, peak atomic.Int32
	var done sync.WaitGroup
	queues := make([]*storeQueue, accounts)
	order := make([][]int, accounts)
	for i := range queues {
		queues[i] = &storeQueue{calls: &StoreCalls{}}
		for j := range perAccount {
			done.Add(1)
			queues[i].run(func() {
				defer done.Done()
				n := running.Add(1)
				defer running.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				<-release
				order[i] = append(order[i], j) // one call of queue i at a time
			})
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for running.Load() < maxStoreWorkers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := running.Load(); n != maxStoreWorkers {
		t.Errorf("%d store calls running while %d accounts wait, want %d", n, accounts, maxStoreWorkers)
	}
	close(release)
	done.Wait()
	if p := peak.Load(); p > maxStoreWorkers {
		t.Errorf("%d store calls ran at once, at most %d allowed", p, maxStoreWorkers)
	}
	for i, o := range order {
		if !slices.Equal(o, []int{0, 1, 2}) {
			t.Fatalf("account %d: calls ran in the order %v", i, o)
		}
	}
	for i, q := range queues {
		if err := q.calls.Wait(t.Context()); err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
	}
}
