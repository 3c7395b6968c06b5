package pairing

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

const waitTimeout = 10 * time.Second

// parent stands in for the connection actor: it spawns the pairing actor
// and hands every message it gets from it to the test.
type parent struct {
	deps  Deps
	out   chan any
	child chan *actor.PID
}

func (p *parent) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		p.child <- ctx.Spawn(actor.PropsFromProducer(New(p.deps)))
	case *Send, *Finish, *LastCode, *Expired:
		p.out <- m
	}
}

type fixture struct {
	t      *testing.T
	system *actor.ActorSystem
	dev    *store.Device
	rec    *testkit.Recorder
	out    chan any
	parent *actor.PID
	child  *actor.PID
}

func quiet() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

// newFixture spawns a parent with the pairing child of a fresh unpaired
// device.
func newFixture(t *testing.T, mod func(*Deps)) *fixture {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
	dev := storetest.NewDevice(t, "acct")
	sys := actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return quiet() }),
		actor.WithDeadLetterThrottleInterval(time.Millisecond),
	)
	t.Cleanup(sys.Shutdown)
	rec := testkit.NewRecorder()
	d := Deps{
		Gen: 42, Device: dev, Events: rec, Logger: quiet(),
		Schedule: Schedule{First: time.Hour, Next: time.Hour}, ClientType: qr.ClientChrome,
	}
	if mod != nil {
		mod(&d)
	}
	p := &parent{deps: d, out: make(chan any, 16), child: make(chan *actor.PID, 1)}
	pid := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return p }))
	t.Cleanup(func() { _ = sys.Root.StopFuture(pid).Wait() })
	return &fixture{t: t, system: sys, dev: dev, rec: rec, out: p.out, parent: pid, child: <-p.child}
}

func (f *fixture) next(what string) any {
	f.t.Helper()
	select {
	case m := <-f.out:
		return m
	case <-time.After(waitTimeout):
		f.t.Fatalf("no %s from the pairing actor within %v", what, waitTimeout)
		return nil
	}
}

func pairDevice(id string, refs ...string) node.Node {
	var children []node.Node
	for _, r := range refs {
		children = append(children, node.New("ref").WithBytes([]byte(r)))
	}
	return node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", id), node.StrAttr("type", "set"), node.StrAttr("xmlns", "md")).
		WithChildren(node.New("pair-device").WithChildren(children...))
}

func TestQRCodesOnSchedule(t *testing.T) {
	const first, next = 30 * time.Millisecond, 10 * time.Millisecond
	f := newFixture(t, func(d *Deps) { d.Schedule = Schedule{First: first, Next: next} })
	refs := []string{"2@one", "2@two", "2@three"}
	f.system.Root.Send(f.child, &PairDevice{Node: pairDevice("pd-7", refs...)})

	ack, ok := f.next("ack").(*Send)
	if !ok || ack.Gen != 42 {
		t.Fatalf("first message %#v, want the ack", ack)
	}
	if id, _ := ack.Node.Attr("id"); id != "pd-7" {
		t.Errorf("ack id %q", id)
	}
	if typ, _ := ack.Node.Attr("type"); typ != "result" || ack.Node.Kind() != node.KindNone {
		t.Errorf("ack %v", ack.Node)
	}
	if to, ok := ack.Node.AttrJID("to"); !ok || to != jid.ServerJID {
		t.Errorf("ack to %v (a JID: %v)", to, ok)
	}
	if _, ok := f.next("last code").(*LastCode); !ok {
		t.Fatal("no LastCode before the end")
	}
	if _, ok := f.next("expiry").(*Expired); !ok {
		t.Fatal("no Expired after the last code")
	}
	evs := f.rec.Events()
	if len(evs) != len(refs) {
		t.Fatalf("%d QR events, want %d", len(evs), len(refs))
	}
	for i, e := range evs {
		code, err := qr.Parse(e.QR)
		if err != nil {
			t.Fatalf("QR %d: %v", i, err)
		}
		if code.Ref != refs[i] || code.NoisePub != f.dev.NoiseKey.Pub || code.IdentityPub != f.dev.IdentityKey.Pub ||
			code.AdvSecret != f.dev.AdvSecret || code.ClientType != qr.ClientChrome {
			t.Errorf("QR %d does not carry ref %d and the device's keys: %v", i, i, code)
		}
		if e.Kind != events.KindQR || e.State != events.StatePairing || e.Account != "acct" {
			t.Errorf("event %d: %s/%s/%s", i, e.Kind, e.State, e.Account)
		}
		life := next
		if i == 0 {
			life = first
		}
		if e.QRIndex != i+1 || e.QRCount != len(refs) || !e.QRExpires.Equal(e.Time.Add(life)) {
			t.Errorf("event %d: code %d of %d until %v, want %d of %d until shown+%v", i, e.QRIndex, e.QRCount, e.QRExpires, i+1, len(refs), life)
		}
	}
	// Timers never fire early: the first code lived at least First, the
	// next at least Next (each event's Time is when it was shown).
	if d := evs[1].Time.Sub(evs[0].Time); d < first {
		t.Errorf("first code shown %v, want >= %v", d, first)
	}
	if d := evs[2].Time.Sub(evs[1].Time); d < next {
		t.Errorf("second code shown %v, want >= %v", d, next)
	}
}

