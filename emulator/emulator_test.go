package emulator_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/internal/testkit"
	"github.com/wafleet/wafleet/wire"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
	"github.com/wafleet/wafleet/wire/qr"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPairLoginPing(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	linked := pair(t, srv, d)
	if linked.JID.Server != "s.whatsapp.net" || linked.JID.Device == 0 || !strings.HasPrefix(linked.JID.User, "1555000") {
		t.Fatalf("device JID %v", linked.JID)
	}
	if linked.LID.Server != "lid" || linked.LID.Device != linked.JID.Device {
		t.Fatalf("LID %v for %v", linked.LID, linked.JID)
	}

	c := login(t, srv, d)
	success := c.expectTag("success")
	if lid, ok := success.AttrJID("lid"); !ok || lid != d.lid {
		t.Fatalf("success lid: %v", success)
	}
	if ts, _ := success.Attr("t"); ts == "" {
		t.Fatalf("success without t: %v", success)
	}

	steps := []struct {
		name   string
		req    node.Node
		typ    string
		verify func(t *testing.T, n node.Node)
	}{
		{name: "ping whatsmeow form", req: iq("p-1", "get", "w:p"), typ: "result"},
		{name: "ping baileys form", req: iq("p-2", "get", "w:p", node.New("ping")), typ: "result"},
		{name: "active", req: iq("p-3", "set", "passive", node.New("active")), typ: "result"},
		{name: "prekey count before upload", req: iq("p-4", "get", "encrypt", node.New("count")), typ: "result",
			verify: countIs("0")},
		{name: "prekey upload", req: iq("p-5", "set", "encrypt", node.New("list").WithChildren(
			node.New("key"), node.New("key"), node.New("key"))), typ: "result"},
		{name: "prekey count after upload", req: iq("p-6", "get", "encrypt", node.New("count")), typ: "result",
			verify: countIs("3")},
		{name: "unknown iq", req: iq("p-7", "get", "w:profile:picture", node.New("picture")), typ: "error",
			verify: func(t *testing.T, n node.Node) {
				e, ok := n.Child("error")
				if code, _ := e.Attr("code"); !ok || code != "501" {
					t.Fatalf("got %v, want error 501", n)
				}
			}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c.t = t
			c.send(st.req)
			id, _ := st.req.Attr("id")
			n := c.expectResult(id, st.typ)
			if st.verify != nil {
				st.verify(t, n)
			}
		})
	}
	c.t = t
	// Presence and ib nodes are accepted silently; the next ping still works.
	c.send(node.New("presence", node.StrAttr("type", "available")))
	c.send(iq("p-8", "get", "w:p"))
	c.expectResult("p-8", "result")

	st := srv.Stats()
	want := emulator.Stats{Handshakes: 2, Registrations: 1, Pairings: 1, Logins: 1, ActiveConnections: 1,
		MaxConnectionsPerDevice: 1, Pings: 3, PrekeyUploads: 1, DevicesWithPrekeys: 1}
	if v := st.Violations; v == nil {
		t.Fatal("violations is nil, want an empty list")
	}
	st.Violations, want.Violations = nil, nil
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	if v := srv.Stats().Violations; len(v) != 0 {
		t.Fatalf("violations: %q", v)
	}
	if devs := srv.Devices(); len(devs) != 1 || devs[0].JID != d.jid.String() || devs[0].Connections != 1 {
		t.Fatalf("devices %+v", devs)
	}
}

func countIs(want string) func(t *testing.T, n node.Node) {
	return func(t *testing.T, n node.Node) {
		t.Helper()
		c, ok := n.Child("count")
		if v, _ := c.Attr("value"); !ok || v != want {
			t.Fatalf("got %v, want count %s", n, want)
		}
	}
}

