package signal

import (
	"bytes"
	"testing"
)

// maxFuzzInput bounds the fuzzers' inputs: the parsers' loops are over
// protobuf fields and record entries, which a few KiB exercise fully.
const maxFuzzInput = 8 << 10

// FuzzParse: arbitrary bytes never panic any parser; what parses keeps
// its invariants (keys checked, the MAC and signature cut at their place),
// and Unpad never returns more than it was given.
func FuzzParse(f *testing.F) {
	v := loadVectors(f)
	f.Add(v.bytes(f, "msg"))
	f.Add(v.bytes(f, "pkmsg"))
	f.Add(append(v.bytes(f, "skmsg_signed"), make([]byte, signatureLen)...))
	f.Add((&SenderKeyDistribution{KeyID: 1, Iteration: 2, SigningKey: v.key(f, "bob_identity_pub")}).Marshal())
	f.Add([]byte{versionByte})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		if m, err := ParseSignalMessage(data); err == nil {
			if len(m.signed)+macLen != len(data) || m.signed[0]>>4 != currentVersion {
				t.Fatal("SignalMessage cut wrongly")
			}
		}
		if m, err := ParsePreKeySignalMessage(data); err == nil && m.Message == nil {
			t.Fatal("PreKeySignalMessage without its message")
		}
		if m, err := ParseSenderKeyMessage(data); err == nil && len(m.signature) != signatureLen {
			t.Fatal("SenderKeyMessage signature cut wrongly")
		}
		if d, err := ParseSenderKeyDistribution(data); err == nil {
			again, err := ParseSenderKeyDistribution(d.Marshal())
			if err != nil || *again != *d {
				t.Fatalf("distribution message does not round-trip: %v", err)
			}
		}
		if u, err := Unpad(data); err == nil && (len(u) >= len(data) || !bytes.HasPrefix(data, u)) {
			t.Fatal("Unpad did not remove a suffix")
		}
	})
}

// FuzzRecords: arbitrary bytes never panic the stored-form decoders, and
// whatever decodes encodes to the same bytes (the form is canonical).
func FuzzRecords(f *testing.F) {
	alice, bob := pairUp(f)
	if _, err := alice.receive(bob.send(f, "answer")); err != nil {
		f.Fatal(err)
	}
	for _, s := range []*Session{&alice.session, &bob.session} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	ours, err := NewSenderKey()
	if err != nil {
		f.Fatal(err)
	}
	d, _ := ours.Distribution()
	var peer SenderKey
	peer.Process(d)
	_, _ = ours.Encrypt([]byte("x"))
	m2, _ := ours.Encrypt([]byte("y"))
	if _, err := peer.Decrypt(m2); err != nil {
		f.Fatal(err)
	}
	for _, k := range []*SenderKey{ours, &peer} {
		b, _ := k.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{recordVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		var s Session
		if err := s.UnmarshalBinary(data); err == nil {
			if again, _ := s.MarshalBinary(); !bytes.Equal(again, data) {
				t.Fatal("a decoded session encodes differently")
			}
		}
		var k SenderKey
		if err := k.UnmarshalBinary(data); err == nil {
			if again, _ := k.MarshalBinary(); !bytes.Equal(again, data) {
				t.Fatal("a decoded sender key encodes differently")
			}
		}
	})
}

// FuzzDecrypt: a decryption that fails leaves the session or sender key
// as it was. (The seeds are real messages, which decrypt.)
func FuzzDecrypt(f *testing.F) {
	alice, bob := pairUp(f)
	if _, err := alice.receive(bob.send(f, "answer")); err != nil {
		f.Fatal(err)
	}
	ours, err := NewSenderKey()
	if err != nil {
		f.Fatal(err)
	}
	d, _ := ours.Distribution()
	var peer SenderKey
	peer.Process(d)
	f.Add(alice.send(f, "a").Body)
	f.Add(bob.send(f, "b").Body)
	sk, _ := ours.Encrypt([]byte("c"))
	f.Add(sk)
	session, _ := bob.session.MarshalBinary()
	senderKey, _ := peer.MarshalBinary()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzInput {
			return
		}
		var s Session
		if err := s.UnmarshalBinary(session); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Decrypt(data); err != nil {
			if after, _ := s.MarshalBinary(); !bytes.Equal(after, session) {
				t.Fatalf("a failed decryption (%v) changed the session", err)
			}
		}
		var k SenderKey
		if err := k.UnmarshalBinary(senderKey); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Decrypt(data); err != nil {
			if after, _ := k.MarshalBinary(); !bytes.Equal(after, senderKey) {
				t.Fatalf("a failed decryption (%v) changed the sender key", err)
			}
		}
	})
}
