package signal

import (
	"errors"
	"fmt"
	"slices"

	"github.com/wafleet/wafleet/crypto"
)

// Bounds on what a session keeps, as libsignal keeps them (go.mau.fi/libsignal
// and libsignal-node agree on the first two; the third and fourth are
// go.mau.fi/libsignal's and libsignal's).
const (
	// MaxSkip is how far ahead of its chain a message may be: a message
	// whose counter is more than MaxSkip past the next expected one is
	// ErrTooFarAhead, so one message cannot make a receiver derive
	// millions of keys. (libsignal's current Rust code allows 25,000; the
	// implementations WhatsApp clients use, 2,000.)
	MaxSkip = 2000
	// MaxSkippedKeys is how many keys of skipped messages a chain keeps
	// for late messages; beyond it the oldest go, and their messages are
	// ErrDuplicate.
	MaxSkippedKeys = 2000
	// MaxReceiverChains is how many of the peer's ratchet keys a session
	// state keeps chains for (the newest ones).
	MaxReceiverChains = 5
	// MaxArchivedStates is how many replaced session states a Session
	// keeps, for messages the peer sent under them.
	MaxArchivedStates = 40
)

// MessageType is the kind of a 1:1 ciphertext, the "type" attribute of its
// <enc> node.
type MessageType uint8

const (
	// TypeMsg is a SignalMessage, within an established session.
	TypeMsg MessageType = iota + 1
	// TypePreKey is a PreKeySignalMessage: sent until the peer's first
	// answer shows it built the session.
	TypePreKey
)

// String returns the <enc> type attribute: "msg" or "pkmsg".
func (t MessageType) String() string {
	switch t {
	case TypeMsg:
		return "msg"
	case TypePreKey:
		return "pkmsg"
	}
	return fmt.Sprintf("MessageType(%d)", uint8(t))
}

// Ciphertext is an encrypted 1:1 message.
type Ciphertext struct {
	Type MessageType
	Body []byte
}

// LocalIdentity is our device's long-term Signal identity.
type LocalIdentity struct {
	Key            *crypto.KeyPair
	RegistrationID uint32
}

// chain is one symmetric ratchet chain: the key of message index and after.
type chain struct {
	key   [32]byte
	index uint32
}

// skippedKey is the message key seed of a message not yet received.
type skippedKey struct {
	index uint32
	seed  [32]byte
}

// receiverChain is the chain of one of the peer's ratchet keys, with the
// seeds of the messages skipped in it, oldest first.
type receiverChain struct {
	ratchet [32]byte
	keyChain
}

// pendingPreKey is what an initiator repeats in every message until the
// peer answers: the prekeys of the peer's bundle it used.
type pendingPreKey struct {
	preKeyID       uint32
	hasPreKeyID    bool
	signedPreKeyID uint32
}

// sessionState is one Double Ratchet session with a peer device.
type sessionState struct {
	localIdentity, remoteIdentity [32]byte
	localRegID, remoteRegID       uint32
	// baseKey is the initiator's X3DH base key (ours if we initiated): a
	// repeated pkmsg finds the state it built by it.
	baseKey [32]byte
	root    [32]byte

	sendRatchet     crypto.KeyPair
	send            chain
	previousCounter uint32

	receivers []receiverChain // oldest first, at most MaxReceiverChains
	pending   *pendingPreKey  // non-nil while we initiated and heard nothing back
}

// Session is everything known about the sessions with one peer device: the
// current state and the states it replaced (archived), newest first. The
// zero Session has none. A Session is not safe for concurrent use: the
// owner of a peer's record serializes its operations.
type Session struct {
	states []*sessionState // [0] current, then archived, newest first
}

// HasCurrent reports whether the session has a current state to encrypt
// with.
func (s *Session) HasCurrent() bool { return len(s.states) > 0 }

// Built reports whether the session holds a state built from the prekey
// message m (its base key and sender identity): m and the messages that
// repeat its prekey part decrypt under that state, without our prekeys
// (DecryptPreKey does not need them then).
func (s *Session) Built(m *PreKeySignalMessage) bool {
	for _, st := range s.states {
		if st.baseKey == m.BaseKey && st.remoteIdentity == m.IdentityKey {
			return true
		}
	}
	return false
}