func TestScanLegacyQRAndRelink(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	first := pair(t, srv, d)

	// The same companion links again with the legacy QR form: same account,
	// next device number.
	c := register(t, srv, d)
	refs := c.pairDevice()
	legacy, err := qr.BuildLegacy(refs[2], d.noise.Pub, d.identity.Pub, d.adv)
	if err != nil {
		t.Fatal(err)
	}
	ch := scanAsync(srv, legacy)
	id, p, err := c.pairSuccess(d)
	if err != nil {
		t.Fatal(err)
	}
	c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	c.expectTag("stream:error")
	r := waitScan(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.linked.JID.User != first.JID.User || r.linked.JID.Device != first.JID.Device+1 {
		t.Fatalf("relink gave %v after %v", r.linked.JID, first.JID)
	}
	// Another companion gets another account.
	other := pair(t, srv, newTestDevice(t))
	if other.JID.User == first.JID.User || other.LID.User == first.LID.User {
		t.Fatalf("second companion shares the account: %v %v", other.JID, first.JID)
	}
}

func TestHandshakeFaults(t *testing.T) {
	tests := []struct {
		fault   string
		timeout time.Duration
		want    error
	}{
		{fault: "bad-root-signature", want: crypto.ErrCertRootSignature},
		{fault: "wrong-leaf-key", want: crypto.ErrCertLeafKeyMismatch},
		{fault: "expired-certificate", want: crypto.ErrCertExpired},
		{fault: "wrong-issuer-serial", want: crypto.ErrCertLeafIssuer},
		{fault: "drop-after-hello", want: wire.ErrClosed},
		{fault: "stall-after-hello", timeout: 300 * time.Millisecond, want: wire.ErrHandshakeTimeout},
		{fault: "slow-server-hello=5s", timeout: 300 * time.Millisecond, want: wire.ErrHandshakeTimeout},
		{fault: "slow-server-hello=20ms"},
		{fault: "huge-server-hello", timeout: time.Minute, want: wire.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			f, err := emulator.ParseFaults(tt.fault)
			if err != nil {
				t.Fatal(err)
			}
			srv := emutest.Start(t, emulator.Options{Faults: f})
			d := newTestDevice(t)
			_, err = handshake(t, srv, d.noise, d.registrationPayload(t), tt.timeout)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				emutest.WaitStats(t, srv, waitTimeout, "a registration", func(s emulator.Stats) bool { return s.Registrations == 1 })
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("handshake error %v, want %v", err, tt.want)
			}
			if st := srv.Stats(); st.Handshakes != 0 || len(st.Violations) != 0 {
				t.Fatalf("stats after a failed handshake: %+v", st)
			}
		})
	}
}

