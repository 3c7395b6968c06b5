package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

type noiseStep struct {
	Step string `json:"step"`
	H    string `json:"h_after"`
	CK   string `json:"ck_after"`
}

type vectorFrame struct {
	Conn     int    `json:"conn"`
	Dir      string `json:"dir"`
	Kind     string `json:"kind"`
	FrameHex string `json:"frame_hex"`
	PlainHex string `json:"plain_hex"`
}

type noiseVector struct {
	ClientEphemeralPriv string        `json:"client_ephemeral_priv"`
	ClientEphemeralPub  string        `json:"client_ephemeral_pub"`
	ClientStaticPriv    string        `json:"client_static_priv"`
	ClientStaticPub     string        `json:"client_static_pub"`
	ServerEphemeralPriv string        `json:"server_ephemeral_priv"`
	ServerEphemeralPub  string        `json:"server_ephemeral_pub"`
	ServerStaticPriv    string        `json:"server_static_priv"`
	ServerStaticPub     string        `json:"server_static_pub"`
	TestRootPriv        string        `json:"test_root_priv"`
	TestRootPub         string        `json:"test_root_pub"`
	IntermediatePriv    string        `json:"intermediate_priv"`
	IntermediatePub     string        `json:"intermediate_pub"`
	IntermediateDetails string        `json:"intermediate_details_hex"`
	IntermediateSig     string        `json:"intermediate_signature_hex"`
	LeafDetails         string        `json:"leaf_details_hex"`
	LeafSig             string        `json:"leaf_signature_hex"`
	Prologue            string        `json:"prologue_hex"`
	ProtocolName        string        `json:"protocol_name_hex"`
	ServerStaticCT      string        `json:"server_static_ciphertext_hex"`
	CertPlain           string        `json:"cert_chain_plain_hex"`
	CertCT              string        `json:"cert_chain_ciphertext_hex"`
	ClientStaticCT      string        `json:"client_static_ciphertext_hex"`
	ClientPayloadPlain  string        `json:"client_payload_plain_hex"`
	ClientPayloadCT     string        `json:"client_payload_ciphertext_hex"`
	Steps               []noiseStep   `json:"symmetric_state_steps"`
	KeyC2S              string        `json:"transport_key_client_to_server"`
	KeyS2C              string        `json:"transport_key_server_to_client"`
	Frames              []vectorFrame `json:"frames"`
}

// traceRecorder collects h and ck after every symmetric-state operation.
type traceRecorder struct{ got [][2][32]byte }

func (r *traceRecorder) record(h, ck [32]byte) { r.got = append(r.got, [2][32]byte{h, ck}) }

func (r *traceRecorder) check(t *testing.T, want []noiseStep) {
	t.Helper()
	if len(r.got) != len(want) {
		t.Fatalf("%d symmetric-state steps, want %d", len(r.got), len(want))
	}
	for i, w := range want {
		if h := hex.EncodeToString(r.got[i][0][:]); h != w.H {
			t.Errorf("step %d %q: h = %s, want %s", i, w.Step, h, w.H)
		}
		if ck := hex.EncodeToString(r.got[i][1][:]); ck != w.CK {
			t.Errorf("step %d %q: ck = %s, want %s", i, w.Step, ck, w.CK)
		}
	}
}

func eqHex(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	if hex.EncodeToString(got) != want {
		t.Fatalf("%s\n got %x\nwant %s", what, got, want)
	}
}

// checkTransport runs the vector's transport frames of one connection
// through the two ciphers of one side; sends are sealed and compared, receives
// are opened and compared.
func checkTransport(t *testing.T, frames []vectorFrame, conn int, sendDir string, send, recv *CipherState) int {
	t.Helper()
	n := 0
	for _, f := range frames {
		if f.Conn != conn || f.PlainHex == "" {
			continue
		}
		n++
		if f.Dir == sendDir {
			eqHex(t, "sealed "+f.Kind, send.Seal(nil, unhex(t, f.PlainHex)), f.FrameHex)
			continue
		}
		plain, err := recv.Open(nil, unhex(t, f.FrameHex))
		if err != nil {
			t.Fatalf("open %s: %v", f.Kind, err)
		}
		eqHex(t, "opened "+f.Kind, plain, f.PlainHex)
	}
	return n
}

