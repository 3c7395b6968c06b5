package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/waproto"
)

var allCertErrors = []error{
	ErrCertMalformed, ErrCertRootSignature, ErrCertIntermediateIssuer, ErrCertIntermediateKey,
	ErrCertLeafSignature, ErrCertIntermediateExpired, ErrCertLeafIssuer, ErrCertLeafKeyMismatch,
	ErrCertLeafExpired,
}

func TestWhatsAppRootKey(t *testing.T) {
	eqHex(t, "root key", WhatsAppRootKey[:], "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b")
}

// chainWindow returns a time inside both certificates' validity windows.
func chainWindow(t *testing.T, chain []byte) time.Time {
	t.Helper()
	var cc waproto.CertChain
	if err := proto.Unmarshal(chain, &cc); err != nil {
		t.Fatal(err)
	}
	var lo uint64
	for _, c := range []*waproto.CertChain_NoiseCertificate{cc.GetIntermediate(), cc.GetLeaf()} {
		var d waproto.CertChain_NoiseCertificate_Details
		if err := proto.Unmarshal(c.GetDetails(), &d); err != nil {
			t.Fatal(err)
		}
		lo = max(lo, d.GetNotBefore())
	}
	return time.Unix(int64(lo)+1, 0)
}

func TestCertChainVectors(t *testing.T) {
	var nv noiseVector
	loadVector(t, "noise_handshake.json", &nv)
	var ev e2eVector
	loadVector(t, "e2e_session.json", &ev)
	root, static := unhex(t, nv.TestRootPub), unhex(t, nv.ServerStaticPub)
	chains := map[string][]byte{
		"noise_handshake": unhex(t, nv.CertPlain),
		"e2e conn 0":      unhex(t, ev.Handshakes[0].CertPlain),
		"e2e conn 1":      unhex(t, ev.Handshakes[1].CertPlain),
	}
	for name, chain := range chains {
		t.Run(name, func(t *testing.T) {
			now := chainWindow(t, chain)
			if err := VerifyCertChain(chain, root, static, now); err != nil {
				t.Fatalf("test-root chain: %v", err)
			}
			if err := VerifyCertChain(chain, WhatsAppRootKey[:], static, now); !errors.Is(err, ErrCertRootSignature) {
				t.Fatalf("with the real root: %v, want ErrCertRootSignature", err)
			}
			if err := VerifyCertChain(chain, root, static, now.AddDate(50, 0, 0)); !errors.Is(err, ErrCertExpired) {
				t.Fatalf("50 years later: %v, want ErrCertExpired", err)
			}
		})
	}

	// The chain is made of the vector's listed parts.
	var cc waproto.CertChain
	if err := proto.Unmarshal(chains["noise_handshake"], &cc); err != nil {
		t.Fatal(err)
	}
	eqHex(t, "intermediate details", cc.GetIntermediate().GetDetails(), nv.IntermediateDetails)
	eqHex(t, "intermediate signature", cc.GetIntermediate().GetSignature(), nv.IntermediateSig)
	eqHex(t, "leaf details", cc.GetLeaf().GetDetails(), nv.LeafDetails)
	eqHex(t, "leaf signature", cc.GetLeaf().GetSignature(), nv.LeafSig)
}

