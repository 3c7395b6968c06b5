package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

const linkPhone = "15557654321"

// linkCompanion is the test client's side of link-code pairing.
type linkCompanion struct {
	c         *testConn
	d         *testDevice
	code      string
	ephemeral *crypto.KeyPair
	ref       []byte
}

func linkHelloNode(t testing.TB, d *testDevice, code string, eph *crypto.KeyPair, display string) node.Node {
	t.Helper()
	wrapped, err := crypto.WrapLinkCodeKey(code, eph.Pub)
	if err != nil {
		t.Fatal(err)
	}
	return iq("hello-1", "set", "md", node.New("link_code_companion_reg",
		node.JIDAttr("jid", jid.JID{User: linkPhone, Server: jid.DefaultUserServer}),
		node.StrAttr("stage", "companion_hello"), node.StrAttr("should_show_push_notification", "true"),
	).WithChildren(
		node.New("link_code_pairing_wrapped_companion_ephemeral_pub").WithBytes(wrapped),
		node.New("companion_server_auth_key_pub").WithBytes(d.noise.Pub[:]),
		node.New("companion_platform_id").WithText("1"),
		node.New("companion_platform_display").WithText(display),
		node.New("link_code_pairing_nonce").WithBytes([]byte{0}),
	))
}

// startLink registers, acks pair-device and sends companion_hello.
func startLink(t *testing.T, srv *emulator.Server) *linkCompanion {
	t.Helper()
	d := newTestDevice(t)
	c := register(t, srv, d)
	c.pairDevice()
	code, err := crypto.GenerateLinkCode()
	if err != nil {
		t.Fatal(err)
	}
	eph, _ := crypto.GenerateKeyPair()
	c.send(linkHelloNode(t, d, code, eph, "Chrome (Linux)"))
	res := c.expectResult("hello-1", "result")
	reg, ok := res.Child("link_code_companion_reg")
	if !ok {
		t.Fatalf("hello result %v", res)
	}
	refNode, ok := reg.Child("link_code_pairing_ref")
	ref, isBytes := refNode.Bytes()
	if !ok || !isBytes || len(ref) == 0 {
		t.Fatalf("hello result %v has no byte ref", res)
	}
	return &linkCompanion{c: c, d: d, code: code, ephemeral: eph, ref: ref}
}

func enterAsync(srv *emulator.Server, phone, code string, timeout time.Duration) <-chan scanResult {
	ch := make(chan scanResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		l, err := srv.Phone().EnterLinkCode(ctx, phone, code)
		ch <- scanResult{l, err}
	}()
	return ch
}

// notification reads the link-code notification, checks its shape and
// (unless ack is false) acks it; it returns the wrapped primary ephemeral
// and the primary identity key.
func (lc *linkCompanion) notification(t *testing.T, ack bool) (wrapped, primaryID []byte) {
	t.Helper()
	n := lc.c.expectTag("notification")
	if typ, _ := n.Attr("type"); typ != "link_code_companion_reg" {
		t.Fatalf("notification %v", n)
	}
	if from, ok := n.AttrJID("from"); !ok || from != jid.ServerJID {
		t.Fatalf("notification from is not the server JID: %v", n)
	}
	reg, ok := n.Child("link_code_companion_reg")
	if !ok {
		t.Fatalf("notification %v", n)
	}
	get := func(tag string) []byte {
		c, ok := reg.Child(tag)
		if !ok {
			t.Fatalf("notification lacks <%s>", tag)
		}
		b, ok := c.Bytes()
		if !ok {
			t.Fatalf("<%s> is not bytes", tag)
		}
		return b
	}
	if string(get("link_code_pairing_ref")) != string(lc.ref) {
		t.Fatal("notification ref is not the hello's")
	}
	wrapped, primaryID = get("link_code_pairing_wrapped_primary_ephemeral_pub"), get("primary_identity_pub")
	if ack {
		id, _ := n.Attr("id")
		lc.c.send(node.New("ack", node.StrAttr("class", "notification"), node.StrAttr("id", id),
			node.JIDAttr("to", jid.ServerJID), node.StrAttr("type", "link_code_companion_reg")))
	}
	return wrapped, primaryID
}

