package crypto

import (
	"bytes"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The link-code vectors below were computed once, independently of this
// package, with Node.js 20's crypto module (pbkdf2Sync, createCipheriv
// aes-256-ctr and aes-256-gcm, hkdfSync, X25519 through diffieHellman) by
// testdata/linkcode/vectors.js from these fixed inputs: code bytes a5c3f01e7d;
// private keys of 32 consecutive byte values starting at 0x10 (companion
// ephemeral), 0x30 (companion identity), 0x50 (primary ephemeral), 0x70
// (primary identity); companion wrap salt from 0x90, IV the first 16 of 0xb0..;
// primary wrap salt from 0xc0, IV the first 16 of 0xe0..; bundle HKDF salt
// from 0x01, GCM nonce the first 12 of 0x21.., random R from 0x41.
const (
	lcCodeBytes    = "a5c3f01e7d"
	lcCode         = "MQ2Z18LX"
	lcCompEphPub   = "d89e3bad79437dbed9f843418304f460ff05c7fe81fe4a9577a804cb9367ff66"
	lcCompIDPub    = "34e42d4af5ef94a07a3a84201b889d4cd1a743cb27b11b6a10438a8feb8e5847"
	lcPrimEphPub   = "392d174a38b3b1beafaf1fe824870841c5fa531bc6eafdb6402c124664488c1c"
	lcPrimIDPub    = "23b7bb8c91ae008711fb12846780bcdf1e065f821bdfec49f57e7c7dcd4c4823"
	lcHelloKey     = "d37041928dce4e4311daa5987ac24876408389973bdbb13da131063dbaf0a051"
	lcHelloWrapped = "909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebffc9d6637df2e9f61aedff5e220e23fbd053560f0a9f3a6fff1c744436495b016"
	lcPrimWrapped  = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef3c1fabfe71b51b47ac2e951daddf0137e211d376f3dec6f21c58e3585ac704b8"
	lcEphShared    = "ce233c595ad997651e18a03dddcfd6d6d65ac4bccdeaa1bb7a2f0067b5356342"
	lcIDShared     = "436be988cf0004b93d7b4c35403a45d6004b6def411a14c3633af43f27a8263e"
	lcBundleKey    = "d82eec9cf35d9ce695dce15d0c72df0bb7322acab12b2b763cde560e9d122648"
	lcBundle       = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2cc14a9a7ca28a681fe5a2f0f7eb418c27dad8bea18d96ccc14a2467e3de7a9b3e8f392b91ea02f9fdd988ab7f2852937b2077fb79f83d8e3fbc3780c9f469a489cd47b8b28c6744ecdbeeae4c1126a8025c8fb1a02bd60640721b3e66297faea3fe636c41bd6d9bc756b64a4729717f5d"
	lcADVSecret    = "f12c9c198b4f16cad5615cfc7b3b8087f0a6e4d521c43c82451eb7d703368b30"
)

// run32 returns 32 consecutive byte values starting at start.
func run32(start byte) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func lcPair(t *testing.T, start byte, wantPub string) *KeyPair {
	t.Helper()
	kp, err := KeyPairFromPrivate(run32(start))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(kp.Pub[:]); got != wantPub {
		t.Fatalf("public key of the 0x%02x private key = %s, want %s", start, got, wantPub)
	}
	return kp
}

func TestLinkCodeEncoding(t *testing.T) {
	if got := linkCodeEncoding.EncodeToString(unhex(t, lcCodeBytes)); got != lcCode {
		t.Fatalf("code of %s = %s, want %s", lcCodeBytes, got, lcCode)
	}
	if FormatLinkCode(lcCode) != "MQ2Z-18LX" {
		t.Fatalf("FormatLinkCode = %q", FormatLinkCode(lcCode))
	}
	for _, typed := range []string{"MQ2Z-18LX", "mq2z18lx", "MQ2Z 18LX"} {
		if got, err := NormalizeLinkCode(typed); err != nil || got != lcCode {
			t.Errorf("NormalizeLinkCode(%q) = %q, %v", typed, got, err)
		}
	}
	for _, bad := range []string{"", "MQ2Z-18L", "MQ2Z-18LX1", "MQ2Z-18L0", "MQ2Z-18LI", "MQ2Z-18LO", "MQ2Z-18LU"} {
		if _, err := NormalizeLinkCode(bad); !errors.Is(err, ErrLinkCodeFormat) {
			t.Errorf("NormalizeLinkCode(%q) err = %v, want ErrLinkCodeFormat", bad, err)
		}
	}
	seen := map[string]bool{}
	for range 64 {
		code, err := GenerateLinkCode()
		if err != nil {
			t.Fatal(err)
		}
		if n, err := NormalizeLinkCode(code); err != nil || n != code {
			t.Fatalf("generated code %q is not a normal code: %v", code, err)
		}
		seen[code] = true
	}
	if len(seen) < 60 {
		t.Fatalf("64 generated codes have only %d distinct values", len(seen))
	}
	// The alphabet is 32 distinct characters, so every 5 bytes map to one code.
	if _, err := base32.NewEncoding(LinkCodeAlphabet).DecodeString(lcCode); err != nil {
		t.Fatal(err)
	}
}

func TestLinkCodeWrapVectors(t *testing.T) {
	key, err := linkCodeKey(lcCode, run32(0x90))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(key) != lcHelloKey {
		t.Fatalf("PBKDF2 key = %x, want %s", key, lcHelloKey)
	}
	compEph := lcPair(t, 0x10, lcCompEphPub)
	primEph := lcPair(t, 0x50, lcPrimEphPub)
	wrapped, err := wrapLinkCodeKey(lcCode, run32(0x90), run32(0xb0)[:16], compEph.Pub)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(wrapped) != lcHelloWrapped {
		t.Fatalf("wrapped companion key = %x, want %s", wrapped, lcHelloWrapped)
	}
	pub, err := UnwrapLinkCodeKey(lcCode, unhex(t, lcPrimWrapped))
	if err != nil || pub != primEph.Pub {
		t.Fatalf("UnwrapLinkCodeKey = %x, %v; want %x", pub, err, primEph.Pub)
	}
	// A wrong code gives another key (CTR has no integrity), never the right one.
	if pub, err := UnwrapLinkCodeKey("MQ2Z18LY", unhex(t, lcPrimWrapped)); err == nil && pub == primEph.Pub {
		t.Fatal("a wrong code unwrapped the right key")
	}
	if _, err := UnwrapLinkCodeKey(lcCode, unhex(t, lcPrimWrapped)[:79]); !errors.Is(err, ErrLinkCodeWrapped) {
		t.Fatalf("short wrapped key: err = %v", err)
	}
	// A wrapped key of small order is refused where it enters.
	low, err := wrapLinkCodeKey(lcCode, run32(0x90), run32(0xb0)[:16], [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnwrapLinkCodeKey(lcCode, low); !errors.Is(err, ErrLowOrderKey) {
		t.Fatalf("low-order wrapped key: err = %v, want ErrLowOrderKey", err)
	}
	// Fresh wraps use fresh salt and IV and round-trip.
	a, _ := WrapLinkCodeKey(lcCode, compEph.Pub)
	b, _ := WrapLinkCodeKey(lcCode, compEph.Pub)
	if len(a) != LinkCodeWrappedLen || bytes.Equal(a, b) {
		t.Fatalf("two wraps: %d bytes, equal %v", len(a), bytes.Equal(a, b))
	}
	if pub, err := UnwrapLinkCodeKey(lcCode, a); err != nil || pub != compEph.Pub {
		t.Fatalf("round trip = %x, %v", pub, err)
	}
}

func TestLinkCodeBundleVectors(t *testing.T) {
	compEph := lcPair(t, 0x10, lcCompEphPub)
	compID := lcPair(t, 0x30, lcCompIDPub)
	primEph := lcPair(t, 0x50, lcPrimEphPub)
	primID := lcPair(t, 0x70, lcPrimIDPub)

	ephShared, _ := compEph.DH(primEph.Pub[:])
	idShared, _ := compID.DH(primID.Pub[:])
	if hex.EncodeToString(ephShared[:]) != lcEphShared || hex.EncodeToString(idShared[:]) != lcIDShared {
		t.Fatalf("shared secrets %x %x", ephShared, idShared)
	}
	if got := linkCodeBundleKey(ephShared, run32(0x01)); hex.EncodeToString(got) != lcBundleKey {
		t.Fatalf("bundle key = %x, want %s", got, lcBundleKey)
	}
	fin, err := linkCodeCompanionFinish(lcCode, compEph, compID, unhex(t, lcPrimWrapped), primID.Pub[:],
		[32]byte(run32(0x41)), run32(0x01), run32(0x21)[:12])
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(fin.WrappedBundle) != lcBundle {
		t.Fatalf("bundle = %x\nwant     %s", fin.WrappedBundle, lcBundle)
	}
	if hex.EncodeToString(fin.ADVSecret[:]) != lcADVSecret {
		t.Fatalf("companion ADV secret = %x, want %s", fin.ADVSecret, lcADVSecret)
	}
	// The phone's side opens the vector bundle to the same secret.
	secret, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], unhex(t, lcBundle), compID.Pub[:])
	if err != nil || hex.EncodeToString(secret[:]) != lcADVSecret {
		t.Fatalf("primary ADV secret = %x, %v; want %s", secret, err, lcADVSecret)
	}
}

func TestLinkCodeFailures(t *testing.T) {
	compEph, _ := GenerateKeyPair()
	compID, _ := GenerateKeyPair()
	primEph, _ := GenerateKeyPair()
	primID, _ := GenerateKeyPair()
	code, _ := GenerateLinkCode()
	wrappedPrim, _ := WrapLinkCodeKey(code, primEph.Pub)

	fin, err := LinkCodeCompanionFinish(code, compEph, compID, wrappedPrim, primID.Pub[:])
	if err != nil {
		t.Fatal(err)
	}
	if len(fin.WrappedBundle) != LinkCodeBundleLen {
		t.Fatalf("bundle is %d bytes", len(fin.WrappedBundle))
	}
	secret, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], fin.WrappedBundle, compID.Pub[:])
	if err != nil || secret != fin.ADVSecret {
		t.Fatalf("sides disagree: %v", err)
	}

	// The phone typed another code: the companion unwraps a wrong key and
	// the bundle does not open on the phone.
	other := "11111111"
	if other == code {
		other = "22222222"
	}
	wrongPrim, _ := WrapLinkCodeKey(other, primEph.Pub)
	if fin, err := LinkCodeCompanionFinish(code, compEph, compID, wrongPrim, primID.Pub[:]); err == nil {
		if _, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], fin.WrappedBundle, compID.Pub[:]); !errors.Is(err, ErrLinkCodeBundle) {
			t.Fatalf("wrong code: primary err = %v, want ErrLinkCodeBundle", err)
		}
	}
	tampered := bytes.Clone(fin.WrappedBundle)
	tampered[60] ^= 1
	if _, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], tampered, compID.Pub[:]); !errors.Is(err, ErrLinkCodeBundle) {
		t.Fatalf("tampered bundle: err = %v", err)
	}
	if _, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], fin.WrappedBundle[:155], compID.Pub[:]); !errors.Is(err, ErrLinkCodeBundle) {
		t.Fatalf("short bundle: err = %v", err)
	}
	// companion_finish names an identity the bundle does not.
	if _, err := LinkCodePrimaryFinish(primEph, primID, compEph.Pub[:], fin.WrappedBundle, primEph.Pub[:]); !errors.Is(err, ErrLinkCodeKeys) {
		t.Fatalf("other identity: err = %v", err)
	}
	low := make([]byte, 32)
	if _, err := LinkCodeCompanionFinish(code, compEph, compID, wrappedPrim, low); !errors.Is(err, ErrLowOrderKey) {
		t.Fatalf("low-order primary identity: err = %v", err)
	}
	if _, err := LinkCodePrimaryFinish(primEph, primID, low, fin.WrappedBundle, compID.Pub[:]); !errors.Is(err, ErrLowOrderKey) {
		t.Fatalf("low-order companion ephemeral: err = %v", err)
	}
	// No error names the code.
	_, err = LinkCodeCompanionFinish(code, compEph, compID, wrappedPrim[:10], primID.Pub[:])
	if err == nil || strings.Contains(err.Error(), code) {
		t.Fatalf("error %v", err)
	}
}
