package connection

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/events/journal"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/store/redis/redistest"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
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

// The message benchmarks of BENCHMARKS.md's "Messages: cost per message
// and messages per second (issue 15)": the whole receive path (parse the
// stanza, read the session, decrypt, unpad, parse the Message, the event,
// write the state with the event's outbox record) and the whole send path
// of a steady-state 1:1 text (read the session, encrypt for the one
// device, write the session, build and encode the <message>), per
// account one message at a time as its store queue runs them, with
// several accounts at once as the store workers run them. In memory (a
// map per account: the CPU alone), on one bbolt file or on the shared
// Redis (each with the journal over its outbox). Each reports msgs/s
// (wall clock) and cpu-us/msg (the process's user+system time per
// message, for a loaded machine; Redis's own CPU is not counted).
//
//	go test -run '^$' -bench 'ReceivePath|SendPath' -benchtime 3200x ./actors/connection/

// benchStore is a store of the message benchmarks.
type benchStore interface {
	store.Backend
	store.Outbox
}

// benchAccount is one account of the message benchmarks: our paired
// device and a contact's phone with a session both ways.
type benchAccount struct {
	dev  *store.Device
	peer *peer
	sig  store.SignalStore
}

// benchAccounts stores n accounts in st, each with a session started by
// its contact's pkmsg and answered once, so that both sides send msg from
// then on; with memory, each account's Signal state is then a map.
func benchAccounts(b *testing.B, st benchStore, n int, memory bool) []*benchAccount {
	b.Helper()
	ctx := b.Context()
	accts := make([]*benchAccount, n)
	for i := range n {
		dev := storetest.PairedDevice(b, fmt.Sprintf("acct%d", i), fmt.Sprintf("1555000%04d", i), "", 3)
		identity := &crypto.KeyPair{Pub: dev.IdentityKey.Pub, Priv: dev.IdentityKey.Priv}
		var err error
		if dev.SignedPreKey.Signature, err = crypto.Sign(identity, signal.SerializeKey(dev.SignedPreKey.Pub)); err != nil {
			b.Fatal(err)
		}
		if err := st.Save(ctx, dev); err != nil {
			b.Fatal(err)
		}
		if _, err := addPreKeys(ctx, st, dev.ID, 0, 1); err != nil {
			b.Fatal(err)
		}
		pk, err := st.PreKey(ctx, dev.ID, 1)
		if err != nil {
			b.Fatal(err)
		}
		p := newPeer(b, jid.New(fmt.Sprintf("1555999%04d", i), jid.DefaultUserServer))
		p.start(&signal.Bundle{
			RegistrationID: dev.RegistrationID, IdentityKey: dev.IdentityKey.Pub,
			SignedPreKeyID: dev.SignedPreKey.ID, SignedPreKey: dev.SignedPreKey.Pub,
			SignedPreKeySignature: dev.SignedPreKey.Signature, PreKeyID: 1, PreKey: &pk.Pub,
		})
		r := newReceiver(&receiver{st: st, sig: st, events: events.PublisherFunc(func(events.Event) {}), dev: dev.Clone(), log: quietLogger(), now: time.Now})
		in, err := parseInbound(direct("3EB0FIRST", p.jid, p.encrypt(text("first"))), dev)
		if err != nil {
			b.Fatal(err)
		}
		if res := r.receive(ctx, in, 0); res.err != nil {
			b.Fatal(res.err)
		}
		// Our answer, so that the contact sends msg from then on.
		addr, _ := senderAddress(p.jid)
		rec, err := st.Session(ctx, dev.ID, addr)
		if err != nil {
			b.Fatal(err)
		}
		var ours signal.Session
		if err := ours.UnmarshalBinary(rec); err != nil {
			b.Fatal(err)
		}
		reply, err := ours.Encrypt(signal.Pad([]byte("reply")))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.session.Decrypt(reply.Body); err != nil {
			b.Fatal(err)
		}
		a := &benchAccount{dev: dev, peer: p, sig: st}
		if memory {
			a.sig = &memSignal{sessions: map[string][]byte{addr: rec}}
		}
		accts[i] = a
	}
	return accts
}