func (lc *linkCompanion) finish(t *testing.T, bundle []byte) {
	t.Helper()
	lc.c.send(iq("finish-1", "set", "md", node.New("link_code_companion_reg",
		node.JIDAttr("jid", jid.JID{User: linkPhone, Server: jid.DefaultUserServer}),
		node.StrAttr("stage", "companion_finish"),
	).WithChildren(
		node.New("link_code_pairing_wrapped_key_bundle").WithBytes(bundle),
		node.New("companion_identity_public").WithBytes(lc.d.identity.Pub[:]),
		node.New("link_code_pairing_ref").WithBytes(lc.ref),
	)))
}

// finishWithCode acks the primary's notification, derives the bundle from
// the code the companion showed and sends companion_finish with it.
func (lc *linkCompanion) finishWithCode(t *testing.T) *crypto.LinkCodeCompanion {
	t.Helper()
	wrapped, primaryID := lc.notification(t, true)
	fin, err := crypto.LinkCodeCompanionFinish(lc.code, lc.ephemeral, lc.d.identity, wrapped, primaryID)
	if err != nil {
		t.Fatal(err)
	}
	lc.finish(t, fin.WrappedBundle)
	return fin
}

func expectIQError(t *testing.T, n node.Node, code string) {
	t.Helper()
	e, ok := n.Child("error")
	if got, _ := e.Attr("code"); !ok || got != code {
		t.Fatalf("got %v, want error %s", n, code)
	}
}

