package signal

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/wafleet/wafleet/crypto"
)

// The benchmarks of BENCHMARKS.md's "Signal primitives (issue 15)". Each
// message benchmark reports x-floor: its time over the time of the
// primitives it cannot avoid (the floor), the two run alternately in blocks
// of the same run, so that the ratio holds on a loaded machine where ns/op
// does not. Messages carry 256 bytes, a typical padded text Message.

const benchSize = 256

// interleaved times op over b.N iterations in blocks of block, running
// floor as many times after each block with the timer stopped; prepare, if
// set, readies a block with the timer stopped.
func interleaved(b *testing.B, block int, prepare func(n int), op, floor func(i int)) {
	b.ReportAllocs()
	var opT, floorT time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(block, b.N-done)
		if prepare != nil {
			b.StopTimer()
			prepare(n)
			b.StartTimer()
		}
		t0 := time.Now()
		for i := range n {
			op(i)
		}
		t1 := time.Now()
		b.StopTimer()
		t2 := time.Now()
		for i := range n {
			floor(i)
		}
		floorT += time.Since(t2)
		b.StartTimer()
		opT += t1.Sub(t0)
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(opT)/float64(floorT), "x-floor")
}

// benchFloor holds the inputs of the floors.
type benchFloor struct {
	ck        [32]byte
	pt, ct    []byte
	kp, peer  *crypto.KeyPair
	sig       [64]byte
	signedMsg []byte
}

func newBenchFloor(b *testing.B) *benchFloor {
	f := &benchFloor{ck: [32]byte{1}, pt: make([]byte, benchSize)}
	f.ct = cbcEncrypt(&f.ck, &[16]byte{}, f.pt)
	var err error
	if f.kp, err = crypto.GenerateKeyPair(); err != nil {
		b.Fatal(err)
	}
	if f.peer, err = crypto.GenerateKeyPair(); err != nil {
		b.Fatal(err)
	}
	f.signedMsg = make([]byte, benchSize+20)
	if f.sig, err = crypto.Sign(f.kp, f.signedMsg); err != nil {
		b.Fatal(err)
	}
	return f
}

// msg is the floor of one 1:1 message: a chain step (2 HMAC), the
// message-key HKDF, AES-256-CBC of the body, the MAC (HMAC).
func (f *benchFloor) msg(b *testing.B, decrypt bool) {
	seed, _ := chainStep(&f.ck)
	k := deriveMessageKeys(&seed)
	if decrypt {
		if _, err := cbcDecrypt(&k.cipher, &k.iv, f.ct); err == nil {
			b.Fatal("decrypted under the wrong key") // the floor's keys are not the ciphertext's
		}
	} else {
		cbcEncrypt(&k.cipher, &k.iv, f.pt)
	}
	truncatedMAC(&k.mac, f.ct)
}

// sk is the floor of one group message: chain step, HKDF, AES-256-CBC, and
// a signature made or checked.
func (f *benchFloor) sk(b *testing.B, decrypt bool) {
	seed, _ := chainStep(&f.ck)
	iv, key := senderMessageKeys(&seed)
	if decrypt {
		_, _ = cbcDecrypt(&key, &iv, f.ct)
		if !crypto.Verify(f.kp.Pub[:], f.signedMsg, f.sig[:]) {
			b.Fatal("invalid")
		}
	} else {
		cbcEncrypt(&key, &iv, f.pt)
		if _, err := crypto.Sign(f.kp, f.signedMsg); err != nil {
			b.Fatal(err)
		}
	}
}

func (f *benchFloor) dh(b *testing.B, n int) {
	for range n {
		if _, err := f.kp.DH(f.peer.Pub[:]); err != nil {
			b.Fatal(err)
		}
	}
}

