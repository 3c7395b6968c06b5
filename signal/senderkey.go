package signal

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/wafleet/wafleet/crypto"
)

// MaxSenderKeyStates is how many sender-key states (key IDs) a SenderKey
// keeps for one sender in one group, the newest ones (libsignal: 5).
const MaxSenderKeyStates = 5

// senderKeyState is one sender key: its ID, its chain, and the key that
// signs its messages. signing.Priv is set only for our own sender key.
type senderKeyState struct {
	id      uint32
	signing crypto.KeyPair
	ours    bool
	keyChain
}

// SenderKey is the sender-key record of one sender in one group: our own
// (NewSenderKey, which encrypts) or a peer's (built from its distribution
// messages, which decrypts). States are newest first. A SenderKey is not
// safe for concurrent use.
type SenderKey struct {
	states []*senderKeyState
}

// NewSenderKey returns a new sender key of ours: a random 31-bit key ID
// (libsignal's range; go.mau.fi/libsignal draws 32 bits), a random chain key
// at iteration 0 and a new signing key pair.
func NewSenderKey() (*SenderKey, error) {
	var r [36]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("signal: sender key: %w", err)
	}
	signing, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	st := &senderKeyState{
		id:       binary.BigEndian.Uint32(r[:4]) & 0x7fffffff,
		signing:  *signing,
		ours:     true,
		keyChain: keyChain{chain: chain{key: [32]byte(r[4:])}},
	}
	clear(r[:])
	return &SenderKey{states: []*senderKeyState{st}}, nil
}

// Distribution returns the distribution message of our sender key at its
// current iteration, for the group's other devices.
func (k *SenderKey) Distribution() (*SenderKeyDistribution, error) {
	if len(k.states) == 0 || !k.states[0].ours {
		return nil, fmt.Errorf("%w: not our sender key", ErrNoSenderKey)
	}
	st := k.states[0]
	return &SenderKeyDistribution{KeyID: st.id, Iteration: st.index, ChainKey: st.key, SigningKey: st.signing.Pub}, nil
}

// Process adds a peer's distribution message to its sender-key record. A
// message for a key ID already known with the same signing key changes
// nothing (a repeated distribution message cannot move a chain back and
// replay messages); with another signing key it replaces that state. The
// oldest states beyond MaxSenderKeyStates go.
func (k *SenderKey) Process(d *SenderKeyDistribution) {
	st := &senderKeyState{
		id:       d.KeyID,
		signing:  crypto.KeyPair{Pub: d.SigningKey},
		keyChain: keyChain{chain: chain{key: d.ChainKey, index: d.Iteration}},
	}
	for i, old := range k.states {
		if old.id == d.KeyID {
			if old.signing.Pub == d.SigningKey {
				return
			}
			k.states = slices.Delete(k.states, i, i+1)
			break
		}
	}
	k.states = slices.Insert(k.states, 0, st)
	if len(k.states) > MaxSenderKeyStates {
		clear(k.states[MaxSenderKeyStates:])
		k.states = k.states[:MaxSenderKeyStates]
	}
}

// Encrypt encrypts plaintext (already padded, see Pad) with our sender key
// into an "skmsg" body, signed by its signing key.
func (k *SenderKey) Encrypt(plaintext []byte) ([]byte, error) {
	if len(k.states) == 0 || !k.states[0].ours {
		return nil, fmt.Errorf("%w: not our sender key", ErrNoSenderKey)
	}
	st := k.states[0]
	seed, next := chainStep(&st.key)
	iv, key := senderMessageKeys(&seed)
	b := marshalSenderKeyMessage(st.id, st.index, cbcEncrypt(&key, &iv, plaintext))
	sig, err := crypto.Sign(&st.signing, b)
	if err != nil {
		return nil, err
	}
	st.chain = chain{key: next, index: st.index + 1}
	return append(b, sig[:]...), nil
}

// Decrypt decrypts an "skmsg" body: the state of its key ID, its signature,
// then its iteration's key (ErrDuplicate if used, ErrTooFarAhead beyond
// MaxSkip). Nothing changes when it fails.
func (k *SenderKey) Decrypt(body []byte) ([]byte, error) {
	m, err := ParseSenderKeyMessage(body)
	if err != nil {
		return nil, err
	}
	var st *senderKeyState
	for _, s := range k.states {
		if s.id == m.KeyID {
			st = s
			break
		}
	}
	if st == nil {
		return nil, fmt.Errorf("%w: key ID %d", ErrNoSenderKey, m.KeyID)
	}
	if !crypto.Verify(st.signing.Pub[:], m.signed, m.signature) {
		return nil, fmt.Errorf("%w: sender-key message %d/%d", ErrBadSignature, m.KeyID, m.Iteration)
	}
	l, err := st.find(m.Iteration)
	if err != nil {
		return nil, err
	}
	iv, key := senderMessageKeys(&l.seed)
	plaintext, err := cbcDecrypt(&key, &iv, m.Ciphertext)
	if err != nil {
		return nil, err
	}
	st.commit(&l)
	return plaintext, nil
}
