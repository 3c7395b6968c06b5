package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// NoiseProtocolName is the 32-byte protocol name that initialises h and ck:
// "Noise_XX_25519_AESGCM_SHA256" padded with four zero bytes.
var NoiseProtocolName = [32]byte{'N', 'o', 'i', 's', 'e', '_', 'X', 'X', '_', '2', '5', '5', '1', '9',
	'_', 'A', 'E', 'S', 'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6'}

// symmetricState is the Noise SymmetricState (PROTOCOL.md 2.3) with the
// handshake cipher. trace, when set (tests only), sees h and ck after every
// operation.
type symmetricState struct {
	h, ck [32]byte
	aead  cipher.AEAD // nil until the first MixKey
	n     uint64
	trace func(h, ck [32]byte)
}

func (s *symmetricState) init(prologue []byte, trace func(h, ck [32]byte)) {
	s.h, s.ck, s.trace = NoiseProtocolName, NoiseProtocolName, trace
	s.step()
	s.mixHash(prologue)
}

func (s *symmetricState) step() {
	if s.trace != nil {
		s.trace(s.h, s.ck)
	}
}

func (s *symmetricState) mixHash(data []byte) {
	d := sha256.New()
	d.Write(s.h[:])
	d.Write(data)
	d.Sum(s.h[:0])
	s.step()
}

// hkdf2 returns the two 32-byte HKDF-SHA256 outputs for salt ck.
func hkdf2(ck *[32]byte, ikm []byte) (k1, k2 [32]byte) {
	// hkdf.Key only fails for lengths beyond 255*32.
	out, _ := hkdf.Key(sha256.New, ikm, ck[:], "", 64)
	copy(k1[:], out[:32])
	copy(k2[:], out[32:])
	return k1, k2
}

func newGCM(key *[32]byte) cipher.AEAD {
	// A 32-byte key never fails aes.NewCipher, and AES blocks always suit GCM.
	block, _ := aes.NewCipher(key[:])
	aead, _ := cipher.NewGCM(block)
	return aead
}

func (s *symmetricState) mixKey(ikm []byte) {
	var k [32]byte
	s.ck, k = hkdf2(&s.ck, ikm)
	s.aead, s.n = newGCM(&k), 0
	s.step()
}

// mixDH runs DH and MixKey on the result.
func (s *symmetricState) mixDH(kp *KeyPair, peer []byte) error {
	shared, err := kp.DH(peer)
	if err != nil {
		return err
	}
	s.mixKey(shared[:])
	return nil
}

func (s *symmetricState) nonce() []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], s.n)
	return n[:]
}

func (s *symmetricState) encryptAndHash(plaintext []byte) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoiseState
	}
	c := s.aead.Seal(nil, s.nonce(), plaintext, s.h[:])
	s.n++
	s.mixHash(c)
	return c, nil
}

func (s *symmetricState) decryptAndHash(ciphertext []byte) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoiseState
	}
	p, err := s.aead.Open(nil, s.nonce(), ciphertext, s.h[:])
	if err != nil {
		return nil, ErrNoiseDecrypt
	}
	s.n++
	s.mixHash(ciphertext)
	return p, nil
}

// split derives the two transport ciphers: the first for initiator→responder.
func (s *symmetricState) split() (c1, c2 *CipherState) {
	k1, k2 := hkdf2(&s.ck, nil)
	return newCipherState(&k1), newCipherState(&k2)
}

// handshake phases shared by both roles.
const (
	phaseStart     = iota
	phaseHelloRead // responder: ClientHello read
	phaseHelloDone // ServerHello read (initiator) or written (responder)
	phaseFinished  // ClientFinish written or read
	phaseDone      // Split was called
	phaseFailed    // an error happened; every later call fails
)

// Initiator is the client side of the handshake. It is not safe for
// concurrent use.
type Initiator struct {
	ss              symmetricState
	static, eph     *KeyPair
	serverEphemeral [32]byte
	phase           int
}

// NewInitiator starts a handshake as the client. It mixes the prologue and
// the ephemeral public key, which the caller sends as ClientHello.ephemeral.
// Unlike standard Noise, it does not hash message 1's empty payload.
func NewInitiator(static, ephemeral *KeyPair, prologue []byte) *Initiator {
	return newInitiator(static, ephemeral, prologue, nil)
}