func (f *benchFloor) keyPairs(b *testing.B, n int) {
	for range n {
		if _, err := crypto.GenerateKeyPair(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMsgEncrypt: one "msg" in an established session, steady state
// (no ratchet step).
func BenchmarkMsgEncrypt(b *testing.B) {
	alice, bob := pairUp(b)
	if _, err := alice.receive(bob.send(b, "answer")); err != nil {
		b.Fatal(err)
	}
	f := newBenchFloor(b)
	interleaved(b, 256, nil, func(int) {
		if _, err := alice.session.Encrypt(f.pt); err != nil {
			b.Fatal(err)
		}
	}, func(int) { f.msg(b, false) })
}

// BenchmarkMsgDecrypt: one "msg" received in order on a known chain.
func BenchmarkMsgDecrypt(b *testing.B) {
	alice, bob := pairUp(b)
	if _, err := alice.receive(bob.send(b, "answer")); err != nil {
		b.Fatal(err)
	}
	f := newBenchFloor(b)
	msgs := make([][]byte, 256)
	interleaved(b, len(msgs), func(n int) {
		for i := range n {
			c, err := alice.session.Encrypt(f.pt)
			if err != nil {
				b.Fatal(err)
			}
			msgs[i] = c.Body
		}
	}, func(i int) {
		if _, err := bob.session.Decrypt(msgs[i]); err != nil {
			b.Fatal(err)
		}
	}, func(int) { f.msg(b, true) })
}

// BenchmarkPkmsgEncrypt: a session started from a bundle and its first
// message. Floor: the bundle's signature check, two key pairs (base and
// ratchet), five DH and a message.
func BenchmarkPkmsgEncrypt(b *testing.B) {
	alice, bob := newDevice(b, 1), newDevice(b, 2)
	bundle := bob.bundle(b)
	f := newBenchFloor(b)
	interleaved(b, 16, nil, func(int) {
		var s Session
		if err := s.Initiate(alice.local, bundle); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Encrypt(f.pt); err != nil {
			b.Fatal(err)
		}
	}, func(int) {
		if !crypto.Verify(f.kp.Pub[:], f.signedMsg, f.sig[:]) {
			b.Fatal("invalid")
		}
		f.keyPairs(b, 2)
		f.dh(b, 5)
		f.msg(b, false)
	})
}

// BenchmarkPkmsgDecrypt: a session built from a pkmsg and its message.
// Floor: four DH of X3DH, the first ratchet step's key pair and two DH, a
// message.
func BenchmarkPkmsgDecrypt(b *testing.B) {
	alice, bob := newDevice(b, 1), newDevice(b, 2)
	if err := alice.session.Initiate(alice.local, bob.bundle(b)); err != nil {
		b.Fatal(err)
	}
	c, err := alice.session.Encrypt(make([]byte, benchSize))
	if err != nil {
		b.Fatal(err)
	}
	m, err := ParsePreKeySignalMessage(c.Body)
	if err != nil {
		b.Fatal(err)
	}
	keys := ResponderKeys{Local: bob.local, SignedPreKey: bob.spk, PreKey: bob.opk}
	f := newBenchFloor(b)
	interleaved(b, 16, nil, func(int) {
		var s Session
		if _, err := s.DecryptPreKey(m, keys); err != nil {
			b.Fatal(err)
		}
	}, func(int) {
		f.keyPairs(b, 1)
		f.dh(b, 6)
		f.msg(b, true)
	})
}

// BenchmarkSkmsgEncrypt: a group message, signed.
func BenchmarkSkmsgEncrypt(b *testing.B) {
	k, err := NewSenderKey()
	if err != nil {
		b.Fatal(err)
	}
	f := newBenchFloor(b)
	interleaved(b, 64, nil, func(int) {
		if _, err := k.Encrypt(f.pt); err != nil {
			b.Fatal(err)
		}
	}, func(int) { f.sk(b, false) })
}

// BenchmarkSkmsgDecrypt: a group message received in order.
func BenchmarkSkmsgDecrypt(b *testing.B) {
	k, err := NewSenderKey()
	if err != nil {
		b.Fatal(err)
	}
	d, _ := k.Distribution()
	var peer SenderKey
	peer.Process(d)
	f := newBenchFloor(b)
	msgs := make([][]byte, 64)
	interleaved(b, len(msgs), func(n int) {
		for i := range n {
			if msgs[i], err = k.Encrypt(f.pt); err != nil {
				b.Fatal(err)
			}
		}
	}, func(i int) {
		if _, err := peer.Decrypt(msgs[i]); err != nil {
			b.Fatal(err)
		}
	}, func(int) { f.sk(b, true) })
}

// The primitives alone, for reference.

func BenchmarkPrimitiveHMAC(b *testing.B) {
	key, msg := make([]byte, 32), make([]byte, 1)
	var sum [32]byte
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		m.Sum(sum[:0])
	}
}

func BenchmarkPrimitiveHKDF80(b *testing.B) {
	seed := [32]byte{1}
	b.ReportAllocs()
	for b.Loop() {
		deriveMessageKeys(&seed)
	}
}

func BenchmarkPrimitiveAESCBC(b *testing.B) {
	key, iv := [32]byte{1}, [16]byte{2}
	pt := make([]byte, benchSize)
	b.ReportAllocs()
	for b.Loop() {
		cbcEncrypt(&key, &iv, pt)
	}
}

func BenchmarkPrimitiveX25519DH(b *testing.B) {
	f := newBenchFloor(b)
	b.ReportAllocs()
	for b.Loop() {
		f.dh(b, 1)
	}
}
