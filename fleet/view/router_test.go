package view

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/api"
	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/wire/jid"
)

// controller is an instance's local api.Controller: it records the
// actions it ran and answers what answer says.
type controller struct {
	mu     sync.Mutex
	ran    []string
	answer func(action, id string) error
}

func (c *controller) do(action, id string) error {
	c.mu.Lock()
	c.ran = append(c.ran, action+" "+id)
	answer := c.answer
	c.mu.Unlock()
	if answer == nil {
		return nil
	}
	return answer(action, id)
}

func (c *controller) setAnswer(f func(action, id string) error) {
	c.mu.Lock()
	c.answer = f
	c.mu.Unlock()
}

func (c *controller) actions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ran...)
}

func (c *controller) Pair(_ context.Context, id string) error    { return c.do("pair", id) }
func (c *controller) Restart(_ context.Context, id string) error { return c.do("restart", id) }
func (c *controller) Logout(_ context.Context, id string) error  { return c.do("logout", id) }

// testMaxText is the routers' RouterConfig.MaxText.
const testMaxText = 1 << 10

type node struct {
	r     *Router
	ctl   *controller
	held  *holdings
	qr    map[string]string
	link  atomic.Pointer[api.LinkCode] // what PairByPhone answers here
	phone chan string                  // the numbers PairByPhone was called with here
	sends chan api.OutgoingText        // the texts Send was asked to send here
	// sent is what Send answers here (nil: an ID made of the text).
	sent  atomic.Pointer[func(api.OutgoingText) (api.Sent, error)]
	rec   *recorder
	cname string
}

// startRouter starts instance name's router on its own client; its inbox
// is read until the test ends unless run is false (an instance that died).
// startOwnedElsewhere starts routers inst-a and inst-b on a fresh Redis,
// both listing accts; inst-b holds acct-1 and its lease names inst-b, so
// an action on acct-1 sent to a runs on b.
func startOwnedElsewhere(t testing.TB, accts ...string) (a, b *node) {
	t.Helper()
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	a = startRouter(t, c, k, "inst-a", accts, true)
	b = startRouter(t, c, k, "inst-b", accts, true)
	b.held.set("acct-1", 1)
	lease(t, c, k, "acct-1", "inst-b")
	return a, b
}

