package webversion

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/payload"
)

// wait bounds every wait for something the tracker does; it is generous
// because a loaded machine may be slow, and only a bug reaches it.
const wait = 10 * time.Second

func rev(n uint32) payload.Version { return payload.Version{Primary: 2, Secondary: 3000, Tertiary: n} }

// fakeSettings is an in-memory Settings.
type fakeSettings struct {
	mu      sync.Mutex
	values  map[string]string
	loadErr error
	loads   int
	saved   chan string // every value saved
}

func newFakeSettings() *fakeSettings {
	return &fakeSettings{values: map[string]string{}, saved: make(chan string, 100)}
}

func (f *fakeSettings) LoadSetting(_ context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.loadErr != nil {
		return "", f.loadErr
	}
	v, ok := f.values[name]
	if !ok {
		return "", fmt.Errorf("setting %s: %w", name, store.ErrNotFound)
	}
	return v, nil
}

func (f *fakeSettings) SaveSetting(_ context.Context, name, value string) error {
	f.mu.Lock()
	f.values[name] = value
	f.mu.Unlock()
	f.saved <- value
	return nil
}

func (f *fakeSettings) set(value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values[SettingName] = value
}

func (f *fakeSettings) get() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.values[SettingName]
}

// swServer publishes a revision; every request is counted and reported on
// hits once answered. With gate set, requests after the first wait for it.
type swServer struct {
	url      string
	revision atomic.Uint32
	status   atomic.Int32 // 0: 200
	requests atomic.Int32
	hits     chan int32 // request number, once answered
	arrived  chan int32 // request number, on arrival
	gate     chan struct{}
}

func newSWServer(t *testing.T, revision uint32, gated bool) *swServer {
	t.Helper()
	s := &swServer{hits: make(chan int32, 1000), arrived: make(chan int32, 1000)}
	s.revision.Store(revision)
	if gated {
		s.gate = make(chan struct{})
	}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		s.arrived <- n
		if s.gate != nil && n > 1 {
			select {
			case <-s.gate:
			case <-r.Context().Done():
				return
			}
		}
		if code := s.status.Load(); code != 0 {
			w.WriteHeader(int(code))
		} else {
			fmt.Fprintf(w, `self.__swData=JSON.parse("{\"client_revision\":%d}");`, s.revision.Load())
		}
		s.hits <- n
	})
	s.url = srv.URL + "/sw.js"
	return s
}

// waitHit waits for the answer to request n.
func (s *swServer) waitHit(t *testing.T, n int32) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-s.hits:
			if got >= n {
				return
			}
		case <-deadline:
			t.Fatalf("request %d was not answered", n)
		}
	}
}

// fakeClock hands out timers that fire only when the test fires them.
type fakeClock struct {
	reqs  chan fakeTimer
	stash []fakeTimer
}

type fakeTimer struct {
	d time.Duration
	c chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{reqs: make(chan fakeTimer, 1000)} }

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.reqs <- fakeTimer{d, c}
	return c
}

// next returns the first timer of duration d the tracker asked for.
func (f *fakeClock) next(t *testing.T, d time.Duration) chan time.Time {
	t.Helper()
	for i, ft := range f.stash {
		if ft.d == d {
			f.stash = append(f.stash[:i], f.stash[i+1:]...)
			return ft.c
		}
	}
	deadline := time.After(wait)
	for {
		select {
		case ft := <-f.reqs:
			if ft.d == d {
				return ft.c
			}
			f.stash = append(f.stash, ft)
		case <-deadline:
			t.Fatalf("the tracker set no %s timer", d)
		}
	}
}

// harness is a tracker with its fakes and the callbacks it made.
type harness struct {
	tr          *Tracker
	settings    *fakeSettings
	clock       *fakeClock
	updated     chan struct{}
	unavailable chan error
}

const retryEvery = 7 * time.Minute // distinct from renotifyGap

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{
		settings:    newFakeSettings(),
		clock:       newFakeClock(),
		updated:     make(chan struct{}, 1000),
		unavailable: make(chan error, 1000),
	}
	if opts.Settings == nil {
		opts.Settings = h.settings
	}
	opts.RetryEvery = retryEvery
	opts.After = h.clock.After
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.OnUpdated = func() { h.updated <- struct{}{} }
	opts.OnUnavailable = func(err error) { h.unavailable <- err }
	tr, err := NewTracker(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.tr = tr
	t.Cleanup(tr.Close)
	return h
}

func (h *harness) waitUpdated(t *testing.T) {
	t.Helper()
	select {
	case <-h.updated:
	case err := <-h.unavailable:
		t.Fatalf("OnUnavailable(%v); want OnUpdated", err)
	case <-time.After(wait):
		t.Fatal("no OnUpdated")
	}
}

