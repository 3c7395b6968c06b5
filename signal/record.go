package signal

import (
	"encoding/binary"
	"fmt"
)

// The stored forms of a Session and a SenderKey, for the stores (bbolt,
// Redis) to keep. They hold private keys (ratchet keys, our signing key) and
// chain keys in the clear: sealing them at rest is the store's job. All
// integers are big-endian.
//
// Session, version 1:
//
//	version u8 = 1 | state count u8 (current first, then archived, newest first)
//	each state:
//	  local identity 32 | remote identity 32 | local reg ID u32 | remote reg ID u32
//	  base key 32 | root key 32
//	  send ratchet private 32 | public 32 | send chain key 32 | index u32 | previous counter u32
//	  flags u8 (1: pending prekey, 2: it names a one-time prekey)
//	  [pending: prekey ID u32 | signed prekey ID u32]
//	  receiver chain count u8 (oldest first), each:
//	    ratchet key 32 | chain key 32 | index u32 | skipped count u16, each: index u32 | seed 32
//
// SenderKey, version 1:
//
//	version u8 = 1 | state count u8 (newest first)
//	each state: key ID u32 | flags u8 (1: ours) | signing public 32 | [ours: signing private 32]
//	  chain key 32 | index u32 | skipped count u16, each: index u32 | seed 32
//
// Unmarshal refuses with ErrCorrupt an unknown version or flag, counts
// beyond the package's bounds, a skipped index not below its chain's,
// truncated input and trailing bytes. It trusts the keys Marshal wrote (no
// public half is re-derived or re-checked), as the store trusts its
// records: detecting changed bytes is the store's checksum's job.
const recordVersion = 1

const (
	flagPending  = 1 << 0
	flagPreKeyID = 1 << 1
	flagOurs     = 1 << 0
)

// MarshalBinary encodes the session in its stored form.
func (s *Session) MarshalBinary() ([]byte, error) {
	b := []byte{recordVersion, byte(len(s.states))}
	for _, st := range s.states {
		b = append(b, st.localIdentity[:]...)
		b = append(b, st.remoteIdentity[:]...)
		b = binary.BigEndian.AppendUint32(b, st.localRegID)
		b = binary.BigEndian.AppendUint32(b, st.remoteRegID)
		b = append(b, st.baseKey[:]...)
		b = append(b, st.root[:]...)
		b = append(b, st.sendRatchet.Priv[:]...)
		b = append(b, st.sendRatchet.Pub[:]...)
		b = appendChain(b, &st.send)
		b = binary.BigEndian.AppendUint32(b, st.previousCounter)
		if p := st.pending; p != nil {
			flags := byte(flagPending)
			if p.hasPreKeyID {
				flags |= flagPreKeyID
			}
			b = append(b, flags)
			b = binary.BigEndian.AppendUint32(b, p.preKeyID)
			b = binary.BigEndian.AppendUint32(b, p.signedPreKeyID)
		} else {
			b = append(b, 0)
		}
		b = append(b, byte(len(st.receivers)))
		for i := range st.receivers {
			b = append(b, st.receivers[i].ratchet[:]...)
			b = appendKeyChain(b, &st.receivers[i].keyChain)
		}
	}
	return b, nil
}

// UnmarshalBinary decodes a stored session, replacing s's states.
func (s *Session) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	r.version()
	n := r.count(1+MaxArchivedStates, "state count")
	states := make([]*sessionState, 0, n)
	for range n {
		st := &sessionState{}
		r.fixed(st.localIdentity[:])
		r.fixed(st.remoteIdentity[:])
		st.localRegID = r.u32()
		st.remoteRegID = r.u32()
		r.fixed(st.baseKey[:])
		r.fixed(st.root[:])
		r.fixed(st.sendRatchet.Priv[:])
		r.fixed(st.sendRatchet.Pub[:])
		r.chain(&st.send)
		st.previousCounter = r.u32()
		switch flags := r.u8(); flags {
		case 0:
		case flagPending, flagPending | flagPreKeyID:
			st.pending = &pendingPreKey{hasPreKeyID: flags&flagPreKeyID != 0, preKeyID: r.u32(), signedPreKeyID: r.u32()}
		default:
			r.fail(fmt.Sprintf("state flags 0x%02x", flags))
		}
		nr := r.count(MaxReceiverChains, "receiver chain count")
		st.receivers = make([]receiverChain, nr)
		for i := range st.receivers {
			r.fixed(st.receivers[i].ratchet[:])
			r.keyChain(&st.receivers[i].keyChain)
		}
		states = append(states, st)
	}
	if err := r.end(); err != nil {
		return err
	}
	s.states = states
	return nil
}