func TestPairDeviceWithoutRefsExpires(t *testing.T) {
	f := newFixture(t, nil)
	n := pairDevice("pd")
	f.system.Root.Send(f.child, &PairDevice{Node: n})
	f.next("ack")
	if _, ok := f.next("expiry").(*Expired); !ok {
		t.Fatal("pair-device without refs did not expire")
	}
}

// phone builds pair-success stanzas for the fixture's device.
type phone struct {
	primary *crypto.KeyPair
	di      *waproto.ADVDeviceIdentity
	diBytes []byte
}

func newPhone(t *testing.T) *phone {
	primary, err := crypto.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return &phone{primary: primary, di: &waproto.ADVDeviceIdentity{
		RawID: proto.Uint32(9), Timestamp: proto.Uint64(1767225600), KeyIndex: proto.Uint32(3),
	}}
}

// success returns pair-success for a companion identity, MACed with adv.
func (p *phone) success(t *testing.T, identityPub []byte, adv []byte, children ...node.Node) node.Node {
	t.Helper()
	sdi, err := crypto.SignADVAccount(p.primary, p.di, identityPub)
	if err != nil {
		t.Fatal(err)
	}
	p.diBytes = sdi.GetDetails()
	b, err := proto.Marshal(sdi)
	if err != nil {
		t.Fatal(err)
	}
	container, err := crypto.MakeADVContainer(b, adv, waproto.ADVEncryptionType_E2EE)
	if err != nil {
		t.Fatal(err)
	}
	pn, _ := jid.Parse("15550001234:3@s.whatsapp.net")
	lid, _ := jid.Parse("100000000000042:3@lid")
	if children == nil {
		children = []node.Node{
			node.New("device-identity").WithBytes(container),
			node.New("platform", node.StrAttr("name", "android")),
			node.New("device", node.JIDAttr("jid", pn), node.JIDAttr("lid", lid)),
			node.New("biz", node.StrAttr("name", "Corner Shop")),
		}
	}
	return node.New("iq", node.JIDAttr("from", jid.ServerJID), node.StrAttr("id", "ps-1"), node.StrAttr("type", "set"), node.StrAttr("xmlns", "md")).
		WithChildren(node.New("pair-success").WithChildren(children...))
}

// zeroKeyEdwards is the Edwards form of the account key of 32 zero bytes:
// (0, -1), a point of order 2.
var zeroKeyEdwards = append([]byte{0xec}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...)

// forgeUnderZeroKey returns, if msg allows, a signature that Ed25519's check
// accepts under zeroKeyEdwards without any private key: S = 0 and R the
// identity when k = SHA-512(R || A || msg) mod L is even, or A itself when
// it is odd.
func forgeUnderZeroKey(msg []byte) ([]byte, bool) {
	identity := append([]byte{1}, make([]byte, 31)...)
	for _, r := range [][]byte{identity, zeroKeyEdwards} {
		h := sha512.New()
		h.Write(r)
		h.Write(zeroKeyEdwards)
		h.Write(msg)
		k, _ := edwards25519.NewScalar().SetUniformBytes(h.Sum(nil))
		odd := k.Bytes()[0]&1 == 1
		if odd == bytes.Equal(r, zeroKeyEdwards) {
			return append(append([]byte(nil), r...), make([]byte, 32)...), true
		}
	}
	return nil, false
}

// forgedSuccess returns pair-success whose account key is 32 zero bytes,
// with an account signature forged under it and a good HMAC (whoever saw
// the QR code knows the ADV secret).
func (p *phone) forgedSuccess(t *testing.T, identityPub, adv []byte) node.Node {
	t.Helper()
	for i := range 100 {
		p.di.KeyIndex = proto.Uint32(uint32(i))
		details, err := proto.MarshalOptions{Deterministic: true}.Marshal(p.di)
		if err != nil {
			t.Fatal(err)
		}
		msg := append(append([]byte{0x06, 0x00}, details...), identityPub...)
		sig, ok := forgeUnderZeroKey(msg)
		if !ok {
			continue
		}
		if !ed25519.Verify(zeroKeyEdwards, msg, sig) {
			t.Fatal("the forged account signature does not pass Ed25519's check")
		}
		b, err := proto.Marshal(&waproto.ADVSignedDeviceIdentity{Details: details, AccountSignatureKey: make([]byte, 32), AccountSignature: sig})
		if err != nil {
			t.Fatal(err)
		}
		container, err := crypto.MakeADVContainer(b, adv, waproto.ADVEncryptionType_E2EE)
		if err != nil {
			t.Fatal(err)
		}
		pn, _ := jid.Parse("15550001234:3@s.whatsapp.net")
		return p.success(t, nil, nil, node.New("device-identity").WithBytes(container), node.New("device", node.JIDAttr("jid", pn)))
	}
	t.Fatal("no key index lets the signature be forged")
	return node.Node{}
}