func TestCertChainFailures(t *testing.T) {
	keys := make([]*KeyPair, 5)
	for i := range keys {
		kp, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = kp
	}
	root, otherRoot, inter, server, other := keys[0], keys[1], keys[2], keys[3], keys[4]
	now := time.Unix(1_760_000_000, 0)
	day := 24 * time.Hour
	good := func() (CertSpec, CertSpec) {
		return CertSpec{Serial: 7, IssuerSerial: 0, NotBefore: now.Add(-day), NotAfter: now.Add(day)},
			CertSpec{Serial: 8, IssuerSerial: 7, Key: server.Pub[:], NotBefore: now.Add(-day), NotAfter: now.Add(day)}
	}
	issue := func(t *testing.T, signRoot, signInter *KeyPair, is, ls CertSpec) []byte {
		chain, err := IssueCertChain(signRoot, signInter, is, ls)
		if err != nil {
			t.Fatal(err)
		}
		return chain
	}
	type input struct {
		chain []byte
		now   time.Time
	}
	tests := []struct {
		name  string
		build func(t *testing.T) input
		want  error // nil = valid
	}{
		{"valid", func(t *testing.T) input {
			is, ls := good()
			return input{issue(t, root, inter, is, ls), now}
		}, nil},
		{"valid at window edges", func(t *testing.T) input {
			is, ls := good()
			is.NotBefore, ls.NotAfter = now, now
			return input{issue(t, root, inter, is, ls), now}
		}, nil},
		{"garbage", func(t *testing.T) input { return input{[]byte{0xff, 0xff, 0xff}, now} }, ErrCertMalformed},
		{"empty", func(t *testing.T) input { return input{nil, now} }, ErrCertMalformed},
		{"leaf missing", func(t *testing.T) input {
			is, ls := good()
			var cc waproto.CertChain
			_ = proto.Unmarshal(issue(t, root, inter, is, ls), &cc)
			cc.Leaf = nil
			b, _ := proto.Marshal(&cc)
			return input{b, now}
		}, ErrCertMalformed},
		{"short signature", func(t *testing.T) input {
			is, ls := good()
			var cc waproto.CertChain
			_ = proto.Unmarshal(issue(t, root, inter, is, ls), &cc)
			cc.Leaf.Signature = cc.Leaf.Signature[:63]
			b, _ := proto.Marshal(&cc)
			return input{b, now}
		}, ErrCertMalformed},
		{"intermediate details not protobuf", func(t *testing.T) input {
			var cc waproto.CertChain
			details := []byte{0xff, 0xff}
			sig, _ := Sign(root, details)
			cc.Intermediate = &waproto.CertChain_NoiseCertificate{Details: details, Signature: sig[:]}
			cc.Leaf = &waproto.CertChain_NoiseCertificate{Details: details, Signature: sig[:]}
			b, _ := proto.Marshal(&cc)
			return input{b, now}
		}, ErrCertMalformed},
		{"signed by another root", func(t *testing.T) input {
			is, ls := good()
			return input{issue(t, otherRoot, inter, is, ls), now}
		}, ErrCertRootSignature},
		{"intermediate issuer serial 1", func(t *testing.T) input {
			is, ls := good()
			is.IssuerSerial = 1
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertIntermediateIssuer},
		{"intermediate key 33 bytes", func(t *testing.T) input {
			is, ls := good()
			is.Key = append(inter.Pub[:], 5)
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertIntermediateKey},
		{"leaf signed by another key", func(t *testing.T) input {
			is, ls := good()
			is.Key = other.Pub[:]
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafSignature},
		{"intermediate not yet valid", func(t *testing.T) input {
			is, ls := good()
			is.NotBefore = now.Add(time.Second)
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertIntermediateExpired},
		{"intermediate expired, leaf issuer also wrong", func(t *testing.T) input {
			is, ls := good()
			is.NotAfter = now.Add(-time.Second)
			ls.IssuerSerial = 99
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertIntermediateExpired},
		{"intermediate window unset", func(t *testing.T) input {
			is, ls := good()
			is.NotBefore, is.NotAfter = time.Time{}, time.Time{}
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertIntermediateExpired},
		{"leaf issuer serial wrong", func(t *testing.T) input {
			is, ls := good()
			ls.IssuerSerial = 0
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafIssuer},
		{"leaf key is not the server's, leaf also expired", func(t *testing.T) input {
			is, ls := good()
			ls.Key = other.Pub[:]
			ls.NotAfter = now.Add(-time.Second)
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafKeyMismatch},
		{"leaf key short", func(t *testing.T) input {
			is, ls := good()
			ls.Key = server.Pub[:31]
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafKeyMismatch},
		{"leaf expired", func(t *testing.T) input {
			is, ls := good()
			ls.NotAfter = now.Add(-time.Second)
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafExpired},
		{"leaf not yet valid", func(t *testing.T) input {
			is, ls := good()
			ls.NotBefore = now.Add(time.Second)
			return input{issue(t, root, inter, is, ls), now}
		}, ErrCertLeafExpired},
		{"clock before 1970", func(t *testing.T) input {
			is, ls := good()
			is.NotBefore = time.Time{}
			return input{issue(t, root, inter, is, ls), time.Unix(-5, 0)}
		}, ErrCertIntermediateExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.build(t)
			err := VerifyCertChain(in.chain, root.Pub[:], server.Pub[:], in.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			for _, e := range allCertErrors {
				if e != tt.want && errors.Is(err, e) {
					t.Errorf("err %v also matches %v", err, e)
				}
			}
			expiry := tt.want == ErrCertIntermediateExpired || tt.want == ErrCertLeafExpired
			if errors.Is(err, ErrCertExpired) != expiry {
				t.Errorf("errors.Is(err, ErrCertExpired) = %v, want %v", !expiry, expiry)
			}
		})
	}
}

func TestIssueCertChainLayout(t *testing.T) {
	root, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	inter, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	nb, na := time.Unix(1000, 0), time.Unix(2000, 0)
	chain, err := IssueCertChain(root, inter, CertSpec{Serial: 1, NotBefore: nb, NotAfter: na},
		CertSpec{Serial: 2, IssuerSerial: 1, Key: bytes.Repeat([]byte{9}, 32), NotBefore: nb, NotAfter: na})
	if err != nil {
		t.Fatal(err)
	}
	var cc waproto.CertChain
	if err := proto.Unmarshal(chain, &cc); err != nil {
		t.Fatal(err)
	}
	// Same field layout as the vector's intermediate: serial, issuerSerial 0, key, times.
	want := "080110001a20" + hex.EncodeToString(inter.Pub[:]) + "20e807" + "28d00f"
	eqHex(t, "intermediate details", cc.GetIntermediate().GetDetails(), want)
	if !Verify(root.Pub[:], cc.GetIntermediate().GetDetails(), cc.GetIntermediate().GetSignature()) ||
		!Verify(inter.Pub[:], cc.GetLeaf().GetDetails(), cc.GetLeaf().GetSignature()) {
		t.Fatal("issued signatures do not verify")
	}
}
