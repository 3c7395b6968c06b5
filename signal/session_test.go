package signal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
)

// tester is what the helpers need of a *testing.T or a *rapid.T.
type tester interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// device is one side of a test conversation: its keys and its record of
// the session with the other side.
type device struct {
	local   LocalIdentity
	spk     *crypto.KeyPair
	opk     *crypto.KeyPair
	session Session
}

func newDevice(t tester, regID uint32) *device {
	t.Helper()
	gen := func() *crypto.KeyPair {
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	return &device{local: LocalIdentity{Key: gen(), RegistrationID: regID}, spk: gen(), opk: gen()}
}

func (d *device) bundle(t tester) *Bundle {
	t.Helper()
	sig, err := crypto.Sign(d.local.Key, SerializeKey(d.spk.Pub))
	if err != nil {
		t.Fatal(err)
	}
	return &Bundle{
		RegistrationID: d.local.RegistrationID, IdentityKey: d.local.Key.Pub,
		SignedPreKeyID: 1, SignedPreKey: d.spk.Pub, SignedPreKeySignature: sig,
		PreKeyID: 9, PreKey: &d.opk.Pub,
	}
}

// receive decrypts a ciphertext of either type, as a receive path would.
func (d *device) receive(c Ciphertext) ([]byte, error) {
	if c.Type == TypeMsg {
		return d.session.Decrypt(c.Body)
	}
	m, err := ParsePreKeySignalMessage(c.Body)
	if err != nil {
		return nil, err
	}
	return d.session.DecryptPreKey(m, ResponderKeys{Local: d.local, SignedPreKey: d.spk, PreKey: d.opk})
}

func (d *device) send(t tester, text string) Ciphertext {
	t.Helper()
	c, err := d.session.Encrypt([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pairUp returns Alice, who initiated with Bob's bundle, and Bob, who read
// her first message.
func pairUp(t tester) (alice, bob *device) {
	t.Helper()
	alice, bob = newDevice(t, 1), newDevice(t, 2)
	if err := alice.session.Initiate(alice.local, bob.bundle(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.receive(alice.send(t, "hello")); err != nil || string(got) != "hello" {
		t.Fatalf("Bob reads %q, %v", got, err)
	}
	return alice, bob
}

func TestCBC(t *testing.T) {
	key, iv := [32]byte{1}, [16]byte{2}
	for n := range 50 {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ct := cbcEncrypt(&key, &iv, pt)
		if len(ct) != (n/16+1)*16 {
			t.Fatalf("%d bytes encrypt to %d", n, len(ct))
		}
		got, err := cbcDecrypt(&key, &iv, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("round trip of %d bytes: %x, %v", n, got, err)
		}
	}
	for _, n := range []int{0, 1, 15, 17} {
		if _, err := cbcDecrypt(&key, &iv, make([]byte, n)); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%d-byte ciphertext: %v, want ErrDecrypt", n, err)
		}
	}
	// Last blocks whose padding is wrong: a count of 0, one above 16, and
	// bytes that disagree with the count.
	block, _ := aes.NewCipher(key[:])
	for _, last := range [][]byte{
		append(bytes.Repeat([]byte{'a'}, 15), 0),
		append(bytes.Repeat([]byte{'a'}, 15), 17),
		append(bytes.Repeat([]byte{'a'}, 14), 3, 2),
		append(append(bytes.Repeat([]byte{'a'}, 12), 3), 4, 4, 4),
	} {
		ct := make([]byte, 16)
		cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(ct, last)
		if _, err := cbcDecrypt(&key, &iv, ct); !errors.Is(err, ErrDecrypt) {
			t.Errorf("last block %x: %v, want ErrDecrypt", last, err)
		}
	}
	ct := make([]byte, 16)
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(ct, bytes.Repeat([]byte{16}, 16))
	if got, err := cbcDecrypt(&key, &iv, ct); err != nil || len(got) != 0 {
		t.Fatalf("a whole block of padding: %x, %v", got, err)
	}
}

func TestPadding(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		msg := []byte("message")
		p := Pad(msg)
		n := len(p) - len(msg)
		if n < 1 || n > 16 || !bytes.Equal(p[:len(msg)], msg) || !bytes.Equal(p[len(msg):], bytes.Repeat([]byte{byte(n)}, n)) {
			t.Fatalf("Pad = %x", p)
		}
		seen[n] = true
		got, err := Unpad(p)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Unpad(%x) = %x, %v", p, got, err)
		}
	}
	if len(seen) != 16 {
		t.Fatalf("2000 paddings used %d of the 16 lengths", len(seen))
	}
	for _, ok := range [][]byte{{1}, {'a', 1}, bytes.Repeat([]byte{17}, 17), append([]byte{'x'}, bytes.Repeat([]byte{255}, 255)...)} {
		if _, err := Unpad(ok); err != nil {
			t.Errorf("Unpad(%x): %v", ok, err)
		}
	}
	for _, bad := range [][]byte{nil, {0}, {'a', 0}, {2}, {'a', 3, 3}, {'a', 1, 2, 2, 3}} {
		if _, err := Unpad(bad); !errors.Is(err, ErrBadPadding) {
			t.Errorf("Unpad(%x) = %v, want ErrBadPadding", bad, err)
		}
	}
}

// lowOrderKey is a key of small order (the u-coordinate 0) in wire form.
var lowOrderKey = append([]byte{keyType}, make([]byte, 32)...)

func TestParseErrors(t *testing.T) {
	v := loadVectors(t)
	msg, pkmsg := v.bytes(t, "msg"), v.bytes(t, "pkmsg")
	good, _ := ParseSignalMessage(msg)
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{versionByte}, b...)
	}
	withMAC := func(b []byte) []byte { return append(b, make([]byte, macLen)...) }
	cases := []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  error
	}{
		{"msg short", parseMsg, msg[:macLen], ErrMalformed},
		{"msg version 2", parseMsg, append([]byte{0x22}, msg[1:]...), ErrVersion},
		{"msg version 4", parseMsg, append([]byte{0x43}, msg[1:]...), ErrVersion},
		{"msg bad protobuf", parseMsg, withMAC([]byte{versionByte, 0xff}), ErrMalformed},
		{"msg no ratchet key", parseMsg, withMAC(marshal(&waproto.SignalMessage{Ciphertext: []byte{1}})), ErrMalformed},
		{"msg no ciphertext", parseMsg, withMAC(marshal(&waproto.SignalMessage{RatchetKey: SerializeKey(good.RatchetKey)})), ErrMalformed},
		{"msg 32-byte key", parseMsg, withMAC(marshal(&waproto.SignalMessage{RatchetKey: good.RatchetKey[:], Ciphertext: []byte{1}})), ErrMalformed},
		{"msg low-order key", parseMsg, withMAC(marshal(&waproto.SignalMessage{RatchetKey: lowOrderKey, Ciphertext: []byte{1}})), crypto.ErrLowOrderKey},
		{"pkmsg empty", parsePkmsg, nil, ErrMalformed},
		{"pkmsg version", parsePkmsg, append([]byte{0x13}, pkmsg[1:]...), ErrVersion},
		{"pkmsg low-order base key", parsePkmsg, marshal(&waproto.PreKeySignalMessage{BaseKey: lowOrderKey, IdentityKey: SerializeKey(good.RatchetKey), Message: msg}), crypto.ErrLowOrderKey},
		{"pkmsg no identity", parsePkmsg, marshal(&waproto.PreKeySignalMessage{BaseKey: SerializeKey(good.RatchetKey), Message: msg}), ErrMalformed},
		{"pkmsg bad inner", parsePkmsg, marshal(&waproto.PreKeySignalMessage{BaseKey: SerializeKey(good.RatchetKey), IdentityKey: SerializeKey(good.RatchetKey), Message: msg[:3]}), ErrMalformed},
		{"skmsg short", parseSkmsg, make([]byte, signatureLen), ErrMalformed},
		{"skmsg version", parseSkmsg, append([]byte{0x23}, make([]byte, signatureLen)...), ErrVersion},
		{"skmsg no ciphertext", parseSkmsg, append(marshal(&waproto.SenderKeyMessage{Id: proto.Uint32(1)}), make([]byte, signatureLen)...), ErrMalformed},
		{"skdm short chain key", parseSkdm, marshal(&waproto.SenderKeyDistributionMessage{ChainKey: make([]byte, 31), SigningKey: SerializeKey(good.RatchetKey)}), ErrMalformed},
		{"skdm low-order signing key", parseSkdm, marshal(&waproto.SenderKeyDistributionMessage{ChainKey: make([]byte, 32), SigningKey: lowOrderKey}), crypto.ErrLowOrderKey},
		{"skdm empty", parseSkdm, nil, ErrMalformed},
	}
	for _, c := range cases {
		if err := c.parse(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func parseMsg(b []byte) error   { _, err := ParseSignalMessage(b); return err }
func parsePkmsg(b []byte) error { _, err := ParsePreKeySignalMessage(b); return err }
func parseSkmsg(b []byte) error { _, err := ParseSenderKeyMessage(b); return err }
func parseSkdm(b []byte) error  { _, err := ParseSenderKeyDistribution(b); return err }

func TestInitiateChecksTheBundle(t *testing.T) {
	alice, bob := newDevice(t, 1), newDevice(t, 2)
	b := bob.bundle(t)
	b.SignedPreKeySignature[0] ^= 1
	if err := alice.session.Initiate(alice.local, b); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	b = bob.bundle(t)
	b.PreKey = &[32]byte{} // of small order
	if err := alice.session.Initiate(alice.local, b); !errors.Is(err, crypto.ErrLowOrderKey) {
		t.Fatalf("low-order one-time prekey: %v", err)
	}
	if alice.session.HasCurrent() {
		t.Fatal("a refused bundle left a session")
	}
	// Without a one-time prekey: three DH, and the pkmsg names none.
	b = bob.bundle(t)
	b.PreKey = nil
	if err := alice.session.Initiate(alice.local, b); err != nil {
		t.Fatal(err)
	}
	c := alice.send(t, "no opk")
	m, err := ParsePreKeySignalMessage(c.Body)
	if err != nil || m.HasPreKeyID {
		t.Fatalf("pkmsg without a one-time prekey: %+v, %v", m, err)
	}
	if _, err := bob.session.DecryptPreKey(m, ResponderKeys{Local: bob.local, SignedPreKey: bob.spk, PreKey: bob.opk}); !errors.Is(err, ErrMissingPreKey) {
		t.Fatalf("a one-time prekey the message does not name: %v", err)
	}
	got, err := bob.session.DecryptPreKey(m, ResponderKeys{Local: bob.local, SignedPreKey: bob.spk})
	if err != nil || string(got) != "no opk" {
		t.Fatalf("Bob reads %q, %v", got, err)
	}
}

func TestConversation(t *testing.T) {
	alice, bob := pairUp(t)
	// Until Bob answers, Alice repeats the prekey message, which Bob's
	// session was built from: it decrypts without his prekeys.
	if c := alice.send(t, "again"); c.Type != TypePreKey {
		t.Fatalf("before an answer Alice sends %v", c.Type)
	} else if m, err := ParsePreKeySignalMessage(c.Body); err != nil || !bob.session.Built(m) {
		t.Fatalf("Bob's session was not built from Alice's repeated prekey message (%v)", err)
	} else if got, err := bob.session.DecryptPreKey(m, ResponderKeys{}); err != nil || string(got) != "again" {
		t.Fatalf("Bob reads %q, %v", got, err)
	}
	// A new session of Alice's is another base key.
	again := newDevice(t, 1)
	again.local = alice.local
	if err := again.session.Initiate(again.local, bob.bundle(t)); err != nil {
		t.Fatal(err)
	}
	if m, err := ParsePreKeySignalMessage(again.send(t, "new").Body); err != nil || bob.session.Built(m) {
		t.Fatalf("Bob's session claims a prekey message it never read (%v)", err)
	}
	for round := range 5 {
		for i := range round + 1 {
			text := fmt.Sprintf("bob %d.%d", round, i)
			if got, err := alice.receive(bob.send(t, text)); err != nil || string(got) != text {
				t.Fatalf("Alice reads %q, %v", got, err)
			}
		}
		text := fmt.Sprintf("alice %d", round)
		c := alice.send(t, text)
		if c.Type != TypeMsg {
			t.Fatalf("after Bob's answer Alice sends %v", c.Type)
		}
		if got, err := bob.receive(c); err != nil || string(got) != text {
			t.Fatalf("Bob reads %q, %v", got, err)
		}
	}
}

func TestOutOfOrderAndReplay(t *testing.T) {
	alice, bob := pairUp(t)
	msgs := make([]Ciphertext, 5)
	for i := range msgs {
		msgs[i] = alice.send(t, fmt.Sprint(i))
	}
	for _, i := range []int{3, 0, 4, 2, 1} {
		if got, err := bob.receive(msgs[i]); err != nil || string(got) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
	}
	for i := range msgs {
		if _, err := bob.receive(msgs[i]); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("replay of %d: %v, want ErrDuplicate", i, err)
		}
	}
	// A tampered message changes nothing: the real one decrypts after.
	// (Once Bob has answered: a pkmsg's outer fields are not under the MAC.)
	if _, err := alice.receive(bob.send(t, "answer")); err != nil {
		t.Fatal(err)
	}
	c := alice.send(t, "x")
	bad := Ciphertext{Type: c.Type, Body: bytes.Clone(c.Body)}
	bad.Body[len(bad.Body)-1] ^= 1
	if _, err := bob.receive(bad); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("tampered message: %v, want ErrBadMAC", err)
	}
	if got, err := bob.receive(c); err != nil || string(got) != "x" {
		t.Fatalf("after a tampered copy: %q, %v", got, err)
	}
}

func TestSkipBounds(t *testing.T) {
	alice, bob := pairUp(t) // Bob has used counter 0 of Alice's chain
	var msgs []Ciphertext
	for i := range 2*MaxSkip + 2 {
		msgs = append(msgs, alice.send(t, fmt.Sprint(i+1)))
	}
	// msgs[i] has counter i+1 and Bob's chain is at 1: msgs[i] is i ahead.
	if _, err := bob.receive(msgs[MaxSkip+1]); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("%d ahead: %v, want ErrTooFarAhead", MaxSkip+1, err)
	}
	if got, err := bob.receive(msgs[MaxSkip]); err != nil || string(got) != fmt.Sprint(MaxSkip+1) {
		t.Fatalf("%d ahead: %q, %v", MaxSkip, got, err)
	}
	// The keys of counters 1..2000 are kept; MaxSkip ahead again, 2000
	// more skipped: the oldest go, and their messages are lost.
	if got, err := bob.receive(msgs[2*MaxSkip+1]); err != nil || string(got) != fmt.Sprint(2*MaxSkip+2) {
		t.Fatalf("second jump: %q, %v", got, err)
	}
	st := bob.session.states[0]
	if n := len(st.receivers[len(st.receivers)-1].skipped); n != MaxSkippedKeys {
		t.Fatalf("%d skipped keys kept, want %d", n, MaxSkippedKeys)
	}
	if _, err := bob.receive(msgs[0]); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("an evicted key: %v, want ErrDuplicate", err)
	}
	if got, err := bob.receive(msgs[2*MaxSkip-1]); err != nil || string(got) != fmt.Sprint(2*MaxSkip) {
		t.Fatalf("a kept key: %q, %v", got, err)
	}
}