// benchMessages runs each account's share of b.N messages on a goroutine
// of its own, one message at a time (run(a, i) handles message i of
// account a), and reports the rates.
func benchMessages(b *testing.B, accts []*benchAccount, run func(a, i int)) {
	per := (b.N + len(accts) - 1) / len(accts)
	cpu0 := cpuTime(b)
	start := time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for a := range accts {
		wg.Go(func() {
			for i := range per {
				run(a, i)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	n := float64(per * len(accts))
	b.ReportMetric(n/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/n, "cpu-us/msg")
}

// messageBenchCases are the stores and the numbers of accounts at once.
var messageBenchCases = []struct {
	kind     string // memory, bbolt, redis
	accounts int
}{{"memory", 1}, {"memory", 64}, {"bbolt", 1}, {"bbolt", 64}, {"redis", 1}, {"redis", 64}}

// openBenchStore opens a fresh store of kind: a bbolt file (also under
// the memory benchmarks, which keep only the setup there), or a key
// prefix on the shared Redis, dropped at the end.
func openBenchStore(b *testing.B, kind string) benchStore {
	b.Helper()
	if kind == "redis" {
		c, prefix := redistest.Shared(b)
		st, err := wredis.New(c, wredis.Options{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "wafleet.db"), store.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// BenchmarkReceivePath: steady-state 1:1 messages (msg, in order, a
// 40-byte text) through the receive path, encrypted by the contacts
// before the timer starts.
func BenchmarkReceivePath(b *testing.B) {
	for _, bc := range messageBenchCases {
		b.Run(fmt.Sprintf("%s/accounts=%d", bc.kind, bc.accounts), func(b *testing.B) {
			b.ReportAllocs()
			st := openBenchStore(b, bc.kind)
			memory := bc.kind == "memory"
			accts := benchAccounts(b, st, bc.accounts, memory)
			var j *journal.Journal
			if !memory {
				var err error
				if j, err = journal.New(st, journal.Options{Instance: "bench", Logger: quietLogger()}); err != nil {
					b.Fatal(err)
				}
				defer j.Close(context.Background())
			}
			per := (b.N + len(accts) - 1) / len(accts)
			stanzas := make([][]*inbound, len(accts))
			receivers := make([]*receiver, len(accts))
			for a, acct := range accts {
				for i := range per {
					n := direct(fmt.Sprintf("3EB0%d.%d", a, i), acct.peer.jid, acct.peer.encrypt(text("a message of some forty bytes of text")))
					in, err := parseInbound(n, acct.dev)
					if err != nil {
						b.Fatal(err)
					}
					stanzas[a] = append(stanzas[a], in)
				}
				r := &receiver{st: st, sig: acct.sig, events: events.PublisherFunc(func(events.Event) {}),
					dev: acct.dev.Clone(), log: quietLogger(), now: time.Now}
				if j != nil { // (a nil *Journal in the interface would not be nil)
					r.journal = j
				}
				receivers[a] = newReceiver(r)
			}
			ctx := context.Background()
			benchMessages(b, accts, func(a, i int) {
				if res := receivers[a].receive(ctx, stanzas[a][i], 0); res.err != nil {
					b.Error(res.err)
				}
			})
		})
	}
}

// BenchmarkSendPath: steady-state 1:1 texts to a contact's one device
// (msg) through the send path's encryption and state write, and the
// <message> built and encoded; the device list and the network are not
// included.
func BenchmarkSendPath(b *testing.B) {
	for _, bc := range messageBenchCases {
		b.Run(fmt.Sprintf("%s/accounts=%d", bc.kind, bc.accounts), func(b *testing.B) {
			b.ReportAllocs()
			st := openBenchStore(b, bc.kind)
			accts := benchAccounts(b, st, bc.accounts, bc.kind == "memory")
			runs := make([]*sendRun, len(accts))
			for a, acct := range accts {
				own, err := jid.Parse(acct.dev.JID)
				if err != nil {
					b.Fatal(err)
				}
				runs[a] = &sendRun{out: &outgoing{to: acct.peer.jid, text: "a message of some forty bytes of text"},
					own: own, local: localIdentity(acct.dev), st: acct.sig, account: acct.dev.ID, log: quietLogger()}
			}
			ctx := context.Background()
			benchMessages(b, accts, func(a, i int) {
				r := runs[a]
				out := *r.out
				out.id = fmt.Sprintf("3EB0%d.%d", a, i)
				parts, err := r.encrypt(ctx, []jid.JID{out.to}, nil)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := node.MarshalPayload(e2e.Message(out.id, out.to, parts, nil)); err != nil {
					b.Error(err)
				}
			})
		})
	}
}