// RemoteIdentity returns the peer's identity key in the current state.
func (s *Session) RemoteIdentity() (key [32]byte, ok bool) {
	if len(s.states) == 0 {
		return key, false
	}
	return s.states[0].remoteIdentity, true
}

// install makes st the current state, archiving the one it replaces and
// dropping the oldest archived states beyond MaxArchivedStates.
func (s *Session) install(st *sessionState) {
	s.states = slices.Insert(s.states, 0, st)
	if len(s.states) > 1+MaxArchivedStates {
		clear(s.states[1+MaxArchivedStates:])
		s.states = s.states[:1+MaxArchivedStates]
	}
}

// Archived returns how many replaced states the session keeps.
func (s *Session) Archived() int { return max(len(s.states)-1, 0) }

// DropOldestArchived forgets the oldest archived state, reporting whether
// there was one: the owner's policy when a record outgrows what its store
// keeps (messages the peer sent under that state no longer decrypt).
func (s *Session) DropOldestArchived() bool {
	if len(s.states) < 2 {
		return false
	}
	s.states[len(s.states)-1] = nil
	s.states = s.states[:len(s.states)-1]
	return true
}

// promote makes archived state i the current one (the previous current
// state becomes the newest archived), as libsignal does when a message
// decrypts under an archived state.
func (s *Session) promote(i int) {
	if i == 0 {
		return
	}
	st := s.states[i]
	copy(s.states[1:i+1], s.states[:i])
	s.states[0] = st
}

// Encrypt encrypts plaintext (already padded, see Pad) under the current
// state: a TypePreKey message while we initiated and the peer has not
// answered, a TypeMsg after.
func (s *Session) Encrypt(plaintext []byte) (Ciphertext, error) {
	if len(s.states) == 0 {
		return Ciphertext{}, ErrNoSession
	}
	st := s.states[0]
	seed, next := chainStep(&st.send.key)
	keys := deriveMessageKeys(&seed)
	body := marshalSignalMessage(&st.sendRatchet.Pub, st.send.index, st.previousCounter,
		cbcEncrypt(&keys.cipher, &keys.iv, plaintext), &keys.mac, &st.localIdentity, &st.remoteIdentity)
	st.send = chain{key: next, index: st.send.index + 1}
	if st.pending == nil {
		return Ciphertext{Type: TypeMsg, Body: body}, nil
	}
	return Ciphertext{Type: TypePreKey,
		Body: marshalPreKeySignalMessage(st.localRegID, st.pending, &st.baseKey, &st.localIdentity, body)}, nil
}

// Decrypt decrypts a "msg" body under the state that sent it: the current
// one, else an archived one, which then becomes current. Nothing changes
// when it fails. A message whose key was used already is ErrDuplicate; one
// no state's MAC accepts is ErrBadMAC.
func (s *Session) Decrypt(body []byte) ([]byte, error) {
	m, err := ParseSignalMessage(body)
	if err != nil {
		return nil, err
	}
	return s.decrypt(m)
}

func (s *Session) decrypt(m *SignalMessage) ([]byte, error) {
	if len(s.states) == 0 {
		return nil, ErrNoSession
	}
	var firstErr error
	for i, st := range s.states {
		plaintext, err := st.decrypt(m)
		if err == nil {
			s.promote(i)
			return plaintext, nil
		}
		// A state that knows the message's chain says why it failed
		// (ErrDuplicate, ErrTooFarAhead); the others only that their MAC
		// does not match.
		if firstErr == nil || (errors.Is(firstErr, ErrBadMAC) && !errors.Is(err, ErrBadMAC)) {
			firstErr = err
		}
	}
	return nil, firstErr
}

// receiver returns the state's chain for a peer ratchet key, or nil.
func (st *sessionState) receiver(ratchet *[32]byte) *receiverChain {
	for i := range st.receivers {
		if st.receivers[i].ratchet == *ratchet {
			return &st.receivers[i]
		}
	}
	return nil
}