func TestNoiseProtocolName(t *testing.T) {
	var v noiseVector
	loadVector(t, "noise_handshake.json", &v)
	eqHex(t, "protocol name", NoiseProtocolName[:], v.ProtocolName)
}

func TestNoiseVectorInitiator(t *testing.T) {
	var v noiseVector
	loadVector(t, "noise_handshake.json", &v)
	var tr traceRecorder
	i := newInitiator(mustKey(t, v.ClientStaticPriv), mustKey(t, v.ClientEphemeralPriv), unhex(t, v.Prologue), tr.record)
	static, cert, err := i.ReadServerHello(unhex(t, v.ServerEphemeralPub), unhex(t, v.ServerStaticCT), unhex(t, v.CertCT))
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "server static", static[:], v.ServerStaticPub)
	eqHex(t, "cert chain", cert, v.CertPlain)
	staticCT, payloadCT, err := i.WriteClientFinish(unhex(t, v.ClientPayloadPlain))
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "client static ciphertext", staticCT, v.ClientStaticCT)
	eqHex(t, "client payload ciphertext", payloadCT, v.ClientPayloadCT)
	tr.check(t, v.Steps)

	h, ck := i.handshakeHash()
	eqHex(t, "final h", h[:], v.Steps[len(v.Steps)-1].H)
	k1, k2 := hkdf2(&ck, nil)
	eqHex(t, "c2s key", k1[:], v.KeyC2S)
	eqHex(t, "s2c key", k2[:], v.KeyS2C)

	// ClientHello and ClientFinish carry exactly these fields.
	hello, finish := unhex(t, v.Frames[0].FrameHex), unhex(t, v.Frames[2].FrameHex)
	if !bytes.Contains(hello, unhex(t, v.ClientEphemeralPub)) || !bytes.Contains(finish, staticCT) || !bytes.Contains(finish, payloadCT) {
		t.Error("handshake frames do not carry the computed fields")
	}

	send, recv := i.Split()
	if send == nil || recv == nil {
		t.Fatal("Split returned nil after a complete handshake")
	}
	if n := checkTransport(t, v.Frames, 0, "c2s", send, recv); n != 3 {
		t.Fatalf("checked %d transport frames, want 3", n)
	}
}

func TestNoiseVectorResponder(t *testing.T) {
	var v noiseVector
	loadVector(t, "noise_handshake.json", &v)
	var tr traceRecorder
	r := newResponder(mustKey(t, v.ServerStaticPriv), mustKey(t, v.ServerEphemeralPriv), unhex(t, v.Prologue), tr.record)
	if err := r.ReadClientHello(unhex(t, v.ClientEphemeralPub)); err != nil {
		t.Fatal(err)
	}
	eph, staticCT, certCT, err := r.WriteServerHello(unhex(t, v.CertPlain))
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "server ephemeral", eph, v.ServerEphemeralPub)
	eqHex(t, "server static ciphertext", staticCT, v.ServerStaticCT)
	eqHex(t, "cert ciphertext", certCT, v.CertCT)
	serverHello := unhex(t, v.Frames[1].FrameHex)
	for _, field := range [][]byte{eph, staticCT, certCT} {
		if !bytes.Contains(serverHello, field) {
			t.Error("ServerHello frame lacks a field")
		}
	}
	clientStatic, payload, err := r.ReadClientFinish(unhex(t, v.ClientStaticCT), unhex(t, v.ClientPayloadCT))
	if err != nil {
		t.Fatal(err)
	}
	eqHex(t, "client static", clientStatic[:], v.ClientStaticPub)
	eqHex(t, "client payload", payload, v.ClientPayloadPlain)
	tr.check(t, v.Steps)

	_, ck := r.handshakeHash()
	k1, k2 := hkdf2(&ck, nil)
	eqHex(t, "c2s key", k1[:], v.KeyC2S)
	eqHex(t, "s2c key", k2[:], v.KeyS2C)

	send, recv := r.Split()
	if n := checkTransport(t, v.Frames, 0, "s2c", send, recv); n != 3 {
		t.Fatalf("checked %d transport frames, want 3", n)
	}
}