// MarshalBinary encodes the sender key in its stored form.
func (k *SenderKey) MarshalBinary() ([]byte, error) {
	b := []byte{recordVersion, byte(len(k.states))}
	for _, st := range k.states {
		b = binary.BigEndian.AppendUint32(b, st.id)
		if st.ours {
			b = append(b, flagOurs)
			b = append(b, st.signing.Pub[:]...)
			b = append(b, st.signing.Priv[:]...)
		} else {
			b = append(b, 0)
			b = append(b, st.signing.Pub[:]...)
		}
		b = appendKeyChain(b, &st.keyChain)
	}
	return b, nil
}

// UnmarshalBinary decodes a stored sender key, replacing k's states.
func (k *SenderKey) UnmarshalBinary(data []byte) error {
	r := reader{b: data}
	r.version()
	n := r.count(MaxSenderKeyStates, "state count")
	states := make([]*senderKeyState, 0, n)
	for range n {
		st := &senderKeyState{id: r.u32()}
		switch flags := r.u8(); flags {
		case 0:
			r.fixed(st.signing.Pub[:])
		case flagOurs:
			st.ours = true
			r.fixed(st.signing.Pub[:])
			r.fixed(st.signing.Priv[:])
		default:
			r.fail(fmt.Sprintf("sender key flags 0x%02x", flags))
		}
		r.keyChain(&st.keyChain)
		states = append(states, st)
	}
	if err := r.end(); err != nil {
		return err
	}
	k.states = states
	return nil
}

func appendChain(b []byte, c *chain) []byte {
	b = append(b, c.key[:]...)
	return binary.BigEndian.AppendUint32(b, c.index)
}

func appendKeyChain(b []byte, c *keyChain) []byte {
	b = appendChain(b, &c.chain)
	b = binary.BigEndian.AppendUint16(b, uint16(len(c.skipped)))
	for _, sk := range c.skipped {
		b = binary.BigEndian.AppendUint32(b, sk.index)
		b = append(b, sk.seed[:]...)
	}
	return b
}

// reader decodes a stored record; the first error sticks and later reads
// return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, what)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed(dst []byte) { copy(dst, r.take(len(dst))) }

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) version() {
	if v := r.u8(); r.err == nil && v != recordVersion {
		r.fail(fmt.Sprintf("record version %d", v))
	}
}

// count reads a u8 count and refuses one above limit.
func (r *reader) count(limit int, what string) int {
	n := int(r.u8())
	if n > limit {
		r.fail(fmt.Sprintf("%s %d exceeds %d", what, n, limit))
		return 0
	}
	return n
}

func (r *reader) chain(c *chain) {
	r.fixed(c.key[:])
	c.index = r.u32()
}

func (r *reader) keyChain(c *keyChain) {
	r.chain(&c.chain)
	n := int(r.u16())
	if n > MaxSkippedKeys {
		r.fail(fmt.Sprintf("skipped key count %d exceeds %d", n, MaxSkippedKeys))
		return
	}
	if r.err != nil || n == 0 {
		return
	}
	if n*36 > len(r.b) {
		r.fail("truncated")
		return
	}
	c.skipped = make([]skippedKey, n)
	for i := range c.skipped {
		c.skipped[i].index = r.u32()
		r.fixed(c.skipped[i].seed[:])
		if c.skipped[i].index >= c.index {
			r.fail("skipped key index not below its chain's")
			return
		}
	}
}

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)))
	}
	return r.err
}