func TestLinkCodePairAndLogin(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	lc := startLink(t, srv)
	ch := enterAsync(srv, linkPhone, strings.ToLower(crypto.FormatLinkCode(lc.code)), waitTimeout)
	fin := lc.finishWithCode(t)
	lc.c.expectResult("finish-1", "result")
	lc.d.adv = fin.ADVSecret // pair-success is HMACed with the derived secret
	id, p, err := lc.c.pairSuccess(lc.d)
	if err != nil {
		t.Fatalf("pair-success under the derived ADV secret: %v", err)
	}
	lc.c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	if se := lc.c.expectTag("stream:error"); se.String() == "" {
		t.Fatal("no 515")
	}
	lc.c.expectClosed()
	r := waitScan(t, ch)
	if r.err != nil || r.linked.JID != lc.d.jid || r.linked.JID.User != linkPhone {
		t.Fatalf("EnterLinkCode = %v, %v; pair-success said %v", r.linked, r.err, lc.d.jid)
	}
	c := login(t, srv, lc.d)
	c.expectTag("success")
	st := srv.Stats()
	if st.LinkCodeRequests != 1 || st.LinkCodePairings != 1 || st.Pairings != 1 || st.LinkCodeFailures != 0 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLinkCodeWrongCode(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	lc := startLink(t, srv)
	wrong := "11111111"
	if wrong == lc.code {
		wrong = "22222222"
	}
	ch := enterAsync(srv, linkPhone, wrong, waitTimeout)
	lc.finishWithCode(t) // the companion cannot tell a wrong code: CTR has no integrity
	expectIQError(t, lc.c.expectResult("finish-1", "error"), "401")
	if r := waitScan(t, ch); !errors.Is(r.err, emulator.ErrLinkCodeMismatch) {
		t.Fatalf("EnterLinkCode err = %v, want ErrLinkCodeMismatch", r.err)
	}
	if st := srv.Stats(); st.LinkCodeFailures != 1 || st.Pairings != 0 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLinkCodeFaults(t *testing.T) {
	t.Run("no-answer", func(t *testing.T) {
		f, _ := emulator.ParseFaults("link-code-no-answer")
		srv := emutest.Start(t, emulator.Options{Faults: f, ScanTimeout: 300 * time.Millisecond})
		lc := startLink(t, srv)
		r := waitScan(t, enterAsync(srv, linkPhone, lc.code, waitTimeout))
		if !errors.Is(r.err, emulator.ErrPairTimeout) {
			t.Fatalf("EnterLinkCode err = %v, want ErrPairTimeout", r.err)
		}
		lc.c.expectClosed() // nothing reached the companion before the server gave up
	})
	t.Run("bad-primary-hello", func(t *testing.T) {
		f, _ := emulator.ParseFaults("link-code-bad-primary-hello")
		srv := emutest.Start(t, emulator.Options{Faults: f})
		lc := startLink(t, srv)
		ch := enterAsync(srv, linkPhone, lc.code, waitTimeout)
		wrapped, primaryID := lc.notification(t, true)
		if _, err := crypto.LinkCodeCompanionFinish(lc.code, lc.ephemeral, lc.d.identity, wrapped, primaryID); !errors.Is(err, crypto.ErrLinkCodeWrapped) {
			t.Fatalf("companion on a 40-byte primary hello: %v", err)
		}
		lc.c.tr.Close() // the companion gives up
		if r := waitScan(t, ch); !errors.Is(r.err, emulator.ErrPairAborted) {
			t.Fatalf("EnterLinkCode err = %v, want ErrPairAborted", r.err)
		}
	})
}

func TestLinkCodeStrictness(t *testing.T) {
	t.Run("finish before ack", func(t *testing.T) {
		srv := emutest.Start(t, emulator.Options{})
		lc := startLink(t, srv)
		ch := enterAsync(srv, linkPhone, lc.code, waitTimeout)
		wrapped, primaryID := lc.notification(t, false)
		fin, _ := crypto.LinkCodeCompanionFinish(lc.code, lc.ephemeral, lc.d.identity, wrapped, primaryID)
		lc.finish(t, fin.WrappedBundle)
		expectIQError(t, lc.c.expectResult("finish-1", "error"), "400")
		if r := waitScan(t, ch); !errors.Is(r.err, emulator.ErrBadLinkCodeReply) {
			t.Fatalf("EnterLinkCode err = %v", r.err)
		}
		if st := srv.Stats(); st.LinkCodeFailures != 1 || len(st.Violations) != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("finish before the phone", func(t *testing.T) {
		srv := emutest.Start(t, emulator.Options{})
		lc := startLink(t, srv)
		lc.finish(t, make([]byte, crypto.LinkCodeBundleLen))
		expectIQError(t, lc.c.expectResult("finish-1", "error"), "400")
	})
	t.Run("bad display", func(t *testing.T) {
		srv := emutest.Start(t, emulator.Options{})
		d := newTestDevice(t)
		c := register(t, srv, d)
		c.pairDevice()
		eph, _ := crypto.GenerateKeyPair()
		c.send(linkHelloNode(t, d, "ABCDEFGH", eph, "wafleet"))
		expectIQError(t, c.expectResult("hello-1", "error"), "400")
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := srv.Phone().EnterLinkCode(ctx, linkPhone, "ABCDEFGH"); !errors.Is(err, emulator.ErrNoLinkCode) {
			t.Fatalf("EnterLinkCode after a refused hello: %v", err)
		}
		if st := srv.Stats(); st.LinkCodeRequests != 0 || st.LinkCodeFailures != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestLinkControlAPI(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{})
	base := strings.TrimSuffix(srv.URL(), emulator.ChatPath)
	base = "http" + strings.TrimPrefix(base, "ws")
	for _, tt := range []struct {
		body string
		want int
	}{
		{`{"phone":"+15557654321","code":"ABCD-EFG"}`, http.StatusBadRequest},
		{`{"phone":"0555","code":"ABCD-EFGH"}`, http.StatusBadRequest},
		{`{"phone":"15557654321","code":"ABCD-EFGH","x":1}`, http.StatusBadRequest},
		{`{"phone":"+15557654321","code":"ABCD-EFGH"}`, http.StatusNotFound},
	} {
		if code, out := httpJSON(t, http.MethodPost, base+"/link", tt.body); code != tt.want || out["error"] == nil {
			t.Errorf("POST /link %s = %d %v, want %d", tt.body, code, out, tt.want)
		}
	}
	lc := startLink(t, srv)
	done := make(chan struct{})
	var code int
	var out map[string]any
	go func() {
		defer close(done)
		code, out = httpJSON(t, http.MethodPost, base+"/link", `{"phone":"+`+linkPhone+`","code":"`+crypto.FormatLinkCode(lc.code)+`"}`)
	}()
	fin := lc.finishWithCode(t)
	lc.c.expectResult("finish-1", "result")
	lc.d.adv = fin.ADVSecret
	id, p, err := lc.c.pairSuccess(lc.d)
	if err != nil {
		t.Fatal(err)
	}
	lc.c.send(iq(id, "result", "", node.New("pair-device-sign").WithChildren(
		node.New("device-identity", node.IntAttr("key-index", int64(p.KeyIndex))).WithBytes(p.Reply))))
	<-done
	if code != http.StatusOK || out["jid"] != lc.d.jid.String() {
		t.Fatalf("POST /link = %d %v", code, out)
	}
}
