package connection

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/wire/node"
)

// memStore is a minimal in-memory store.Store for benchmarks.
type memStore struct {
	mu   sync.Mutex
	devs map[string]*store.Device
}

func (m *memStore) Load(_ context.Context, id string) (*store.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.devs[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return d.Clone(), nil
}

func (m *memStore) Save(_ context.Context, d *store.Device) error {
	m.mu.Lock()
	m.devs[d.ID] = d.Clone()
	m.mu.Unlock()
	return nil
}

func (m *memStore) Delete(_ context.Context, id string) error {
	m.mu.Lock()
	delete(m.devs, id)
	m.mu.Unlock()
	return nil
}

// The benchmarks' server always holds enough prekeys, so the actor only
// counts them: an account has none stored and uploads none.
func (m *memStore) AddPreKeys(context.Context, string, []store.PreKey) error { return nil }
func (m *memStore) PreKeysToUpload(context.Context, string, int) ([]store.PreKey, error) {
	return nil, nil
}
func (m *memStore) MarkPreKeysUploaded(context.Context, string, uint32) error { return nil }
func (m *memStore) PreKey(context.Context, string, uint32) (store.PreKey, error) {
	return store.PreKey{}, store.ErrNotFound
}
func (m *memStore) RemovePreKey(context.Context, string, uint32) error { return nil }
func (m *memStore) PreKeyCounts(context.Context, string) (store.PreKeyCounts, error) {
	return store.PreKeyCounts{Stored: 100, Uploaded: 100, MaxID: 100}, nil
}

// The benchmarks' accounts are never logged out: there is no archive.
func (m *memStore) Archive(context.Context, string, string) (store.ArchiveEntry, error) {
	return store.ArchiveEntry{}, store.ErrNotFound
}
func (m *memStore) RestoreArchived(context.Context, string, string) (store.ArchiveEntry, error) {
	return store.ArchiveEntry{}, store.ErrNotFound
}

// idleSession is a logged-in session that stays quiet: it delivers
// <success> once, answers the IQs that follow a login (the prekey count
// with plenty, <active/> with a result), then blocks until closed.
type idleSession struct {
	success []byte
	sent    atomic.Bool
	answers chan []byte
	closed  chan struct{}
	once    sync.Once
}

func newIdleSession(success []byte) *idleSession {
	return &idleSession{success: success, answers: make(chan []byte, 4), closed: make(chan struct{})}
}

func (s *idleSession) Watch(onFrame func([]byte), onEnd func(error)) {
	watchReceive(s.receive, onFrame, onEnd)
}

func (s *idleSession) receive() ([]byte, error) {
	if !s.sent.Swap(true) {
		return s.success, nil
	}
	select {
	case b := <-s.answers:
		return b, nil
	case <-s.closed:
		return nil, errFakeClosed
	}
}

func (s *idleSession) Send(b []byte) error {
	n, err := node.UnmarshalPayload(b)
	if err != nil || n.Tag != "iq" {
		return err
	}
	id, _ := n.Attr("id")
	res := node.New("iq", node.StrAttr("id", id), node.StrAttr("type", "result"))
	if xmlns, _ := n.Attr("xmlns"); xmlns == "encrypt" {
		res = res.WithChildren(node.New("count", node.IntAttr("value", 100)))
	}
	out, err := node.MarshalPayload(res)
	if err != nil {
		return err
	}
	select {
	case s.answers <- out:
	default:
	}
	return nil
}

func (s *idleSession) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// BenchmarkConnectedAccounts measures what one connected account costs the
// actor layer (the socket and Noise transport are wire's): heap and
// goroutines per account, with idle sessions. Run with a fixed count:
//
//	go test -run '^$' -bench ConnectedAccounts -benchtime 2000x ./actors/connection/
func BenchmarkConnectedAccounts(b *testing.B) {
	b.ReportAllocs()
	success, err := node.MarshalPayload(node.New("success", node.StrAttr("t", "1")))
	if err != nil {
		b.Fatal(err)
	}
	st := &memStore{devs: map[string]*store.Device{}}
	for i := range b.N {
		id := fmt.Sprintf("a%d", i)
		_ = st.Save(context.Background(), storetest.PairedDevice(b, id, fmt.Sprint(15550000000+i), "", 1))
	}
	var connected atomic.Int64
	all := make(chan struct{})
	pub := events.PublisherFunc(func(e events.Event) {
		if e.Kind == events.KindConnected && connected.Add(1) == int64(b.N) {
			close(all)
		}
	})
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger() }))
	defer sys.Shutdown()
	dialer := func(context.Context, DialRequest) (Session, error) {
		return newIdleSession(success), nil
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	b.ResetTimer()
	pids := make([]*actor.PID, b.N)
	for i := range b.N {
		id := fmt.Sprintf("a%d", i)
		pids[i], err = sys.Root.SpawnNamed(Props(Deps{
			AccountID: id, Store: st, Events: pub, Logger: quietLogger(), Dialer: dialer,
		}), id)
		if err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d connected", connected.Load(), b.N)
	}
	b.StopTimer()

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(b.N), "heap-B/account")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/account")
	for _, pid := range pids {
		_ = sys.Root.StopFuture(pid).Wait()
	}
}

// BenchmarkStanzaIn measures one inbound stanza through the actor, its
// decoding included: a ping answer, the most common stanza of an idle
// connection.
func BenchmarkStanzaIn(b *testing.B) {
	b.ReportAllocs()
	fd := newFakeDialer()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quietLogger() }))
	defer sys.Shutdown()
	st := &memStore{devs: map[string]*store.Device{}}
	_ = st.Save(context.Background(), storetest.PairedDevice(b, "s", "15550000001", "", 1))
	pid, err := sys.Root.SpawnNamed(Props(Deps{AccountID: "s", Store: st, Logger: quietLogger(), Dialer: fd.dial}), "s")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sys.Root.StopFuture(pid).Wait() }()
	<-fd.reqs
	s := newFakeSession()
	fd.results <- dialResult{sess: s}
	snap, err := sys.Root.RequestFuture(pid, &inspect{}, waitTimeout).Result()
	if err != nil {
		b.Fatal(err)
	}
	gen := snap.(*snapshot).Gen
	frame, err := node.MarshalPayload(node.New("iq", node.StrAttr("id", "x"), node.StrAttr("type", "result")))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		sys.Root.Send(pid, &frameIn{gen: gen, data: frame})
	}
	if _, err := sys.Root.RequestFuture(pid, &inspect{}, waitTimeout).Result(); err != nil {
		b.Fatal(err)
	}
}