// decrypt decrypts m under st, changing st only when it succeeds.
func (st *sessionState) decrypt(m *SignalMessage) ([]byte, error) {
	rc := st.receiver(&m.RatchetKey)
	var stepped *receiverChain // the new chain of a DH ratchet step, not yet added
	var root [32]byte          // the root key after the step's receiving half
	if rc == nil {
		dh, err := st.sendRatchet.DH(m.RatchetKey[:])
		if err != nil {
			return nil, fmt.Errorf("ratchet step: %w", err)
		}
		var ck [32]byte
		root, ck = rootStep(&st.root, &dh)
		stepped = &receiverChain{ratchet: m.RatchetKey, keyChain: keyChain{chain: chain{key: ck}}}
		rc = stepped
	}
	l, err := rc.find(m.Counter)
	if err != nil {
		return nil, err
	}
	keys := deriveMessageKeys(&l.seed)
	if !m.verifyMAC(&keys.mac, &st.remoteIdentity, &st.localIdentity) {
		return nil, ErrBadMAC
	}
	plaintext, err := cbcDecrypt(&keys.cipher, &keys.iv, m.Ciphertext)
	if err != nil {
		return nil, err
	}

	// The message is authentic: commit.
	if stepped != nil {
		// The sending half of the step: a new ratchet key of ours.
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			return nil, err
		}
		dh, err := kp.DH(m.RatchetKey[:])
		if err != nil {
			return nil, fmt.Errorf("ratchet step: %w", err)
		}
		var sendCK [32]byte
		st.root, sendCK = rootStep(&root, &dh)
		// The last counter sent on the old chain, 0 if none was sent, as
		// libsignal (C, Rust) computes it. go.mau.fi/libsignal subtracts in
		// uint32 and libsignal-node starts its counters at -1: both send
		// 2^32-1 for an unused chain. Receivers only use it to bound the
		// old chain's skipped keys (libsignal-node) or not at all.
		st.previousCounter = 0
		if st.send.index > 0 {
			st.previousCounter = st.send.index - 1
		}
		st.sendRatchet = *kp
		st.send = chain{key: sendCK}
		st.receivers = append(st.receivers, *stepped)
		if n := len(st.receivers) - MaxReceiverChains; n > 0 {
			st.receivers = slices.Delete(st.receivers, 0, n)
		}
		rc = &st.receivers[len(st.receivers)-1]
	}
	rc.commit(&l)
	st.pending = nil
	return plaintext, nil
}

// keyChain is a receiving chain with the seeds of the messages skipped
// in it, oldest first: a 1:1 receiving chain or a sender-key chain.
type keyChain struct {
	chain
	skipped []skippedKey
}

// lookup is the seed of one message and what receiving it changes in its
// chain: the skipped seed it uses up (used >= 0), or the chain's next state
// and the seeds it skips.
type lookup struct {
	seed    [32]byte
	used    int
	next    chain
	skipped []skippedKey
}

// find finds the seed of message n without changing the chain. n below the
// chain's index is a skipped message or ErrDuplicate; n more than MaxSkip
// ahead is ErrTooFarAhead.
func (c *keyChain) find(n uint32) (lookup, error) {
	if n < c.index {
		for i := range c.skipped {
			if c.skipped[i].index == n {
				return lookup{seed: c.skipped[i].seed, used: i}, nil
			}
		}
		return lookup{}, fmt.Errorf("%w: counter %d, chain at %d", ErrDuplicate, n, c.index)
	}
	if n-c.index > MaxSkip {
		return lookup{}, fmt.Errorf("%w: counter %d, chain at %d", ErrTooFarAhead, n, c.index)
	}
	l := lookup{used: -1}
	ck := c.key
	for i := c.index; i < n; i++ {
		seed, next := chainStep(&ck)
		if n-i <= MaxSkippedKeys {
			l.skipped = append(l.skipped, skippedKey{index: i, seed: seed})
		}
		ck = next
	}
	seed, next := chainStep(&ck)
	l.seed, l.next = seed, chain{key: next, index: n + 1}
	return l, nil
}

// commit applies a lookup: the message was received.
func (c *keyChain) commit(l *lookup) {
	if l.used >= 0 {
		c.skipped = slices.Delete(c.skipped, l.used, l.used+1)
		return
	}
	c.chain = l.next
	c.skipped = append(c.skipped, l.skipped...)
	if n := len(c.skipped) - MaxSkippedKeys; n > 0 {
		c.skipped = slices.Delete(c.skipped, 0, n)
	}
}