func TestArchivedStates(t *testing.T) {
	alice, bob := pairUp(t)
	old := bob.send(t, "under the old session")
	// Alice starts over (a new session from a fresh bundle): Bob's
	// message under the old one still decrypts, from the archive, and the
	// old state becomes current again.
	bob.opk, _ = crypto.GenerateKeyPair()
	if err := alice.session.Initiate(alice.local, bob.bundle(t)); err != nil {
		t.Fatal(err)
	}
	newState := alice.session.states[0]
	if got, err := alice.receive(old); err != nil || string(got) != "under the old session" {
		t.Fatalf("old-session message: %q, %v", got, err)
	}
	if alice.session.states[1] != newState {
		t.Fatal("decrypting under an archived state did not promote it")
	}
	// At most MaxArchivedStates archived states are kept.
	for range MaxArchivedStates + 3 {
		if err := alice.session.Initiate(alice.local, bob.bundle(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(alice.session.states); n != 1+MaxArchivedStates {
		t.Fatalf("%d states kept, want %d", n, 1+MaxArchivedStates)
	}
}

func TestNoSession(t *testing.T) {
	var s Session
	if _, err := s.Encrypt([]byte("x")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Encrypt: %v", err)
	}
	v := loadVectors(t)
	if _, err := s.Decrypt(v.bytes(t, "msg")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Decrypt: %v", err)
	}
}

func TestSenderKey(t *testing.T) {
	ours, err := NewSenderKey()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ours.Distribution()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseSenderKeyDistribution(d.Marshal())
	if err != nil || *parsed != *d {
		t.Fatalf("distribution round trip: %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v %s", *d, *d, *d, d); strings.Contains(s, hex.EncodeToString(d.ChainKey[:4])) {
		t.Fatalf("the chain key is printed: %s", s)
	}
	var peer SenderKey
	peer.Process(parsed)
	if _, err := peer.Encrypt([]byte("x")); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("encrypting with a peer's key: %v", err)
	}
	m1, _ := ours.Encrypt([]byte("one"))
	m2, _ := ours.Encrypt([]byte("two"))
	if got, err := peer.Decrypt(m2); err != nil || string(got) != "two" {
		t.Fatalf("m2: %q, %v", got, err)
	}
	// A repeated distribution message does not move the chain back.
	peer.Process(parsed)
	if _, err := peer.Decrypt(m2); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("m2 again after a repeated distribution: %v, want ErrDuplicate", err)
	}
	bad := bytes.Clone(m1)
	bad[len(bad)-1] ^= 1
	if _, err := peer.Decrypt(bad); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad signature: %v", err)
	}
	if got, err := peer.Decrypt(m1); err != nil || string(got) != "one" {
		t.Fatalf("m1: %q, %v", got, err)
	}
	// Another key ID is unknown until its distribution message comes; at
	// most MaxSenderKeyStates are kept, the newest.
	var other [MaxSenderKeyStates]*SenderKey
	for i := range other {
		if other[i], err = NewSenderKey(); err != nil {
			t.Fatal(err)
		}
		if other[i].states[0].id == ours.states[0].id {
			t.Skip("two random key IDs collided")
		}
	}
	var dists [MaxSenderKeyStates]*SenderKeyDistribution
	for i := range other {
		dists[i], _ = other[i].Distribution()
	}
	m, _ := other[0].Encrypt([]byte("other"))
	if _, err := peer.Decrypt(m); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("unknown key ID: %v", err)
	}
	for _, d := range dists {
		peer.Process(d)
	}
	if got, err := peer.Decrypt(m); err != nil || string(got) != "other" {
		t.Fatalf("after its distribution: %q, %v", got, err)
	}
	m3, _ := ours.Encrypt([]byte("three"))
	if _, err := peer.Decrypt(m3); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("the oldest of %d states was kept: %v", MaxSenderKeyStates+1, err)
	}
	// The same key ID with another signing key replaces the state.
	forged := *parsed
	forged.SigningKey = other[1].states[0].signing.Pub
	peer.Process(&forged)
	if n := len(peer.states); n != MaxSenderKeyStates {
		t.Fatalf("%d states", n)
	}
	if _, err := peer.Decrypt(m3); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("under the replaced signing key: %v", err)
	}
}