func TestPairSuccess(t *testing.T) {
	f := newFixture(t, nil)
	ph := newPhone(t)
	f.system.Root.Send(f.child, &PairSuccess{Node: ph.success(t, f.dev.IdentityKey.Pub[:], f.dev.AdvSecret[:])})

	fin, ok := f.next("finish").(*Finish)
	if !ok || fin.Err != nil || fin.Paired == nil || fin.Gen != 42 {
		t.Fatalf("finish %#v", fin)
	}
	r := fin.Reply
	if id, _ := r.Attr("id"); id != "ps-1" {
		t.Errorf("reply id %q", id)
	}
	if typ, _ := r.Attr("type"); typ != "result" {
		t.Errorf("reply type %q", typ)
	}
	if to, ok := r.AttrJID("to"); !ok || to != jid.ServerJID {
		t.Errorf("reply to %v (a JID: %v)", to, ok)
	}
	sign, _ := r.Child("pair-device-sign")
	var di *node.Node
	if sign != nil {
		di, _ = sign.Child("device-identity")
	}
	if di == nil {
		t.Fatalf("reply %v lacks pair-device-sign/device-identity", r)
	}
	if ki, _ := di.Attr("key-index"); ki != "3" {
		t.Errorf("key-index %q, want 3", ki)
	}
	reply, _ := di.Bytes()
	if err := crypto.VerifyADVReply(reply, ph.diBytes, f.dev.IdentityKey.Pub[:], ph.primary.Pub[:]); err != nil {
		t.Errorf("the phone refuses the reply: %v", err)
	}

	got := fin.Paired
	if err := got.Validate(); err != nil {
		t.Errorf("handed device: %v", err)
	}
	if got.JID != "15550001234:3@s.whatsapp.net" || got.LID != "100000000000042:3@lid" || got.Platform != "android" ||
		got.BusinessName != "Corner Shop" || got.MainDeviceIdentity != ph.primary.Pub || got.PairedAt.IsZero() {
		t.Errorf("handed pairing %v", got)
	}
	if got.NoiseKey != f.dev.NoiseKey || got.IdentityKey != f.dev.IdentityKey || got.AdvSecret != f.dev.AdvSecret {
		t.Error("pairing changed the device keys")
	}
	var account waproto.ADVSignedDeviceIdentity
	if err := proto.Unmarshal(got.Account, &account); err != nil {
		t.Fatal(err)
	}
	if len(account.GetDeviceSignature()) != 64 || len(account.GetAccountSignatureKey()) != 32 {
		t.Error("handed account record lacks the device signature or the account key")
	}
	if f.dev.Paired() {
		t.Error("pairing changed the device it was given")
	}

	// A failed save is answered to the same request with a 500.
	refused := fin.SaveFailed(errors.New("disk full"))
	var pe *Error
	if !errors.As(refused.Err, &pe) || pe.Code != 500 || pe.Text != "internal-error" || !errors.Is(refused.Err, ErrSave) ||
		refused.Paired != nil || refused.Gen != 42 {
		t.Fatalf("SaveFailed = %+v", refused)
	}
	if typ, _ := refused.Reply.Attr("type"); typ != "error" {
		t.Errorf("save failure reply type %q", typ)
	}
	if id, _ := refused.Reply.Attr("id"); id != "ps-1" {
		t.Errorf("save failure reply id %q", id)
	}
	if to, ok := refused.Reply.AttrJID("to"); !ok || to != jid.ServerJID {
		t.Errorf("save failure reply to %v", to)
	}
}