func TestRefuseConnections(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{Faults: emulator.Faults{RefuseConnections: true}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := wire.Dial(ctx, srv.URL(), wire.DialOptions{})
	if err == nil {
		conn.Close()
		t.Fatal("dial succeeded against refuse-connections")
	}
	if !strings.Contains(err.Error(), "503") {
		t.Fatalf("dial error %v does not mention HTTP 503", err)
	}
	// Turning the fault off lets clients in again.
	if err := srv.SetFaults(emulator.Faults{}); err != nil {
		t.Fatal(err)
	}
	d := newTestDevice(t)
	register(t, srv, d).pairDevice()
}

func TestPairingFaults(t *testing.T) {
	tests := []struct {
		fault     string
		clientErr error
		code      int
		text      string
	}{
		{fault: "bad-pair-hmac", clientErr: crypto.ErrADVHMACMismatch, code: 401, text: "hmac-mismatch"},
		{fault: "bad-account-signature", clientErr: crypto.ErrADVSignatureMismatch, code: 401, text: "signature-mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.fault, func(t *testing.T) {
			f, err := emulator.ParseFaults(tt.fault)
			if err != nil {
				t.Fatal(err)
			}
			srv := emutest.Start(t, emulator.Options{Faults: f})
			d := newTestDevice(t)
			c := register(t, srv, d)
			refs := c.pairDevice()
			ch := scanAsync(srv, qrCode(t, refs[0], d))
			id, _, err := c.pairSuccess(d)
			if !errors.Is(err, tt.clientErr) {
				t.Fatalf("client ADV check: %v, want %v", err, tt.clientErr)
			}
			// The client answers as whatsmeow does (PROTOCOL.md 8.7).
			c.send(node.New("iq", node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "error"), node.StrAttr("id", id)).
				WithChildren(node.New("error", node.IntAttr("code", int64(tt.code)), node.StrAttr("text", tt.text))))
			c.expectClosed()
			r := waitScan(t, ch)
			var pe *emulator.PairError
			if !errors.As(r.err, &pe) || pe.Code != tt.code || pe.Text != tt.text || !errors.Is(r.err, emulator.ErrPairRejected) {
				t.Fatalf("Scan error %v, want PairError %d %s", r.err, tt.code, tt.text)
			}
			if st := srv.Stats(); st.Pairings != 0 || len(st.Violations) != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestLoginFailure401Fault(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{Faults: emulator.Faults{LoginFailure401: true}})
	d := newTestDevice(t)
	pair(t, srv, d) // pairing is not affected
	c := login(t, srv, d)
	f := c.expectTag("failure")
	if r, _ := f.Attr("reason"); r != "401" {
		t.Fatalf("got %v, want failure 401", f)
	}
	c.expectClosed()
	if st := srv.Stats(); st.Logins != 0 || st.LoginsRejected != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLoginRejected(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)

	tests := []struct {
		name   string
		mutate func(d *testDevice)
	}{
		{name: "other noise key", mutate: func(d *testDevice) {
			d.noise, _ = crypto.GenerateKeyPair()
		}},
		{name: "unknown device number", mutate: func(d *testDevice) { d.jid.Device += 5 }},
		{name: "unknown phone number", mutate: func(d *testDevice) { d.jid.User = "15559999999" }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dd := *d
			tt.mutate(&dd)
			c := login(t, srv, &dd)
			f := c.expectTag("failure")
			if r, _ := f.Attr("reason"); r != "401" {
				t.Fatalf("got %v, want failure 401", f)
			}
			c.expectClosed()
			if st := srv.Stats(); st.LoginsRejected != int64(i+1) || st.Logins != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestConflictAfterSuccessFault(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{Faults: emulator.Faults{ConflictAfterSuccess: true}})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")
	expectConflict(t, c.expectTag("stream:error"), "", "replaced")
	c.expectClosed()
}

func expectConflict(t *testing.T, n node.Node, code, typ string) {
	t.Helper()
	if got, _ := n.Attr("code"); got != code {
		t.Fatalf("got %v, want code %q", n, code)
	}
	cf, ok := n.Child("conflict")
	if typ == "" {
		if ok {
			t.Fatalf("got %v, want no conflict child", n)
		}
		return
	}
	if got, _ := cf.Attr("type"); !ok || got != typ {
		t.Fatalf("got %v, want conflict type %q", n, typ)
	}
}

func TestRandomDisconnectsFault(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	f, err := emulator.ParseFaults("random-disconnects=200")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.SetFaults(f); err != nil {
		t.Fatal(err)
	}
	c := login(t, srv, d)
	c.expectTag("success")
	c.expectClosed()
	emutest.WaitStats(t, srv, waitTimeout, "no active connection", func(s emulator.Stats) bool { return s.ActiveConnections == 0 })
}

func TestUnlink(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	c := login(t, srv, d)
	c.expectTag("success")

	if err := srv.Phone().Unlink(d.jid); err != nil {
		t.Fatal(err)
	}
	expectConflict(t, c.expectTag("stream:error"), "401", "device_removed")
	c.expectClosed()

	c2 := login(t, srv, d)
	if r, _ := c2.expectTag("failure").Attr("reason"); r != "401" {
		t.Fatal("login after unlink was not refused with 401")
	}
	if err := srv.Phone().Unlink(d.jid); !errors.Is(err, emulator.ErrUnknownDevice) {
		t.Fatalf("second unlink: %v", err)
	}
	if devs := srv.Devices(); len(devs) != 0 {
		t.Fatalf("devices after unlink: %+v", devs)
	}
}

func TestKick(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	tests := []struct {
		reason, code, conflict string
	}{
		{reason: "conflict", conflict: "replaced"},
		{reason: "replaced", conflict: "replaced"},
		{reason: "503", code: "503"},
		{reason: "515", code: "515"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			c := login(t, srv, d)
			c.expectTag("success")
			if err := srv.Phone().Kick(d.jid, tt.reason); err != nil {
				t.Fatal(err)
			}
			expectConflict(t, c.expectTag("stream:error"), tt.code, tt.conflict)
			c.expectClosed()
			emutest.WaitStats(t, srv, waitTimeout, "no active connection", func(s emulator.Stats) bool { return s.ActiveConnections == 0 })
		})
	}
	if err := srv.Phone().Kick(d.jid, "515"); !errors.Is(err, emulator.ErrNotConnected) {
		t.Fatalf("kick while offline: %v", err)
	}
	if err := srv.Phone().Kick(d.jid, "bogus"); !errors.Is(err, emulator.ErrBadReason) {
		t.Fatalf("kick with a bad reason: %v", err)
	}
	// Kicks by LID work too; the device stays paired.
	c := login(t, srv, d)
	c.expectTag("success")
	if err := srv.Phone().Kick(d.lid, "503"); err != nil {
		t.Fatal(err)
	}
	c.expectTag("stream:error")
	if st := srv.Stats(); st.MaxConnectionsPerDevice != 1 {
		t.Fatalf("max connections per device %d", st.MaxConnectionsPerDevice)
	}
}

func TestSecondLoginReplacesFirst(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	pair(t, srv, d)
	c1 := login(t, srv, d)
	c1.expectTag("success")
	c2 := login(t, srv, d)
	c2.expectTag("success")
	expectConflict(t, c1.expectTag("stream:error"), "", "replaced")
	c1.expectClosed()
	c2.send(iq("after", "get", "w:p"))
	c2.expectResult("after", "result")
	st := emutest.WaitStats(t, srv, waitTimeout, "one active connection", func(s emulator.Stats) bool { return s.ActiveConnections == 1 })
	if st.MaxConnectionsPerDevice != 2 || st.Logins != 2 {
		t.Fatalf("stats %+v: the overlap must be counted", st)
	}
}

func TestRefsExpire(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{FirstRefTTL: 150 * time.Millisecond, NextRefTTL: 10 * time.Millisecond})
	d := newTestDevice(t)
	c := register(t, srv, d)
	refs := c.pairDevice()
	if len(refs) != 6 {
		t.Fatalf("%d refs, want 6", len(refs))
	}
	c.expectClosed()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := srv.Phone().Scan(ctx, qrCode(t, refs[5], d)); !errors.Is(err, emulator.ErrRefExpired) {
		t.Fatalf("scan of an expired ref: %v", err)
	}
}

func TestScanErrors(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	c := register(t, srv, d)
	refs := c.pairDevice()
	other := newTestDevice(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	tests := []struct {
		name string
		code string
		want error
	}{
		{name: "not a QR code", code: "hello", want: emulator.ErrBadQR},
		{name: "unknown ref", code: qrCode(t, "2@unknown", d), want: emulator.ErrUnknownRef},
		{name: "other noise key", code: qrCode(t, refs[0], &testDevice{noise: other.noise, identity: d.identity, adv: d.adv}), want: emulator.ErrKeyMismatch},
		{name: "other identity key", code: qrCode(t, refs[0], &testDevice{noise: d.noise, identity: other.identity, adv: d.adv}), want: emulator.ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := srv.Phone().Scan(ctx, tt.code); !errors.Is(err, tt.want) {
				t.Fatalf("Scan: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := srv.Phone().ScanWith(ctx, qrCode(t, refs[0], d), emulator.ScanOptions{Phone: "0123"}); !errors.Is(err, emulator.ErrBadPhone) {
		t.Fatalf("Scan with a bad phone: %v", err)
	}

	// A second scan while the first waits for the companion.
	ch := scanAsync(srv, qrCode(t, refs[0], d))
	id, p, err := c.pairSuccess(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Phone().Scan(ctx, qrCode(t, refs[1], d)); !errors.Is(err, emulator.ErrAlreadyScanned) {
		t.Fatalf("second scan: %v", err)
	}
	// A reply with the wrong key-index fails the phone's check.
	c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex)+1)).WithBytes(p.Reply))))
	c.expectClosed()
	if r := waitScan(t, ch); !errors.Is(r.err, emulator.ErrBadPairReply) {
		t.Fatalf("Scan after a bad reply: %v", r.err)
	}
	if st := srv.Stats(); len(st.Violations) != 1 || st.Pairings != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestScanTimeout(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{ScanTimeout: 100 * time.Millisecond})
	d := newTestDevice(t)
	c := register(t, srv, d)
	refs := c.pairDevice()
	ch := scanAsync(srv, qrCode(t, refs[0], d))
	if _, _, err := c.pairSuccess(d); err != nil {
		t.Fatal(err)
	}
	// No reply: the scan gives up and the connection is closed.
	if r := waitScan(t, ch); !errors.Is(r.err, emulator.ErrPairTimeout) {
		t.Fatalf("Scan: %v", r.err)
	}
	c.expectClosed()
}

func TestLogsHoldNoSecrets(t *testing.T) {
	var logs testkit.LogBuffer
	srv := emutest.Start(t, emulator.Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	d := newTestDevice(t)
	c := register(t, srv, d)
	refs := c.pairDevice()
	code := qrCode(t, refs[0], d)
	ch := scanAsync(srv, code)
	id, p, err := c.pairSuccess(d)
	if err != nil {
		t.Fatal(err)
	}
	c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	if r := waitScan(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
	lc := login(t, srv, d)
	lc.expectTag("success")
	srv.Close()

	out := logs.String()
	if !strings.Contains(out, d.jid.String()) {
		t.Fatalf("logs do not mention the device; logs:\n%s", out)
	}
	b64 := base64.StdEncoding.EncodeToString
	for name, secret := range map[string]string{
		"QR text": code, "ref 0": refs[0], "ref 5": refs[5],
		"noise key": b64(d.noise.Pub[:]), "identity key": b64(d.identity.Pub[:]), "ADV secret": b64(d.adv[:]),
		"noise key hex": hex.EncodeToString(d.noise.Pub[:]), "ADV secret hex": hex.EncodeToString(d.adv[:]),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}