// TestErrorsCarryNoSecrets: the errors of failed decryptions name counters
// and IDs, never key bytes.
func TestErrorsCarryNoSecrets(t *testing.T) {
	alice, bob := pairUp(t)
	c := alice.send(t, "secret text")
	if _, err := bob.receive(c); err != nil {
		t.Fatal(err)
	}
	_, err := bob.receive(c)
	st := bob.session.states[0]
	for _, k := range [][]byte{st.root[:], st.sendRatchet.Priv[:], st.send.key[:], bob.local.Key.Priv[:]} {
		if strings.Contains(err.Error(), hex.EncodeToString(k[:4])) || strings.Contains(err.Error(), "secret text") {
			t.Fatalf("error %q carries a secret", err)
		}
	}
}

// TestReceiverChainBound: a message on one of the last MaxReceiverChains
// ratchet keys of the sender decrypts; one on an older key does not.
func TestReceiverChainBound(t *testing.T) {
	alice, bob := pairUp(t)
	m1, m2 := alice.send(t, "one"), alice.send(t, "two") // on Alice's first ratchet key
	roundTrip := func() {
		t.Helper()
		if _, err := alice.receive(bob.send(t, "ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.receive(alice.send(t, "pong")); err != nil { // a new ratchet key of Alice's
			t.Fatal(err)
		}
	}
	for range MaxReceiverChains - 1 {
		roundTrip()
	}
	if got, err := bob.receive(m1); err != nil || string(got) != "one" {
		t.Fatalf("on the oldest kept chain: %q, %v", got, err)
	}
	roundTrip()
	if _, err := bob.receive(m2); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("on a dropped chain: %v, want ErrBadMAC", err)
	}
}