type e2eVector struct {
	ClientKeys struct {
		AdvSecret    string `json:"adv_secret"`
		IdentityPriv string `json:"identity_priv"`
		IdentityPub  string `json:"identity_pub"`
		NoisePriv    string `json:"noise_priv"`
		NoisePub     string `json:"noise_pub"`
	} `json:"client_keys"`
	Handshakes []struct {
		Conn                int         `json:"conn"`
		Header              string      `json:"header_hex"`
		ClientEphemeralPub  string      `json:"client_ephemeral_pub"`
		ClientStaticPub     string      `json:"client_static_pub"`
		ServerEphemeralPriv string      `json:"server_ephemeral_priv"`
		ServerEphemeralPub  string      `json:"server_ephemeral_pub"`
		ServerStaticCT      string      `json:"server_static_ciphertext"`
		CertPlain           string      `json:"cert_chain_plain"`
		CertCT              string      `json:"cert_chain_ciphertext"`
		ClientStaticCT      string      `json:"client_static_ciphertext"`
		ClientPayloadPlain  string      `json:"client_payload_plain"`
		ClientPayloadCT     string      `json:"client_payload_ciphertext"`
		Steps               []noiseStep `json:"steps"`
		KeyC2S              string      `json:"transport_key_client_to_server"`
		KeyS2C              string      `json:"transport_key_server_to_client"`
	} `json:"handshakes"`
	Frames          []vectorFrame `json:"frames"`
	ServerStaticPub string        `json:"server_static_pub"`
	TestRootPub     string        `json:"test_root_pub"`
}

// TestNoiseE2ESessionResponder replays both connections of the recorded
// session as the server: the client's ephemeral keys are random there, but
// everything the server computes is determined by its keys.
func TestNoiseE2ESessionResponder(t *testing.T) {
	var nv noiseVector
	loadVector(t, "noise_handshake.json", &nv)
	var v e2eVector
	loadVector(t, "e2e_session.json", &v)
	if v.ServerStaticPub != nv.ServerStaticPub {
		t.Fatal("e2e server static key differs from noise_handshake.json's")
	}
	if len(v.Handshakes) != 2 {
		t.Fatalf("%d handshakes, want 2", len(v.Handshakes))
	}
	for _, hs := range v.Handshakes {
		t.Run("conn"+string(rune('0'+hs.Conn)), func(t *testing.T) {
			var tr traceRecorder
			r := newResponder(mustKey(t, nv.ServerStaticPriv), mustKey(t, hs.ServerEphemeralPriv), unhex(t, hs.Header), tr.record)
			if err := r.ReadClientHello(unhex(t, hs.ClientEphemeralPub)); err != nil {
				t.Fatal(err)
			}
			eph, staticCT, certCT, err := r.WriteServerHello(unhex(t, hs.CertPlain))
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "server ephemeral", eph, hs.ServerEphemeralPub)
			eqHex(t, "server static ciphertext", staticCT, hs.ServerStaticCT)
			eqHex(t, "cert ciphertext", certCT, hs.CertCT)
			clientStatic, payload, err := r.ReadClientFinish(unhex(t, hs.ClientStaticCT), unhex(t, hs.ClientPayloadCT))
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "client static", clientStatic[:], hs.ClientStaticPub)
			eqHex(t, "client static is the noise key", clientStatic[:], v.ClientKeys.NoisePub)
			eqHex(t, "client payload", payload, hs.ClientPayloadPlain)
			tr.check(t, hs.Steps)
			_, ck := r.handshakeHash()
			k1, k2 := hkdf2(&ck, nil)
			eqHex(t, "c2s key", k1[:], hs.KeyC2S)
			eqHex(t, "s2c key", k2[:], hs.KeyS2C)
			send, recv := r.Split()
			if n := checkTransport(t, v.Frames, hs.Conn, "s2c", send, recv); n < 5 {
				t.Fatalf("only %d transport frames checked", n)
			}
		})
	}
}

// newPair returns a fresh initiator and responder with random keys.
func newPair(t testing.TB) (*Initiator, *Responder, *KeyPair, *KeyPair) {
	t.Helper()
	keys := make([]*KeyPair, 4)
	for i := range keys {
		kp, err := GenerateKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = kp
	}
	prologue := []byte{0x57, 0x41, 6, 3}
	return NewInitiator(keys[0], keys[1], prologue), NewResponder(keys[2], keys[3], prologue), keys[0], keys[2]
}

