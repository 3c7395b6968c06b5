package crypto

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// TestX25519RFC7748 checks the ladder against the test vectors of RFC 7748
// section 5.2: the two single multiplications and the iterated one (k and u
// start at 9; each round k, u = X25519(k, u), k) after 1 and 1,000 rounds.
func TestX25519RFC7748(t *testing.T) {
	for _, v := range []struct{ k, u, out string }{
		{"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
			"e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
			"c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
		{"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
			"e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
			"95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
	} {
		var k, u, out [32]byte
		hex.Decode(k[:], []byte(v.k))
		hex.Decode(u[:], []byte(v.u))
		x25519(&out, &k, &u)
		if got := hex.EncodeToString(out[:]); got != v.out {
			t.Errorf("X25519(%s…, %s…) = %s, want %s", v.k[:8], v.u[:8], got, v.out)
		}
	}
	rounds := 1000
	if testing.Short() {
		rounds = 1
	}
	k, u := [32]byte{9}, [32]byte{9}
	for i := 1; i <= rounds; i++ {
		var out [32]byte
		x25519(&out, &k, &u)
		u, k = k, out
		var want string
		switch i {
		case 1:
			want = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
		case 1000:
			want = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"
		default:
			continue
		}
		if got := hex.EncodeToString(k[:]); got != want {
			t.Fatalf("after %d rounds: %s, want %s", i, got, want)
		}
	}
}

// TestX25519MatchesECDH checks the ladder against crypto/ecdh's on random
// scalars and points, with the top bit of u set in half of them (RFC 7748
// ignores it).
func TestX25519MatchesECDH(t *testing.T) {
	for i := range 200 {
		var k, u [32]byte
		rand.Read(k[:])
		peer, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		copy(u[:], peer.PublicKey().Bytes())
		if i%2 == 1 {
			u[31] |= 0x80
		}
		priv, err := ecdh.X25519().NewPrivateKey(k[:])
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ecdh.X25519().NewPublicKey(u[:])
		if err != nil {
			t.Fatal(err)
		}
		want, err := priv.ECDH(pub)
		if err != nil {
			t.Fatal(err)
		}
		var got [32]byte
		x25519(&got, &k, &u)
		if !bytes.Equal(got[:], want) {
			t.Fatalf("X25519(%x, %x) = %x, crypto/ecdh says %x", k, u, got, want)
		}
	}
}

// TestDHOfStoredHalves: a KeyPair built from stored halves (a literal)
// agrees with one derived from the private key, on both sides of a DH.
func TestDHOfStoredHalves(t *testing.T) {
	a, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	stored := &KeyPair{Pub: a.Pub, Priv: a.Priv}
	ab, err := stored.DH(b.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	ba, err := b.DH(stored.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	if ab != ba || ab == [32]byte{} {
		t.Fatalf("DH from stored halves %x, from the other side %x", ab, ba)
	}
}