// TestChainHMAC: the allocation-free HMAC of a chain step is crypto/hmac's.
func TestChainHMAC(t *testing.T) {
	for i := range 20 {
		key := [32]byte{byte(i), 0xff, byte(3 * i)}
		for _, b := range []byte{seedMessage, seedChain, 0, 0xff} {
			m := hmac.New(sha256.New, key[:])
			m.Write([]byte{b})
			if got := chainHMAC(&key, b); !bytes.Equal(got[:], m.Sum(nil)) {
				t.Fatalf("chainHMAC(%x, %x) = %x, want %x", key, b, got, m.Sum(nil))
			}
		}
	}
	if n := testing.AllocsPerRun(10, func() { chainStep(&[32]byte{}) }); n != 0 {
		t.Fatalf("a chain step allocates %v times", n)
	}
}

// DropOldestArchived forgets the oldest archived state only: the current
// one and the newer archived ones still decrypt.
func TestDropOldestArchived(t *testing.T) {
	alice, bob := pairUp(t)
	oldest := bob.send(t, "under the first session")
	if alice.session.DropOldestArchived() {
		t.Fatal("a session without archived states dropped one")
	}
	for range 2 {
		bob.opk, _ = crypto.GenerateKeyPair()
		if err := alice.session.Initiate(alice.local, bob.bundle(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := alice.session.Archived(); n != 2 {
		t.Fatalf("%d archived states, want 2", n)
	}
	current := alice.session.states[0]
	if !alice.session.DropOldestArchived() || alice.session.Archived() != 1 || alice.session.states[0] != current {
		t.Fatalf("after a drop: %d archived, current kept %t", alice.session.Archived(), alice.session.states[0] == current)
	}
	if _, err := alice.receive(oldest); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("a message under the dropped state: %v, want ErrBadMAC", err)
	}
}