func TestNoiseRoundTrip(t *testing.T) {
	i, r, cs, ss := newPair(t)
	if err := r.ReadClientHello(i.eph.Pub[:]); err != nil {
		t.Fatal(err)
	}
	eph, staticCT, certCT, err := r.WriteServerHello([]byte("certificate chain"))
	if err != nil {
		t.Fatal(err)
	}
	gotServer, cert, err := i.ReadServerHello(eph, staticCT, certCT)
	if err != nil {
		t.Fatal(err)
	}
	if gotServer != ss.Pub || string(cert) != "certificate chain" {
		t.Fatalf("server static %x / payload %q", gotServer, cert)
	}
	cStaticCT, payloadCT, err := i.WriteClientFinish([]byte("client payload"))
	if err != nil {
		t.Fatal(err)
	}
	gotClient, payload, err := r.ReadClientFinish(cStaticCT, payloadCT)
	if err != nil {
		t.Fatal(err)
	}
	if gotClient != cs.Pub || string(payload) != "client payload" {
		t.Fatalf("client static %x / payload %q", gotClient, payload)
	}
	ih, _ := i.handshakeHash()
	rh, _ := r.handshakeHash()
	if ih != rh {
		t.Fatal("handshake hashes differ")
	}
	cSend, cRecv := i.Split()
	sSend, sRecv := r.Split()
	for n := range 300 { // crosses counter 256
		msg := bytes.Repeat([]byte{byte(n)}, n)
		got, err := sRecv.Open(nil, cSend.Seal(nil, msg))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("c2s frame %d: %v", n, err)
		}
		got, err = cRecv.Open(nil, sSend.Seal(nil, msg))
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("s2c frame %d: %v", n, err)
		}
	}
	if cSend.Counter() != 300 || sRecv.Counter() != 300 {
		t.Fatalf("counters %d, %d", cSend.Counter(), sRecv.Counter())
	}
	// Each direction has its own key: a frame cannot be opened by its sender's peer direction.
	if _, err := cRecv.Open(nil, cSend.Seal(nil, []byte("x"))); !errors.Is(err, ErrNoiseDecrypt) {
		t.Fatalf("cross-direction open: %v", err)
	}
}

// TestStandardNoiseDoesNotMatch pins WhatsApp's deviation: with the
// standard MixHash of message 1's empty payload, the vector's ServerHello
// does not decrypt and the responder's ciphertexts differ.
func TestStandardNoiseDoesNotMatch(t *testing.T) {
	var v noiseVector
	loadVector(t, "noise_handshake.json", &v)

	i := NewInitiator(mustKey(t, v.ClientStaticPriv), mustKey(t, v.ClientEphemeralPriv), unhex(t, v.Prologue))
	i.ss.mixHash(nil) // standard Noise: MixHash(empty payload of message 1)
	_, _, err := i.ReadServerHello(unhex(t, v.ServerEphemeralPub), unhex(t, v.ServerStaticCT), unhex(t, v.CertCT))
	if !errors.Is(err, ErrNoiseDecrypt) || !strings.Contains(err.Error(), "decrypt server static") {
		t.Fatalf("standard initiator: err = %v, want a server-static decrypt failure", err)
	}

	r := NewResponder(mustKey(t, v.ServerStaticPriv), mustKey(t, v.ServerEphemeralPriv), unhex(t, v.Prologue))
	if err := r.ReadClientHello(unhex(t, v.ClientEphemeralPub)); err != nil {
		t.Fatal(err)
	}
	r.ss.mixHash(nil)
	_, staticCT, _, err := r.WriteServerHello(unhex(t, v.CertPlain))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(staticCT) == v.ServerStaticCT {
		t.Fatal("standard responder reproduced the WhatsApp ciphertext")
	}
}