func TestPairSuccessErrors(t *testing.T) {
	other, _ := crypto.GenerateKeyPair()
	var wrongAdv [32]byte
	wrongAdv[0] = 1
	tests := []struct {
		name  string
		build func(t *testing.T, f *fixture, ph *phone) node.Node
		code  int
		text  string
		is    error
	}{
		{"hmac mismatch", func(t *testing.T, f *fixture, ph *phone) node.Node {
			return ph.success(t, f.dev.IdentityKey.Pub[:], wrongAdv[:])
		}, 401, "hmac-mismatch", crypto.ErrADVHMACMismatch},
		{"account signature for another companion", func(t *testing.T, f *fixture, ph *phone) node.Node {
			return ph.success(t, other.Pub[:], f.dev.AdvSecret[:])
		}, 401, "signature-mismatch", crypto.ErrADVSignatureMismatch},
		{"account key of small order", func(t *testing.T, f *fixture, ph *phone) node.Node {
			return ph.forgedSuccess(t, f.dev.IdentityKey.Pub[:], f.dev.AdvSecret[:])
		}, 401, "signature-mismatch", crypto.ErrLowOrderKey},
		{"garbage identity", func(t *testing.T, f *fixture, ph *phone) node.Node {
			pn, _ := jid.Parse("15550001234:3@s.whatsapp.net")
			return ph.success(t, nil, nil, node.New("device-identity").WithBytes([]byte{0xff, 0x01}), node.New("device", node.JIDAttr("jid", pn)))
		}, 500, "internal-error", crypto.ErrADVMalformed},
		{"no device-identity", func(t *testing.T, f *fixture, ph *phone) node.Node {
			pn, _ := jid.Parse("15550001234:3@s.whatsapp.net")
			return ph.success(t, nil, nil, node.New("device", node.JIDAttr("jid", pn)))
		}, 500, "internal-error", ErrMalformed},
		{"no device jid", func(t *testing.T, f *fixture, ph *phone) node.Node {
			return ph.success(t, nil, nil, node.New("device-identity").WithBytes([]byte{1}))
		}, 500, "internal-error", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			ph := newPhone(t)
			f.system.Root.Send(f.child, &PairSuccess{Node: tt.build(t, f, ph)})
			fin, ok := f.next("finish").(*Finish)
			if !ok {
				t.Fatal("no Finish")
			}
			var pe *Error
			if !errors.As(fin.Err, &pe) || pe.Code != tt.code || pe.Text != tt.text || !errors.Is(fin.Err, tt.is) {
				t.Fatalf("error %v, want %d %s wrapping %v", fin.Err, tt.code, tt.text, tt.is)
			}
			if fin.Paired != nil {
				t.Error("a failed pairing handed a device")
			}
			if typ, _ := fin.Reply.Attr("type"); typ != "error" {
				t.Errorf("reply type %q", typ)
			}
			if id, _ := fin.Reply.Attr("id"); id != "ps-1" {
				t.Errorf("reply id %q", id)
			}
			e, ok := fin.Reply.Child("error")
			if !ok {
				t.Fatalf("reply %v has no <error>", fin.Reply)
			}
			if c, _ := e.Attr("code"); c != itoa(tt.code) {
				t.Errorf("error code %q", c)
			}
			if x, _ := e.Attr("text"); x != tt.text {
				t.Errorf("error text %q", x)
			}
		})
	}
}

func itoa(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

func TestRestore(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		stored  func(paired *store.Device) *store.Device // nil: nothing stored
		restore bool
	}{
		{"still the saved pairing", func(p *store.Device) *store.Device { return p.Clone() }, true},
		{"wiped meanwhile", func(*store.Device) *store.Device { return nil }, false},
		{"re-keyed meanwhile", func(p *store.Device) *store.Device { return storetest.NewDevice(t, p.ID) }, false},
		{"paired again meanwhile", func(p *store.Device) *store.Device {
			d := p.Clone()
			d.PairedAt = d.PairedAt.Add(time.Second)
			return d
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.OpenBolt(filepath.Join(t.TempDir(), "r.db"), store.BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			paired := storetest.PairedDevice(t, "r", "15550009999", "100000000000099", 2)
			cur := tt.stored(paired)
			if cur != nil {
				if err := st.Save(ctx, cur); err != nil {
					t.Fatal(err)
				}
			}
			if err := Restore(ctx, st, paired); err != nil {
				t.Fatal(err)
			}
			got, err := st.Load(ctx, "r")
			switch {
			case cur == nil:
				if !errors.Is(err, store.ErrNotFound) {
					t.Errorf("restore recreated a wiped device: %v", err)
				}
			case tt.restore:
				if err != nil || got.Paired() || len(storetest.Diff(Unpaired(paired), got)) != 0 {
					t.Errorf("not restored: %v, %v", got, err)
				}
				if _, err := st.PNForLID(ctx, "100000000000099"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("mapping survived the restore: %v", err)
				}
			default:
				if err != nil || len(storetest.Diff(cur, got)) != 0 {
					t.Errorf("restore changed a device it does not own: %v", err)
				}
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Code: 401, Text: "hmac-mismatch", Err: crypto.ErrADVHMACMismatch}
	if e.Error() != "pairing: hmac-mismatch (401): crypto: ADV identity HMAC mismatch" {
		t.Errorf("Error() = %q", e.Error())
	}
	if !errors.Is(e, crypto.ErrADVHMACMismatch) {
		t.Error("Unwrap lost the cause")
	}
}
