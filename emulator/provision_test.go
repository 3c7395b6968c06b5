package emulator_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/emulator/emutest"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

func provisionRequest(t *testing.T, d *testDevice, prekeys int) emulator.ProvisionRequest {
	t.Helper()
	sig, err := crypto.Sign(d.identity, append([]byte{5}, d.spk.Pub[:]...))
	if err != nil {
		t.Fatal(err)
	}
	return emulator.ProvisionRequest{
		NoisePub: d.noise.Pub, IdentityPub: d.identity.Pub, RegistrationID: d.regID,
		SignedPreKeyID: 1, SignedPreKeyPub: d.spk.Pub, SignedPreKeySig: sig, PreKeys: prekeys,
	}
}

// postProvision provisions the devices through POST /provision and sets
// their JIDs from the answer.
func postProvision(t *testing.T, srv *emulator.Server, devs []*testDevice, prekeys int) []emulator.ProvisionedJSON {
	t.Helper()
	reqs := make([]emulator.ProvisionRequest, len(devs))
	for i, d := range devs {
		reqs[i] = provisionRequest(t, d, prekeys)
	}
	body, err := emulator.ProvisionBody(reqs)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.ControlURL()+"/provision", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Devices []emulator.ProvisionedJSON `json:"devices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /provision: %d %v", resp.StatusCode, err)
	}
	if len(out.Devices) != len(devs) {
		t.Fatalf("%d devices provisioned, want %d", len(out.Devices), len(devs))
	}
	for i, p := range out.Devices {
		if devs[i].jid, err = jid.Parse(p.JID); err != nil {
			t.Fatal(err)
		}
		if devs[i].lid, err = jid.Parse(p.LID); err != nil {
			t.Fatal(err)
		}
	}
	return out.Devices
}

// A provisioned device is paired without a scan: it logs in with its noise
// key after a full handshake, holds the prekeys provisioned, carries an
// account signature that verifies, and gets pushed stanzas in day-one mode
// like a scanned one. Another noise key is still refused.
func TestProvisionedDevicesLogIn(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{Provisioning: true,
		DayOne: emulator.DayOne{Enabled: true, PushBurst: 1, PushRate: -1, PingInterval: -1, AckDeadline: -1}})
	devs := []*testDevice{newTestDevice(t), newTestDevice(t), newTestDevice(t)}
	out := postProvision(t, srv, devs, 50)
	seen := map[string]bool{}
	for i, p := range out {
		d := devs[i]
		if d.jid.Server != jid.DefaultUserServer || d.lid.Server != jid.HiddenUserServer || d.jid.Device != d.lid.Device || seen[d.jid.User] {
			t.Fatalf("device %d: %s / %s", i, p.JID, p.LID)
		}
		seen[d.jid.User] = true
		var sdi waproto.ADVSignedDeviceIdentity
		var di waproto.ADVDeviceIdentity
		if err := proto.Unmarshal(p.Account, &sdi); err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(sdi.GetDetails(), &di); err != nil {
			t.Fatal(err)
		}
		if err := crypto.VerifyADVAccountSignature(&sdi, &di, d.identity.Pub[:]); err != nil || di.GetKeyIndex() != uint32(d.jid.Device) {
			t.Fatalf("device %d: account signature: %v, key index %d", i, err, di.GetKeyIndex())
		}
	}

	c := login(t, srv, devs[0])
	c.expectTag("success")
	c.send(iq("c-1", "get", "encrypt", node.New("count")))
	// The burst of one comes before or after the answer (the pusher and
	// the reader race); it is acked either way. A 1:1 pkmsg uses up one
	// prekey.
	var res node.Node
	for pushed := false; res.Tag == "" || !pushed; {
		switch n := c.next(); {
		case n.Tag == "iq" && attr(n, "id") == "c-1":
			res = n
		case ackableTags[n.Tag]:
			c.send(emulator.AckFor(n))
			pushed = true
		}
	}
	if cnt, ok := res.Child("count"); !ok || attr(*cnt, "value") != "50" && attr(*cnt, "value") != "49" {
		t.Fatalf("count %v, want the 50 provisioned (49 after a pkmsg)", res)
	}
	emutest.WaitStats(t, srv, waitTimeout, "the ack of the pushed stanza", func(s emulator.Stats) bool { return s.AcksOK == 1 })

	impostor := newTestDevice(t)
	impostor.jid = devs[1].jid
	c2 := login(t, srv, impostor)
	if f := c2.expectTag("failure"); f.Tag != "failure" {
		t.Fatal(f)
	}

	st := srv.Stats()
	if st.Provisioned != 3 || st.Pairings != 0 || st.DevicesWithPrekeys != 3 || st.Logins != 1 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestProvisionRefusals(t *testing.T) {
	off := emutest.Start(t, emulator.Options{})
	d := newTestDevice(t)
	if _, err := off.Provision([]emulator.ProvisionRequest{provisionRequest(t, d, 0)}); !errors.Is(err, emulator.ErrProvisioningOff) {
		t.Fatalf("provision with provisioning off: %v", err)
	}
	if code, _ := httpJSON(t, http.MethodPost, off.ControlURL()+"/provision", `{"devices":[]}`); code != http.StatusForbidden {
		t.Fatalf("POST /provision with provisioning off: %d, want 403", code)
	}

	srv := emutest.Start(t, emulator.Options{Provisioning: true})
	badSig := provisionRequest(t, d, 0)
	badSig.SignedPreKeySig[0] ^= 1
	lowOrder := provisionRequest(t, d, 0)
	lowOrder.NoisePub = [32]byte{1}
	tooMany := provisionRequest(t, d, emulator.MaxPreKeysProvisioned+1)
	for name, r := range map[string]emulator.ProvisionRequest{"bad signature": badSig, "low-order key": lowOrder, "too many prekeys": tooMany} {
		if _, err := srv.Provision([]emulator.ProvisionRequest{provisionRequest(t, newTestDevice(t), 1), r}); !errors.Is(err, emulator.ErrBadProvision) {
			t.Errorf("%s: %v, want ErrBadProvision", name, err)
		}
	}
	if code, _ := httpJSON(t, http.MethodPost, srv.ControlURL()+"/provision", `{"devices":[{"noise_pub":"00"}]}`); code != http.StatusBadRequest {
		t.Fatalf("POST /provision with a short key: %d, want 400", code)
	}
	if st := srv.Stats(); st.Provisioned != 0 || len(srv.Devices()) != 0 {
		t.Fatalf("a refused batch recorded devices: %+v", st)
	}
}

// The public halves of provisioned prekeys go into bundles as an upload's
// do, oldest first; the keys beyond them are counted but have none. More
// halves than keys are refused.
func TestProvisionedPreKeysInBundles(t *testing.T) {
	srv := emutest.Start(t, emulator.Options{Provisioning: true})
	d := newTestDevice(t)
	r := provisionRequest(t, d, 3)
	var pubs [][32]byte
	for range 2 {
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, kp.Pub)
	}
	r.PreKeyPubs = pubs
	body, err := emulator.ProvisionBody([]emulator.ProvisionRequest{r})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.ControlURL()+"/provision", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Devices []emulator.ProvisionedJSON `json:"devices"`
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(out.Devices) != 1 {
		t.Fatalf("POST /provision: %d %v", resp.StatusCode, err)
	}
	dev, err := jid.Parse(out.Devices[0].JID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b, err := srv.PreKeyBundle(dev)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i < 2 && (b.PreKey == nil || b.PreKeyID != uint32(i+1) || *b.PreKey != pubs[i]):
			t.Fatalf("bundle %d: prekey %d %v, want %d", i, b.PreKeyID, b.PreKey, i+1)
		case i == 2 && b.PreKey != nil:
			t.Fatalf("bundle 3 carries prekey %d, but its public half was not provisioned", b.PreKeyID)
		}
	}
	over := provisionRequest(t, newTestDevice(t), 1)
	over.PreKeyPubs = pubs
	if _, err := srv.Provision([]emulator.ProvisionRequest{over}); !errors.Is(err, emulator.ErrBadProvision) {
		t.Fatalf("2 public halves for 1 prekey: %v", err)
	}
}