func TestNoiseOutOfOrder(t *testing.T) {
	ok := func(err error) bool { return err == nil }
	isState := func(err error) bool { return errors.Is(err, ErrNoiseState) }
	tests := []struct {
		name string
		run  func(t *testing.T, i *Initiator, r *Responder) error
	}{
		{"initiator finish before server hello", func(t *testing.T, i *Initiator, r *Responder) error {
			_, _, err := i.WriteClientFinish(nil)
			return err
		}},
		{"initiator server hello twice", func(t *testing.T, i *Initiator, r *Responder) error {
			_ = r.ReadClientHello(i.eph.Pub[:])
			e, s, p, _ := r.WriteServerHello(nil)
			if _, _, err := i.ReadServerHello(e, s, p); !ok(err) {
				t.Fatal(err)
			}
			_, _, err := i.ReadServerHello(e, s, p)
			return err
		}},
		{"initiator after failure", func(t *testing.T, i *Initiator, r *Responder) error {
			if _, _, err := i.ReadServerHello(make([]byte, 31), nil, nil); !errors.Is(err, ErrNoiseLength) {
				t.Fatalf("short ephemeral: %v", err)
			}
			_, _, err := i.WriteClientFinish(nil)
			return err
		}},
		{"responder server hello before client hello", func(t *testing.T, i *Initiator, r *Responder) error {
			_, _, _, err := r.WriteServerHello(nil)
			return err
		}},
		{"responder client hello twice", func(t *testing.T, i *Initiator, r *Responder) error {
			if err := r.ReadClientHello(i.eph.Pub[:]); err != nil {
				t.Fatal(err)
			}
			return r.ReadClientHello(i.eph.Pub[:])
		}},
		{"responder finish before server hello", func(t *testing.T, i *Initiator, r *Responder) error {
			_ = r.ReadClientHello(i.eph.Pub[:])
			_, _, err := r.ReadClientFinish(nil, nil)
			return err
		}},
		{"responder after failure", func(t *testing.T, i *Initiator, r *Responder) error {
			if err := r.ReadClientHello(nil); !errors.Is(err, ErrNoiseLength) {
				t.Fatalf("nil ephemeral: %v", err)
			}
			_, _, _, err := r.WriteServerHello(nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, r, _, _ := newPair(t)
			if err := tt.run(t, i, r); !isState(err) {
				t.Fatalf("err = %v, want ErrNoiseState", err)
			}
			if s, rc := i.Split(); s != nil || rc != nil {
				t.Fatal("initiator Split before finish returned ciphers")
			}
			if s, rc := r.Split(); s != nil || rc != nil {
				t.Fatal("responder Split before finish returned ciphers")
			}
		})
	}
}

func TestNoiseSplitOnce(t *testing.T) {
	i, r, _, _ := newPair(t)
	runHandshake(t, i, r)
	if s, _ := i.Split(); s == nil {
		t.Fatal("first Split returned nil")
	}
	if s, rc := i.Split(); s != nil || rc != nil {
		t.Fatal("second initiator Split returned ciphers")
	}
	if s, _ := r.Split(); s == nil {
		t.Fatal("first responder Split returned nil")
	}
	if s, rc := r.Split(); s != nil || rc != nil {
		t.Fatal("second responder Split returned ciphers")
	}
}

func runHandshake(t testing.TB, i *Initiator, r *Responder) {
	t.Helper()
	if err := r.ReadClientHello(i.eph.Pub[:]); err != nil {
		t.Fatal(err)
	}
	e, s, p, err := r.WriteServerHello([]byte("cert"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := i.ReadServerHello(e, s, p); err != nil {
		t.Fatal(err)
	}
	cs, cp, err := i.WriteClientFinish([]byte("payload"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadClientFinish(cs, cp); err != nil {
		t.Fatal(err)
	}
}

func TestNoiseFailures(t *testing.T) {
	flip := func(b []byte) []byte {
		c := bytes.Clone(b)
		if len(c) > 0 {
			c[len(c)-1] ^= 1
		}
		return c
	}
	type hello struct{ e, s, p []byte }
	tests := []struct {
		name    string
		mutHell func(h *hello)
		mutFin  func(s, p []byte) ([]byte, []byte)
		want    error
		msg     string
	}{
		{"server static tampered", func(h *hello) { h.s = flip(h.s) }, nil, ErrNoiseDecrypt, "decrypt server static"},
		{"server payload tampered", func(h *hello) { h.p = flip(h.p) }, nil, ErrNoiseDecrypt, "decrypt server payload"},
		{"server ephemeral short", func(h *hello) { h.e = h.e[:31] }, nil, ErrNoiseLength, "server ephemeral"},
		{"server ephemeral low order", func(h *hello) { h.e = make([]byte, 32) }, nil, ErrLowOrderKey, "dh ee"},
		{"server static empty", func(h *hello) { h.s = nil }, nil, ErrNoiseDecrypt, "decrypt server static"},
		{"client static tampered", nil, func(s, p []byte) ([]byte, []byte) { return flip(s), p }, ErrNoiseDecrypt, "decrypt client static"},
		{"client payload tampered", nil, func(s, p []byte) ([]byte, []byte) { return s, flip(p) }, ErrNoiseDecrypt, "decrypt client payload"},
		{"client payload truncated", nil, func(s, p []byte) ([]byte, []byte) { return s, p[:3] }, ErrNoiseDecrypt, "decrypt client payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, r, _, _ := newPair(t)
			if err := r.ReadClientHello(i.eph.Pub[:]); err != nil {
				t.Fatal(err)
			}
			var h hello
			var err error
			if h.e, h.s, h.p, err = r.WriteServerHello([]byte("cert")); err != nil {
				t.Fatal(err)
			}
			if tt.mutHell != nil {
				tt.mutHell(&h)
			}
			_, _, err = i.ReadServerHello(h.e, h.s, h.p)
			if tt.mutHell != nil {
				assertErr(t, err, tt.want, tt.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, p, err := i.WriteClientFinish([]byte("payload"))
			if err != nil {
				t.Fatal(err)
			}
			s, p = tt.mutFin(s, p)
			_, _, err = r.ReadClientFinish(s, p)
			assertErr(t, err, tt.want, tt.msg)
		})
	}
}

func assertErr(t *testing.T, err, want error, msg string) {
	t.Helper()
	if !errors.Is(err, want) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("err = %v, want %v containing %q", err, want, msg)
	}
}

func TestCipherStateNonceLayout(t *testing.T) {
	key := [32]byte{1, 2, 3}
	block, _ := aes.NewCipher(key[:])
	ref, _ := cipher.NewGCM(block)
	cs := newCipherState(&key)
	for n := range 300 {
		var nonce [12]byte
		nonce[10], nonce[11] = byte(n>>8), byte(n)
		want := ref.Seal(nil, nonce[:], []byte("frame"), nil)
		if got := cs.Seal(nil, []byte("frame")); !bytes.Equal(got, want) {
			t.Fatalf("counter %d: got %x want %x", n, got, want)
		}
	}
}

func TestCipherStateOpenFailureKeepsCounter(t *testing.T) {
	key := [32]byte{9}
	a, b := newCipherState(&key), newCipherState(&key)
	c0 := a.Seal(nil, []byte("zero"))
	c1 := a.Seal(nil, []byte("one"))
	if _, err := b.Open(nil, c1); !errors.Is(err, ErrNoiseDecrypt) {
		t.Fatalf("out-of-order frame: %v", err)
	}
	if _, err := b.Open(nil, flip1(c0)); !errors.Is(err, ErrNoiseDecrypt) {
		t.Fatalf("tampered frame: %v", err)
	}
	if _, err := b.Open(nil, c0[:10]); !errors.Is(err, ErrNoiseDecrypt) {
		t.Fatalf("short frame: %v", err)
	}
	for i, c := range [][]byte{c0, c1} {
		if _, err := b.Open(nil, c); err != nil {
			t.Fatalf("frame %d after failures: %v", i, err)
		}
	}
	if b.Counter() != 2 {
		t.Fatalf("counter %d, want 2", b.Counter())
	}
}

func flip1(b []byte) []byte {
	c := bytes.Clone(b)
	c[0] ^= 1
	return c
}

func TestCipherStateNoAllocs(t *testing.T) {
	key := [32]byte{7}
	a, b := newCipherState(&key), newCipherState(&key)
	msg := make([]byte, 1024)
	ct := make([]byte, 0, 1024+16)
	pt := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		ct = a.Seal(ct[:0], msg)
		var err error
		if pt, err = b.Open(pt[:0], ct); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Seal+Open, want 0", allocs)
	}
}