func (h *harness) waitUnavailable(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.unavailable:
		if !errors.Is(err, ErrNoNewerVersion) {
			t.Errorf("OnUnavailable(%v) does not wrap ErrNoNewerVersion", err)
		}
		return err
	case <-h.updated:
		t.Fatal("OnUpdated; want OnUnavailable")
	case <-time.After(wait):
		t.Fatal("no OnUnavailable")
	}
	return nil
}

// closeAndCount stops the tracker and returns how many callbacks it made
// since they were last drained.
func (h *harness) closeAndCount() (updated, unavailable int) {
	h.tr.Close()
	return len(h.updated), len(h.unavailable)
}

func TestStartTakesANewerPublishedVersionAndStoresIt(t *testing.T) {
	sw := newSWServer(t, 200, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	if got := h.tr.Current(); got != rev(100) {
		t.Fatalf("Current before Start = %v", got)
	}
	h.tr.Start(context.Background())
	select {
	case v := <-h.settings.saved:
		if v != "2.3000.200" {
			t.Fatalf("saved %q", v)
		}
	case <-time.After(wait):
		t.Fatal("the fetched version was not stored")
	}
	if got := h.tr.Current(); got != rev(200) {
		t.Fatalf("Current = %v, want 2.3000.200", got)
	}
	if up, un := h.closeAndCount(); up != 0 || un != 0 {
		t.Fatalf("callbacks without a refusal: %d updated, %d unavailable", up, un)
	}
}

func TestStartTakesTheStoredVersionOnlyWhenNewer(t *testing.T) {
	tests := []struct {
		name   string
		stored string
		want   payload.Version
	}{
		{"newer", "2.3000.300", rev(300)},
		{"older", "2.3000.50", rev(100)},
		{"garbage", "not a version", rev(100)},
		{"none", "", rev(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{Initial: rev(100)}) // fetching off
			if tt.stored != "" {
				h.settings.set(tt.stored)
			}
			h.tr.Start(context.Background())
			if got := h.tr.Current(); got != tt.want { // Start read it synchronously
				t.Fatalf("Current = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDefaultInitialIsTheBuiltInVersion(t *testing.T) {
	tr, err := NewTracker(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Current() != payload.DefaultVersion() {
		t.Fatalf("Current = %v", tr.Current())
	}
	if _, err := NewTracker(Options{URL: "ws://web.whatsapp.com/sw.js"}); !errors.Is(err, ErrBadURL) {
		t.Fatalf("NewTracker with a ws URL: %v", err)
	}
}

// startAt starts h and waits until its first fetch is answered.
func startAt(t *testing.T, h *harness, sw *swServer) {
	t.Helper()
	h.tr.Start(context.Background())
	sw.waitHit(t, 1)
}

func TestRefusedFindsANewerPublishedVersion(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	sw.revision.Store(200)
	h.tr.Refused(rev(100))
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(200) {
		t.Fatalf("Current = %v", got)
	}
	if got := h.settings.get(); got != "2.3000.200" {
		t.Fatalf("stored %q", got)
	}
}

func TestRefusedWithNothingNewerRetriesUntilFound(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	h.tr.Refused(rev(100))
	err := h.waitUnavailable(t)
	if !strings.Contains(err.Error(), "2.3000.100, is still refused") {
		t.Errorf("error %q does not say the published version is still refused", err)
	}

	// Still the same on the first retry: no new callback (the accounts
	// know), a next retry is set.
	h.clock.next(t, retryEvery) <- time.Now()
	sw.waitHit(t, 3)
	sw.revision.Store(300)
	h.clock.next(t, retryEvery) <- time.Now()
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(300) {
		t.Fatalf("Current = %v", got)
	}
	if up, un := h.closeAndCount(); up != 0 || un != 0 {
		t.Fatalf("extra callbacks: %d updated, %d unavailable", up, un)
	}
	if got := h.settings.get(); got != "2.3000.300" {
		t.Fatalf("stored %q", got)
	}
}

func TestRefusedWhenTheFetchFails(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	sw.status.Store(http.StatusServiceUnavailable)
	h.tr.Refused(rev(100))
	err := h.waitUnavailable(t)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable {
		t.Errorf("error %v does not carry the 503", err)
	}
	if !strings.Contains(err.Error(), "2.3000.100 is refused") {
		t.Errorf("error %q does not name the refused version", err)
	}
	sw.status.Store(0)
	sw.revision.Store(200)
	h.clock.next(t, retryEvery) <- time.Now()
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(200) {
		t.Fatalf("Current = %v", got)
	}
}

func TestRefusedTakesAVersionAnotherInstanceStored(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	h.settings.set("2.3000.250") // another instance found it
	h.tr.Refused(rev(100))
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(250) {
		t.Fatalf("Current = %v", got)
	}
	if n := sw.requests.Load(); n != 1 {
		t.Fatalf("%d fetches; the stored version should have spared the second", n)
	}
}

func TestRefusedAnOlderVersionAnswersAtOnce(t *testing.T) {
	h := newHarness(t, Options{Initial: rev(200)})
	h.tr.Start(context.Background())
	h.tr.Refused(rev(100)) // an account dialed before 200 was current
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(200) {
		t.Fatalf("Current = %v", got)
	}
}

func TestFetchingOff(t *testing.T) {
	h := newHarness(t, Options{Initial: rev(100)})
	h.tr.Start(context.Background())
	h.tr.Refused(rev(100))
	err := h.waitUnavailable(t)
	if !strings.Contains(err.Error(), "fetching is off") {
		t.Errorf("error %q does not say fetching is off", err)
	}
	// The retries still look at the settings.
	h.settings.set("2.3000.400")
	h.clock.next(t, retryEvery) <- time.Now()
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(400) {
		t.Fatalf("Current = %v", got)
	}
}

func TestUnreadableSettingsFallBackToTheFetch(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	h.settings.loadErr = errors.New("redis: connection refused")
	startAt(t, h, sw)
	sw.revision.Store(200)
	h.tr.Refused(rev(100))
	h.waitUpdated(t)
	if got := h.tr.Current(); got != rev(200) {
		t.Fatalf("Current = %v", got)
	}
}

// TestSingleFlight: 100 accounts refused at once cost one search and one
// callback.
func TestSingleFlight(t *testing.T) {
	for _, found := range []bool{true, false} {
		t.Run(fmt.Sprintf("found=%v", found), func(t *testing.T) {
			sw := newSWServer(t, 100, true)
			h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
			startAt(t, h, sw)
			if found {
				sw.revision.Store(200)
			}
			var wg sync.WaitGroup
			for range 100 {
				wg.Go(func() { h.tr.Refused(rev(100)) })
			}
			wg.Wait() // Refused never waits for the search
			select {
			case <-sw.arrived: // the start fetch
			case <-time.After(wait):
				t.Fatal("no start fetch")
			}
			select {
			case <-sw.arrived: // the search, held at the gate
			case <-time.After(wait):
				t.Fatal("no search")
			}
			for range 100 {
				wg.Go(func() { h.tr.Refused(rev(100)) }) // while it runs
			}
			wg.Wait()
			close(sw.gate)
			if found {
				h.waitUpdated(t)
			} else {
				h.waitUnavailable(t)
			}
			up, un := h.closeAndCount()
			if up != 0 || un != 0 {
				t.Errorf("extra callbacks: %d updated, %d unavailable", up, un)
			}
			if n := sw.requests.Load(); n != 2 {
				t.Errorf("%d fetches, want 2 (start and one search)", n)
			}
		})
	}
}

// TestLaterRefusalsAreToldAfterAPause: accounts refused after a failed
// search hear OnUnavailable again, at most once per renotifyGap, without a
// new fetch.
func TestLaterRefusalsAreToldAfterAPause(t *testing.T) {
	sw := newSWServer(t, 100, false)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	h.tr.Refused(rev(100))
	first := h.waitUnavailable(t)
	quiet := h.clock.next(t, renotifyGap)
	for range 10 {
		h.tr.Refused(rev(100))
	}
	quiet <- time.Now()
	if again := h.waitUnavailable(t); again.Error() != first.Error() {
		t.Errorf("second error %q differs from %q", again, first)
	}
	// The next quiet period passes without refusals: nothing more.
	h.clock.next(t, renotifyGap) <- time.Now()
	if up, un := h.closeAndCount(); up != 0 || un != 0 {
		t.Errorf("extra callbacks: %d updated, %d unavailable", up, un)
	}
	if n := sw.requests.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

// TestCloseCutsAFetchShort: a server that never answers does not hold up
// Close (and goleak checks nothing is left).
func TestCloseCutsAFetchShort(t *testing.T) {
	sw := newSWServer(t, 100, true)
	h := newHarness(t, Options{Initial: rev(100), URL: sw.url})
	startAt(t, h, sw)
	<-sw.arrived // the start fetch
	h.tr.Refused(rev(100))
	<-sw.arrived // the search waits at the gate
	done := make(chan struct{})
	go func() {
		h.tr.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Close did not return")
	}
	h.tr.Close() // idempotent
	h.tr.Refused(rev(100))
	if got := h.tr.Current(); got != rev(100) {
		t.Fatalf("Current = %v", got)
	}
}
