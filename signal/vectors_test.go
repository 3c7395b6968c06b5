package signal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/wafleet/wafleet/crypto"
)

// The vectors were computed once, independently of this package, by
// testdata/vectors.js with Node.js 20's crypto module (X25519 through
// diffieHellman, hkdfSync, createHmac, aes-256-cbc) and a hand-written
// protobuf writer; vectors.json is its output. Private keys are 32
// consecutive byte values from: Alice's identity 0x10, Bob's identity 0x30,
// Bob's signed prekey 0x50 (ID 7), Bob's one-time prekey 0x70 (ID 42),
// Alice's base key 0x90, Alice's first ratchet key 0xb0; Alice's
// registration ID 0x1234. The sender key's chain key runs from 0xe0, its ID
// is 0x01020304. Node cannot make XEdDSA signatures, so the sender-key vector
// stops before the signature.
type vectors map[string]string

func loadVectors(t testing.TB) vectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v vectors) bytes(t testing.TB, name string) []byte {
	t.Helper()
	s, ok := v[name]
	if !ok {
		t.Fatalf("no vector %q", name)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v vectors) key(t testing.TB, name string) [32]byte {
	t.Helper()
	b := v.bytes(t, name)
	if len(b) != 32 {
		t.Fatalf("vector %q has %d bytes", name, len(b))
	}
	return [32]byte(b)
}

func (v vectors) check(t *testing.T, name string, got []byte) {
	t.Helper()
	if want := v.bytes(t, name); !bytes.Equal(got, want) {
		t.Errorf("%s = %x, want %x", name, got, want)
	}
}

// run32 returns 32 consecutive byte values starting at start.
func run32(start byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func pair(t testing.TB, start byte) *crypto.KeyPair {
	t.Helper()
	kp, err := crypto.KeyPairFromPrivate(run32(start))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// vectorKeys are the fixed key pairs of the vectors.
type vectorKeys struct {
	aliceID, bobID, bobSPK, bobOPK, aliceBase, aliceRatchet *crypto.KeyPair
}

func newVectorKeys(t *testing.T, v vectors) vectorKeys {
	k := vectorKeys{
		aliceID: pair(t, 0x10), bobID: pair(t, 0x30), bobSPK: pair(t, 0x50),
		bobOPK: pair(t, 0x70), aliceBase: pair(t, 0x90), aliceRatchet: pair(t, 0xb0),
	}
	for name, kp := range map[string]*crypto.KeyPair{
		"alice_identity_pub": k.aliceID, "bob_identity_pub": k.bobID, "bob_signed_prekey_pub": k.bobSPK,
		"bob_one_time_prekey_pub": k.bobOPK, "alice_base_pub": k.aliceBase, "alice_ratchet_pub": k.aliceRatchet,
	} {
		v.check(t, name, kp.Pub[:])
	}
	return k
}

// bobBundle is Bob's bundle of the vectors, its signature made here.
func (k vectorKeys) bobBundle(t *testing.T, withOPK bool) *Bundle {
	b := &Bundle{RegistrationID: 0x5678, IdentityKey: k.bobID.Pub, SignedPreKeyID: 7, SignedPreKey: k.bobSPK.Pub}
	sig, err := crypto.Sign(k.bobID, SerializeKey(k.bobSPK.Pub))
	if err != nil {
		t.Fatal(err)
	}
	b.SignedPreKeySignature = sig
	if withOPK {
		b.PreKeyID, b.PreKey = 42, &k.bobOPK.Pub
	}
	return b
}

func TestKDFVectors(t *testing.T) {
	v := loadVectors(t)
	k := newVectorKeys(t, v)
	dh := func(a *crypto.KeyPair, b *crypto.KeyPair) [32]byte {
		out, err := a.DH(b.Pub[:])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	dh1, dh2, dh3, dh4 := dh(k.aliceID, k.bobSPK), dh(k.aliceBase, k.bobID), dh(k.aliceBase, k.bobSPK), dh(k.aliceBase, k.bobOPK)
	v.check(t, "dh1", dh1[:])
	v.check(t, "dh4", dh4[:])

	root, ck := x3dh(dh1, dh2, dh3, dh4)
	v.check(t, "x3dh4_root", root[:])
	v.check(t, "x3dh4_chain", ck[:])
	root3, ck3 := x3dh(dh1, dh2, dh3)
	v.check(t, "x3dh3_root", root3[:])
	v.check(t, "x3dh3_chain", ck3[:])

	dh5 := dh(k.aliceRatchet, k.bobSPK)
	v.check(t, "ratchet_dh", dh5[:])
	nextRoot, sendCK := rootStep(&root, &dh5)
	v.check(t, "ratchet_root", nextRoot[:])
	v.check(t, "ratchet_chain", sendCK[:])

	seed0, ck1 := chainStep(&sendCK)
	v.check(t, "seed0", seed0[:])
	v.check(t, "chain1", ck1[:])
	seed1, ck2 := chainStep(&ck1)
	v.check(t, "seed1", seed1[:])
	v.check(t, "chain2", ck2[:])

	mk := deriveMessageKeys(&seed0)
	v.check(t, "message_cipher_key", mk.cipher[:])
	v.check(t, "message_mac_key", mk.mac[:])
	v.check(t, "message_iv", mk.iv[:])
	ct := cbcEncrypt(&mk.cipher, &mk.iv, v.bytes(t, "plaintext"))
	v.check(t, "ciphertext", ct)
	pt, err := cbcDecrypt(&mk.cipher, &mk.iv, ct)
	if err != nil {
		t.Fatal(err)
	}
	v.check(t, "plaintext", pt)

	skCK := v.key(t, "sender_chain_key")
	skSeed, skNext := chainStep(&skCK)
	v.check(t, "sender_seed0", skSeed[:])
	v.check(t, "sender_chain1", skNext[:])
	iv, key := senderMessageKeys(&skSeed)
	v.check(t, "sender_iv", iv[:])
	v.check(t, "sender_cipher_key", key[:])
	v.check(t, "sender_ciphertext", cbcEncrypt(&key, &iv, v.bytes(t, "sender_plaintext")))
}

// TestMACVector checks the MAC and its truncation: the 8 bytes are the
// start of the full HMAC, and a message differing in any of them fails.
func TestMACVector(t *testing.T) {
	v := loadVectors(t)
	k := newVectorKeys(t, v)
	msg := v.bytes(t, "msg")
	m, err := ParseSignalMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	macKey := v.key(t, "message_mac_key")
	if !m.verifyMAC(&macKey, &k.aliceID.Pub, &k.bobID.Pub) {
		t.Fatal("the vector's MAC does not verify")
	}
	if m.verifyMAC(&macKey, &k.bobID.Pub, &k.aliceID.Pub) {
		t.Fatal("the MAC verifies with the identities swapped")
	}
	v.check(t, "mac", m.mac[:])
	for i := range macLen {
		bad := bytes.Clone(msg)
		bad[len(bad)-macLen+i] ^= 1
		m, err := ParseSignalMessage(bad)
		if err != nil {
			t.Fatal(err)
		}
		if m.verifyMAC(&macKey, &k.aliceID.Pub, &k.bobID.Pub) {
			t.Fatalf("MAC byte %d flipped still verifies", i)
		}
	}
}

// TestInitiatorVector: Alice's session from Bob's bundle, with the
// vectors' base and ratchet keys, sends exactly the vectors' pkmsg.
func TestInitiatorVector(t *testing.T) {
	v := loadVectors(t)
	k := newVectorKeys(t, v)
	st, err := initiatorState(LocalIdentity{Key: k.aliceID, RegistrationID: 0x1234}, k.bobBundle(t, true), k.aliceBase, k.aliceRatchet)
	if err != nil {
		t.Fatal(err)
	}
	s := &Session{states: []*sessionState{st}}
	ct, err := s.Encrypt(v.bytes(t, "plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	if ct.Type != TypePreKey || ct.Type.String() != "pkmsg" {
		t.Fatalf("type = %v, want pkmsg", ct.Type)
	}
	v.check(t, "pkmsg", ct.Body)
}

// TestResponderVector: Bob decrypts the vectors' pkmsg, then answers, and
// Alice (built from the same keys) reads the answer: the two sides agree.
func TestResponderVector(t *testing.T) {
	v := loadVectors(t)
	k := newVectorKeys(t, v)
	m, err := ParsePreKeySignalMessage(v.bytes(t, "pkmsg"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.HasPreKeyID || m.PreKeyID != 42 || m.SignedPreKeyID != 7 || m.RegistrationID != 0x1234 ||
		m.BaseKey != k.aliceBase.Pub || m.IdentityKey != k.aliceID.Pub || m.Message.Counter != 0 {
		t.Fatalf("parsed pkmsg = %+v", m)
	}
	bobLocal := LocalIdentity{Key: k.bobID, RegistrationID: 0x5678}
	var bob Session
	// Without the one-time prekey it names, nothing is built.
	if _, err := bob.DecryptPreKey(m, ResponderKeys{Local: bobLocal, SignedPreKey: k.bobSPK}); !errors.Is(err, ErrMissingPreKey) {
		t.Fatalf("without the one-time prekey: %v, want ErrMissingPreKey", err)
	}
	// With the wrong signed prekey, the MAC fails and nothing is built.
	if _, err := bob.DecryptPreKey(m, ResponderKeys{Local: bobLocal, SignedPreKey: k.bobOPK, PreKey: k.bobOPK}); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("with the wrong signed prekey: %v, want ErrBadMAC", err)
	}
	if bob.HasCurrent() {
		t.Fatal("a failed pkmsg left a session")
	}
	keys := ResponderKeys{Local: bobLocal, SignedPreKey: k.bobSPK, PreKey: k.bobOPK}
	pt, err := bob.DecryptPreKey(m, keys)
	if err != nil {
		t.Fatal(err)
	}
	v.check(t, "plaintext", pt)
	// The same pkmsg again: the state is found by its base key, and the
	// message key is used already.
	if _, err := bob.DecryptPreKey(m, ResponderKeys{}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("repeated pkmsg: %v, want ErrDuplicate", err)
	}
	if id, ok := bob.RemoteIdentity(); !ok || id != k.aliceID.Pub {
		t.Fatal("Bob's session does not carry Alice's identity")
	}

	st, err := initiatorState(LocalIdentity{Key: k.aliceID, RegistrationID: 0x1234}, k.bobBundle(t, true), k.aliceBase, k.aliceRatchet)
	if err != nil {
		t.Fatal(err)
	}
	alice := &Session{states: []*sessionState{st}}
	if _, err := alice.Encrypt([]byte("first")); err != nil {
		t.Fatal(err)
	}
	reply, err := bob.Encrypt([]byte("hi alice"))
	if err != nil || reply.Type != TypeMsg {
		t.Fatalf("Bob's reply: %v, %v", reply.Type, err)
	}
	got, err := alice.Decrypt(reply.Body)
	if err != nil || string(got) != "hi alice" {
		t.Fatalf("Alice reads %q, %v", got, err)
	}
	next, err := alice.Encrypt([]byte("after the answer"))
	if err != nil || next.Type != TypeMsg {
		t.Fatalf("after Bob's answer Alice sends %v, %v; want msg", next.Type, err)
	}
}

// TestSenderKeyVector: a sender key at the vectors' chain key encrypts to
// the vectors' skmsg (before its signature), which a peer that processed
// its distribution message decrypts.
func TestSenderKeyVector(t *testing.T) {
	v := loadVectors(t)
	ours := &SenderKey{states: []*senderKeyState{{
		id: 0x01020304, signing: *pair(t, 0x11), ours: true,
		keyChain: keyChain{chain: chain{key: v.key(t, "sender_chain_key")}},
	}}}
	d, err := ours.Distribution()
	if err != nil {
		t.Fatal(err)
	}
	var peer SenderKey
	peer.Process(d)
	body, err := ours.Encrypt(v.bytes(t, "sender_plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	v.check(t, "skmsg_signed", body[:len(body)-signatureLen])
	pt, err := peer.Decrypt(body)
	if err != nil {
		t.Fatal(err)
	}
	v.check(t, "sender_plaintext", pt)
}