func startRouter(t testing.TB, shared *goredis.Client, k wredis.ViewKeys, name string, listed []string, run bool) *node {
	t.Helper()
	c, rec := client(t, shared)
	n := &node{ctl: &controller{}, held: newHoldings(), qr: map[string]string{}, rec: rec, cname: name, phone: make(chan string, 8), sends: make(chan api.OutgoingText, 8)}
	r, err := NewRouter(RouterConfig{
		Client: c, Keys: k, Instance: name, Holds: n.held.holds,
		Actions: map[string]Action{ActionPair: n.ctl.Pair, ActionRestart: n.ctl.Restart, ActionLogout: n.ctl.Logout},
		Listed: func(acct string) bool {
			for _, a := range listed {
				if a == acct {
					return true
				}
			}
			return false
		},
		QR: func(acct string) (string, bool) {
			qr, ok := n.qr[acct]
			return qr, ok
		},
		PairByPhone: func(_ context.Context, id, phone string) (api.LinkCode, error) {
			n.phone <- phone
			lc := n.link.Load()
			if lc == nil {
				return api.LinkCode{}, &api.Refused{Reason: "account is connected: log it out to pair it again"}
			}
			return *lc, nil
		},
		Send: func(_ context.Context, id string, m api.OutgoingText) (api.Sent, error) {
			n.sends <- m
			if f := n.sent.Load(); f != nil {
				return (*f)(m)
			}
			return api.Sent{ID: "ID-" + id + "-" + m.Text}, nil
		},
		MaxText: testMaxText,
		Wait:    2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return n
}

// lease records in Redis that instance holds acct, as an acquisition would.
func lease(t testing.TB, c *goredis.Client, k wredis.ViewKeys, acct, instance string) {
	t.Helper()
	if err := c.Set(t.Context(), k.Lease(acct), instance+":1.abc", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRouterReachesTheOwner: an action sent to an instance that does not
// hold the account runs on the owner's Controller and answers its result:
// success, a refusal with the owner's reason, an unknown account.
func TestRouterReachesTheOwner(t *testing.T) {
	a, b := startOwnedElsewhere(t, "acct-1", "acct-2")

	if err := a.r.Logout(t.Context(), "acct-1"); err != nil {
		t.Fatalf("routed logout: %v", err)
	}
	if got := b.ctl.actions(); len(got) != 1 || got[0] != "logout acct-1" {
		t.Fatalf("the owner ran %v, want [logout acct-1]", got)
	}
	if got := a.ctl.actions(); len(got) != 0 {
		t.Fatalf("the instance asked ran %v itself", got)
	}

	b.ctl.setAnswer(func(string, string) error { return &api.Refused{Reason: "account is stopped: restart it"} })
	err := a.r.Pair(t.Context(), "acct-1")
	var refused *api.Refused
	if !errors.As(err, &refused) || refused.Reason != "account is stopped: restart it" {
		t.Fatalf("routed pair of a stopped account = %v, want the owner's refusal", err)
	}
	b.ctl.setAnswer(func(string, string) error { return api.ErrUnknownAccount })
	if err := a.r.Restart(t.Context(), "acct-1"); !errors.Is(err, api.ErrUnknownAccount) {
		t.Fatalf("routed restart the owner does not know = %v, want ErrUnknownAccount", err)
	}

	// The instance holding the account runs it itself; an account nobody
	// holds is unavailable when listed, unknown otherwise.
	b.ctl.setAnswer(nil)
	if err := b.r.Restart(t.Context(), "acct-1"); err != nil || len(b.ctl.actions()) != 4 {
		t.Fatalf("local restart = %v, ran %v", err, b.ctl.actions())
	}
	var unavailable *api.Unavailable
	if err := a.r.Pair(t.Context(), "acct-2"); !errors.As(err, &unavailable) {
		t.Fatalf("pair of an account nobody holds = %v, want Unavailable", err)
	}
	if err := a.r.Pair(t.Context(), "nobody"); !errors.Is(err, api.ErrUnknownAccount) {
		t.Fatalf("pair of an account the fleet does not run = %v, want ErrUnknownAccount", err)
	}
}

// TestRouterOwnerGone: the lease names an instance that reads no inbox
// (it died): the action answers Unavailable naming it after the bounded
// wait, and the request does not stay behind to run later.
func TestRouterOwnerGone(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	a := startRouter(t, c, k, "inst-a", []string{"acct-1"}, true)
	dead := startRouter(t, c, k, "inst-dead", []string{"acct-1"}, false)
	dead.held.set("acct-1", 1)
	lease(t, c, k, "acct-1", "inst-dead")

	start := time.Now()
	err := a.r.Logout(t.Context(), "acct-1")
	var unavailable *api.Unavailable
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "inst-dead") || !strings.Contains(unavailable.Reason, "nothing was done") {
		t.Fatalf("logout on a dead owner = %v, want Unavailable naming inst-dead", err)
	}
	t.Logf("answered after %s", time.Since(start).Round(time.Millisecond))
	if n := c.LLen(t.Context(), k.Inbox("inst-dead")).Val(); n != 0 {
		t.Fatalf("%d requests left in the dead instance's inbox", n)
	}
	// The instance comes back: nothing runs that was sent before.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dead.r.Run(ctx); close(done) }()
	if err := a.r.Restart(t.Context(), "acct-1"); err != nil {
		t.Fatalf("restart once the owner reads its inbox: %v", err)
	}
	cancel()
	<-done
	if got := dead.ctl.actions(); len(got) != 1 || got[0] != "restart acct-1" {
		t.Fatalf("the owner ran %v, want only the restart sent while it ran", got)
	}
}

// TestRouterQRSealed: the QR code of an account pairing on another
// instance reaches the asker, and no command sent to Redis carries it.
func TestRouterQRSealed(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	a := startRouter(t, c, k, "inst-a", []string{"acct-1"}, true)
	b := startRouter(t, c, k, "inst-b", []string{"acct-1"}, true)
	const code = "2@SECRETREF,NOISEKEY,IDENTITYKEY,ADVSECRET"
	b.held.set("acct-1", 1)
	b.qr["acct-1"] = code
	got, err := a.r.QR(t.Context(), "inst-b", "acct-1")
	if err != nil || got != code {
		t.Fatalf("QR = %q, %v; want the owner's code", got, err)
	}
	for _, n := range []*node{a, b} {
		if n.rec.sent("SECRETREF") || n.rec.sent("ADVSECRET") {
			t.Fatalf("%s sent the QR code to Redis in the clear", n.cname)
		}
	}
	delete(b.qr, "acct-1")
	if got, err := a.r.QR(t.Context(), "inst-b", "acct-1"); err != nil || got != "" {
		t.Fatalf("QR of an account showing none = %q, %v", got, err)
	}
}

// TestRouterSlowOwner: an owner that took the request is waited for past
// Wait, until the caller's deadline: a slow answer arrives; one later than
// the deadline yields Unavailable saying the action may still take effect.
func TestRouterSlowOwner(t *testing.T) {
	a, b := startOwnedElsewhere(t, "acct-1")
	var delay atomic.Int64
	b.ctl.setAnswer(func(string, string) error {
		time.Sleep(time.Duration(delay.Load())) // ignores its context, like a stuck owner
		return nil
	})

	delay.Store(int64(3 * time.Second)) // longer than Wait (2 s)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.r.Pair(ctx, "acct-1"); err != nil {
		t.Fatalf("pair on a slow owner: %v", err)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 2500*time.Millisecond)
	defer cancel()
	err := a.r.Pair(ctx, "acct-1")
	var unavailable *api.Unavailable
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "inst-b") || !strings.Contains(unavailable.Reason, "may still take effect") {
		t.Fatalf("pair on an owner slower than the deadline = %v, want Unavailable naming inst-b", err)
	}
}

// TestRouterPairByPhone: pairing by phone number sent to an instance that
// does not hold the account runs on the owner with the number, and the
// link code comes back sealed; a refusal comes back as it was.
func TestRouterPairByPhone(t *testing.T) {
	a, b := startOwnedElsewhere(t, "acct-1")
	at := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	b.link.Store(&api.LinkCode{Code: "QW7R-9XKP", ExpiresAt: at})
	got, err := a.r.PairByPhone(t.Context(), "acct-1", "15551234567")
	if err != nil || got.Code != "QW7R-9XKP" || !got.ExpiresAt.Equal(at) {
		t.Fatalf("PairByPhone = %+v, %v; want the owner's code", got, err)
	}
	if phone := <-b.phone; phone != "15551234567" {
		t.Fatalf("the owner got number %q", phone)
	}
	for _, n := range []*node{a, b} {
		if n.rec.sent("QW7R") || n.rec.sent("9XKP") {
			t.Fatalf("%s sent the link code to Redis in the clear", n.cname)
		}
	}
	if len(a.phone) != 0 {
		t.Fatal("the link code was asked of an instance that does not hold the account")
	}
	b.link.Store(nil)
	var refused *api.Refused
	if _, err := a.r.PairByPhone(t.Context(), "acct-1", "15551234567"); !errors.As(err, &refused) || !strings.Contains(refused.Reason, "connected") {
		t.Fatalf("a refusal on the owner: %v", err)
	}
}

// TestRouterSend: a send given to an instance that does not hold the
// account runs on the owner with the recipient, the text (any bytes) and
// the key, and answers the owner's message ID and duplicate flag; the
// owner's typed refusals come back as they were; a text over MaxText is
// refused before it travels; an owner that takes nothing answers 503
// saying nothing was sent.
func TestRouterSend(t *testing.T) {
	a, b := startOwnedElsewhere(t, "acct-1", "acct-2")
	to := jid.New("15551234567", jid.DefaultUserServer)
	text := "h\u00e9llo \"quoted\" \x00\x01 \u2028 </end>"
	got, err := a.r.SendText(t.Context(), "acct-1", api.OutgoingText{To: to, Text: text, Key: "k-1"})
	if err != nil || got.ID != "ID-acct-1-"+text || got.Duplicate {
		t.Fatalf("routed send = %+v, %v; want the owner's id", got, err)
	}
	if m := <-b.sends; m.To != to || m.Text != text || m.Key != "k-1" {
		t.Fatalf("the owner was asked to send %+v", m)
	}
	if len(a.sends) != 0 {
		t.Fatal("the instance asked sent the message itself")
	}
	// Group JIDs, of either form, arrive as they were sent.
	for _, group := range []string{"120363012345678901@g.us", "15551234567-1600000000@g.us"} {
		g, err := jid.Parse(group)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.r.SendText(t.Context(), "acct-1", api.OutgoingText{To: g, Text: "to the group"}); err != nil {
			t.Fatalf("routed send to %s: %v", group, err)
		}
		if m := <-b.sends; m.To != g {
			t.Fatalf("the owner was asked to send to %s, want %s", m.To, g)
		}
	}

	answer := func(sent api.Sent, err error) {
		f := func(api.OutgoingText) (api.Sent, error) { return sent, err }
		b.sent.Store(&f)
	}
	send := func() (api.Sent, error) {
		t.Helper()
		got, err := a.r.SendText(t.Context(), "acct-1", api.OutgoingText{To: to, Text: "x", Key: "k-1"})
		<-b.sends
		return got, err
	}
	answer(api.Sent{ID: "3EB0FIRST", Duplicate: true}, nil)
	if got, err := send(); err != nil || got != (api.Sent{ID: "3EB0FIRST", Duplicate: true}) {
		t.Fatalf("a duplicate on the owner = %+v, %v", got, err)
	}
	answer(api.Sent{}, &api.BadRequest{Reason: "the recipient's number is not 1 to 20 digits"})
	var bad *api.BadRequest
	if _, err := send(); !errors.As(err, &bad) || bad.Reason != "the recipient's number is not 1 to 20 digits" {
		t.Fatalf("a bad request on the owner = %v", err)
	}
	answer(api.Sent{}, &api.RateLimited{RetryAfter: 2500 * time.Millisecond})
	var limited *api.RateLimited
	if _, err := send(); !errors.As(err, &limited) || limited.RetryAfter != 2500*time.Millisecond {
		t.Fatalf("a rate limit on the owner = %v, want RateLimited after 2.5 s", err)
	}
	answer(api.Sent{}, &api.Refused{Reason: "the account is not connected"})
	var refused *api.Refused
	if _, err := send(); !errors.As(err, &refused) || refused.Reason != "the account is not connected" {
		t.Fatalf("a refusal on the owner = %v", err)
	}
	answer(api.Sent{}, fmt.Errorf("app: %w", api.ErrUnknownAccount))
	if _, err := send(); !errors.Is(err, api.ErrUnknownAccount) {
		t.Fatalf("an account the owner does not know = %v", err)
	}

	// Too long a text is refused here; it never reaches Redis.
	long := strings.Repeat("L", testMaxText+1)
	if _, err := a.r.SendText(t.Context(), "acct-1", api.OutgoingText{To: to, Text: long}); !errors.As(err, &bad) {
		t.Fatalf("a text over MaxText = %v, want BadRequest", err)
	}
	if a.rec.sent(long[:100]) || len(b.sends) != 0 {
		t.Fatal("a text over MaxText was routed")
	}
	// An account nobody holds: 503 to retry.
	var unavailable *api.Unavailable
	if _, err := a.r.SendText(t.Context(), "acct-2", api.OutgoingText{To: to, Text: "x"}); !errors.As(err, &unavailable) {
		t.Fatalf("a send from an account nobody holds = %v, want Unavailable", err)
	}
}

// TestRouterSendOwnerGone: the owner reads no inbox (it died): the send
// answers 503 naming it and saying nothing was sent, after the bounded
// wait, and the request is not left to be sent later.
func TestRouterSendOwnerGone(t *testing.T) {
	c, prefix := redistest(t)
	k := viewKeys(t, prefix)
	a := startRouter(t, c, k, "inst-a", []string{"acct-1"}, true)
	dead := startRouter(t, c, k, "inst-dead", []string{"acct-1"}, false)
	dead.held.set("acct-1", 1)
	lease(t, c, k, "acct-1", "inst-dead")
	to := jid.New("15551234567", jid.DefaultUserServer)
	_, err := a.r.SendText(t.Context(), "acct-1", api.OutgoingText{To: to, Text: "lost", Key: "k"})
	var unavailable *api.Unavailable
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "inst-dead") || !strings.Contains(unavailable.Reason, "nothing was done") {
		t.Fatalf("a send on a dead owner = %v, want Unavailable naming inst-dead", err)
	}
	if n := c.LLen(t.Context(), k.Inbox("inst-dead")).Val(); n != 0 {
		t.Fatalf("%d requests left in the dead instance's inbox", n)
	}
}

// TestRouterSendSlowOwner: an owner that took the send but did not answer
// before the caller's deadline yields 503 telling the caller to repeat the
// request with the same key.
func TestRouterSendSlowOwner(t *testing.T) {
	a, b := startOwnedElsewhere(t, "acct-1")
	release := make(chan struct{})
	defer close(release)
	f := func(api.OutgoingText) (api.Sent, error) {
		<-release // ignores its context, like a stuck owner
		return api.Sent{ID: "late"}, nil
	}
	b.sent.Store(&f)
	ctx, cancel := context.WithTimeout(t.Context(), 2500*time.Millisecond)
	defer cancel()
	_, err := a.r.SendText(ctx, "acct-1", api.OutgoingText{To: jid.New("1555", jid.DefaultUserServer), Text: "slow", Key: "k"})
	var unavailable *api.Unavailable
	if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "same idempotency_key") {
		t.Fatalf("a send on an owner slower than the deadline = %v, want Unavailable naming the key", err)
	}
}