func newInitiator(static, ephemeral *KeyPair, prologue []byte, trace func(h, ck [32]byte)) *Initiator {
	i := &Initiator{static: static, eph: ephemeral}
	i.ss.init(prologue, trace)
	i.ss.mixHash(ephemeral.Pub[:])
	return i
}

// ReadServerHello processes ServerHello's three fields and returns the
// server's static key and the decrypted payload (the certificate chain,
// which the caller must verify with VerifyCertChain).
func (i *Initiator) ReadServerHello(ephemeral, staticCT, payloadCT []byte) (serverStatic [32]byte, payload []byte, err error) {
	if i.phase != phaseStart {
		return serverStatic, nil, fmt.Errorf("read server hello: %w", ErrNoiseState)
	}
	i.phase = phaseFailed
	if len(ephemeral) != 32 {
		return serverStatic, nil, fmt.Errorf("server ephemeral: %w", ErrNoiseLength)
	}
	copy(i.serverEphemeral[:], ephemeral)
	i.ss.mixHash(ephemeral)
	if err := i.ss.mixDH(i.eph, ephemeral); err != nil {
		return serverStatic, nil, fmt.Errorf("dh ee: %w", err)
	}
	static, err := i.ss.decryptAndHash(staticCT)
	if err != nil {
		return serverStatic, nil, fmt.Errorf("decrypt server static: %w", err)
	}
	if len(static) != 32 {
		return serverStatic, nil, fmt.Errorf("server static: %w", ErrNoiseLength)
	}
	copy(serverStatic[:], static)
	if err := i.ss.mixDH(i.eph, static); err != nil {
		return serverStatic, nil, fmt.Errorf("dh es: %w", err)
	}
	payload, err = i.ss.decryptAndHash(payloadCT)
	if err != nil {
		return serverStatic, nil, fmt.Errorf("decrypt server payload: %w", err)
	}
	i.phase = phaseHelloDone
	return serverStatic, payload, nil
}

// WriteClientFinish encrypts the client's static key and the payload (the
// ClientPayload protobuf) for ClientFinish.
func (i *Initiator) WriteClientFinish(payload []byte) (staticCT, payloadCT []byte, err error) {
	if i.phase != phaseHelloDone {
		return nil, nil, fmt.Errorf("write client finish: %w", ErrNoiseState)
	}
	i.phase = phaseFailed
	if staticCT, err = i.ss.encryptAndHash(i.static.Pub[:]); err != nil {
		return nil, nil, fmt.Errorf("encrypt client static: %w", err)
	}
	if err := i.ss.mixDH(i.static, i.serverEphemeral[:]); err != nil {
		return nil, nil, fmt.Errorf("dh se: %w", err)
	}
	if payloadCT, err = i.ss.encryptAndHash(payload); err != nil {
		return nil, nil, fmt.Errorf("encrypt client payload: %w", err)
	}
	i.phase = phaseFinished
	return staticCT, payloadCT, nil
}

// Split returns the client's transport ciphers. It returns nil, nil unless
// WriteClientFinish has succeeded, and on any call after the first (each
// key must have exactly one counter).
func (i *Initiator) Split() (send, recv *CipherState) {
	if i.phase != phaseFinished {
		return nil, nil
	}
	i.phase = phaseDone
	return i.ss.split()
}

// handshakeHash returns h and ck (tests).
func (i *Initiator) handshakeHash() (h, ck [32]byte) { return i.ss.h, i.ss.ck }

// Responder is the server side of the handshake (the emulator). It is not
// safe for concurrent use.
type Responder struct {
	ss              symmetricState
	static, eph     *KeyPair
	clientEphemeral [32]byte
	phase           int
}

// NewResponder starts a handshake as the server and mixes the prologue.
func NewResponder(static, ephemeral *KeyPair, prologue []byte) *Responder {
	return newResponder(static, ephemeral, prologue, nil)
}

func newResponder(static, ephemeral *KeyPair, prologue []byte, trace func(h, ck [32]byte)) *Responder {
	r := &Responder{static: static, eph: ephemeral}
	r.ss.init(prologue, trace)
	return r
}

// ReadClientHello takes ClientHello.ephemeral (no payload is hashed).
func (r *Responder) ReadClientHello(ephemeral []byte) error {
	if r.phase != phaseStart {
		return fmt.Errorf("read client hello: %w", ErrNoiseState)
	}
	r.phase = phaseFailed
	if len(ephemeral) != 32 {
		return fmt.Errorf("client ephemeral: %w", ErrNoiseLength)
	}
	copy(r.clientEphemeral[:], ephemeral)
	r.ss.mixHash(ephemeral)
	r.phase = phaseHelloRead
	return nil
}

