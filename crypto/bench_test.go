package crypto

import "testing"

func BenchmarkGenerateKeyPair(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := GenerateKeyPair(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDH(b *testing.B) {
	a, _ := GenerateKeyPair()
	peer, _ := GenerateKeyPair()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.DH(peer.Pub[:]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckPublicKey is the small-order check DH and Verify add to
// every call.
func BenchmarkCheckPublicKey(b *testing.B) {
	kp, _ := GenerateKeyPair()
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckPublicKey(kp.Pub[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	kp, _ := GenerateKeyPair()
	msg := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(kp, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	kp, _ := GenerateKeyPair()
	msg := make([]byte, 100)
	sig, _ := Sign(kp, msg)
	b.ReportAllocs()
	for b.Loop() {
		if !Verify(kp.Pub[:], msg, sig[:]) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkCipherStateSealOpen1KiB(b *testing.B) {
	key := [32]byte{1}
	send, recv := newCipherState(&key), newCipherState(&key)
	msg := make([]byte, 1024)
	ct := make([]byte, 0, 1024+16)
	pt := make([]byte, 0, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		ct = send.Seal(ct[:0], msg)
		var err error
		if pt, err = recv.Open(pt[:0], ct); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is both sides of one handshake's cryptography (fresh
// ephemeral keys for both, long-term keys reused; no protobuf, no
// certificate verification).
func BenchmarkHandshake(b *testing.B) {
	cs, _ := GenerateKeyPair()
	ss, _ := GenerateKeyPair()
	prologue := []byte{0x57, 0x41, 6, 3}
	cert := make([]byte, 250)
	payload := make([]byte, 300)
	b.ReportAllocs()
	for b.Loop() {
		ce, _ := GenerateKeyPair()
		se, _ := GenerateKeyPair()
		i, r := NewInitiator(cs, ce, prologue), NewResponder(ss, se, prologue)
		if err := r.ReadClientHello(ce.Pub[:]); err != nil {
			b.Fatal(err)
		}
		e, s, p, err := r.WriteServerHello(cert)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := i.ReadServerHello(e, s, p); err != nil {
			b.Fatal(err)
		}
		fs, fp, err := i.WriteClientFinish(payload)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.ReadClientFinish(fs, fp); err != nil {
			b.Fatal(err)
		}
		i.Split()
		r.Split()
	}
}