// WriteServerHello returns ServerHello's fields: the server's ephemeral key,
// its encrypted static key and the encrypted payload (the certificate chain).
func (r *Responder) WriteServerHello(payload []byte) (ephemeral, staticCT, payloadCT []byte, err error) {
	if r.phase != phaseHelloRead {
		return nil, nil, nil, fmt.Errorf("write server hello: %w", ErrNoiseState)
	}
	r.phase = phaseFailed
	r.ss.mixHash(r.eph.Pub[:])
	if err := r.ss.mixDH(r.eph, r.clientEphemeral[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("dh ee: %w", err)
	}
	if staticCT, err = r.ss.encryptAndHash(r.static.Pub[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("encrypt server static: %w", err)
	}
	if err := r.ss.mixDH(r.static, r.clientEphemeral[:]); err != nil {
		return nil, nil, nil, fmt.Errorf("dh es: %w", err)
	}
	if payloadCT, err = r.ss.encryptAndHash(payload); err != nil {
		return nil, nil, nil, fmt.Errorf("encrypt server payload: %w", err)
	}
	r.phase = phaseHelloDone
	return append([]byte(nil), r.eph.Pub[:]...), staticCT, payloadCT, nil
}

// ReadClientFinish decrypts ClientFinish and returns the client's static key
// (its noise key) and the payload (the ClientPayload protobuf).
func (r *Responder) ReadClientFinish(staticCT, payloadCT []byte) (clientStatic [32]byte, payload []byte, err error) {
	if r.phase != phaseHelloDone {
		return clientStatic, nil, fmt.Errorf("read client finish: %w", ErrNoiseState)
	}
	r.phase = phaseFailed
	static, err := r.ss.decryptAndHash(staticCT)
	if err != nil {
		return clientStatic, nil, fmt.Errorf("decrypt client static: %w", err)
	}
	if len(static) != 32 {
		return clientStatic, nil, fmt.Errorf("client static: %w", ErrNoiseLength)
	}
	copy(clientStatic[:], static)
	if err := r.ss.mixDH(r.eph, static); err != nil {
		return clientStatic, nil, fmt.Errorf("dh se: %w", err)
	}
	if payload, err = r.ss.decryptAndHash(payloadCT); err != nil {
		return clientStatic, nil, fmt.Errorf("decrypt client payload: %w", err)
	}
	r.phase = phaseFinished
	return clientStatic, payload, nil
}

// Split returns the server's transport ciphers (send = server→client). It
// returns nil, nil unless ReadClientFinish has succeeded, and on any call
// after the first.
func (r *Responder) Split() (send, recv *CipherState) {
	if r.phase != phaseFinished {
		return nil, nil
	}
	r.phase = phaseDone
	c1, c2 := r.ss.split()
	return c2, c1
}

// handshakeHash returns h and ck (tests).
func (r *Responder) handshakeHash() (h, ck [32]byte) { return r.ss.h, r.ss.ck }

// CipherState is one direction of the transport (PROTOCOL.md 2.6):
// AES-256-GCM with empty associated data and a frame counter in the nonce.
// It is not safe for concurrent use.
type CipherState struct {
	aead  cipher.AEAD
	n     uint64
	nonce [12]byte
}

func newCipherState(key *[32]byte) *CipherState {
	return &CipherState{aead: newGCM(key)}
}

func (c *CipherState) setNonce() []byte {
	binary.BigEndian.PutUint64(c.nonce[4:], c.n)
	return c.nonce[:]
}

// Seal appends the encryption of plaintext to dst and advances the counter.
func (c *CipherState) Seal(dst, plaintext []byte) []byte {
	out := c.aead.Seal(dst, c.setNonce(), plaintext, nil)
	c.n++
	return out
}

// Open appends the decryption of ciphertext to dst. The counter advances
// only on success; a failure returns ErrNoiseDecrypt (treat it as fatal).
func (c *CipherState) Open(dst, ciphertext []byte) ([]byte, error) {
	out, err := c.aead.Open(dst, c.setNonce(), ciphertext, nil)
	if err != nil {
		return dst, ErrNoiseDecrypt
	}
	c.n++
	return out, nil
}

// Counter returns the number of frames sealed or opened so far.
func (c *CipherState) Counter() uint64 { return c.n }
