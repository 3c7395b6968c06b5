package signal

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// sent is a 1:1 message in flight in the property test.
type sent struct {
	to        int // 0 Alice, 1 Bob
	c         Ciphertext
	text      string
	ratchet   [32]byte // the sender's ratchet key, which the receiver's chain is found by
	delivered int      // successful decryptions
}

// TestPropertyConversation: Alice and Bob exchange random messages,
// delivered in any order and any number of times, with their records
// stored and loaded again between steps. Every message decrypts exactly
// once, unless the receiver dropped the chain it was sent on (a model of
// libsignal's rule: chains of the last MaxReceiverChains ratchet keys are
// kept), and every repeat fails. Messages in flight stay far below the
// skip bounds, which TestSkipBounds and TestPropertySenderKeyBounds cover.
func TestPropertyConversation(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		alice, bob := newDevice(rt, 1), newDevice(rt, 2)
		if err := alice.session.Initiate(alice.local, bob.bundle(rt)); err != nil {
			rt.Fatal(err)
		}
		devs := [2]*device{alice, bob}
		// window[i]: the ratchet keys device i keeps chains for, oldest
		// first; seen[i]: every ratchet key it has had a chain for.
		window := [2][][32]byte{{bob.spk.Pub}, nil}
		seen := [2]map[[32]byte]bool{{bob.spk.Pub: true}, {}}
		var flight []*sent
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for step := range steps {
			switch rapid.IntRange(0, 3).Draw(rt, "action") {
			case 0, 1: // send
				from := rapid.IntRange(0, 1).Draw(rt, "from")
				if !devs[from].session.HasCurrent() {
					continue // Bob cannot speak before Alice's first message reached him
				}
				text := fmt.Sprintf("%d from %d", step, from)
				c, err := devs[from].session.Encrypt([]byte(text))
				if err != nil {
					rt.Fatal(err)
				}
				body := c.Body
				if c.Type == TypePreKey {
					m, err := ParsePreKeySignalMessage(body)
					if err != nil {
						rt.Fatal(err)
					}
					body = m.Message.signed
					body = append(body, m.Message.mac[:]...)
				}
				m, err := ParseSignalMessage(body)
				if err != nil {
					rt.Fatal(err)
				}
				flight = append(flight, &sent{to: 1 - from, c: c, text: text, ratchet: m.RatchetKey})
			case 2: // deliver a message, maybe again
				if len(flight) == 0 {
					continue
				}
				m := flight[rapid.IntRange(0, len(flight)-1).Draw(rt, "msg")]
				to := m.to
				kept := slices.Contains(window[to], m.ratchet) || !seen[to][m.ratchet]
				got, err := devs[to].receive(m.c)
				switch {
				case m.delivered > 0 && err == nil:
					rt.Fatalf("message %q decrypted twice", m.text)
				case m.delivered > 0 && slices.Contains(window[to], m.ratchet) && !errors.Is(err, ErrDuplicate):
					rt.Fatalf("repeat of %q: %v, want ErrDuplicate", m.text, err)
				case m.delivered == 0 && kept && (err != nil || string(got) != m.text):
					rt.Fatalf("message %q: %q, %v", m.text, got, err)
				case m.delivered == 0 && !kept && err == nil:
					rt.Fatalf("message %q decrypted on a dropped chain", m.text)
				}
				if err == nil {
					m.delivered++
					if !seen[to][m.ratchet] {
						seen[to][m.ratchet] = true
						window[to] = append(window[to], m.ratchet)
						if len(window[to]) > MaxReceiverChains {
							window[to] = window[to][1:]
						}
					}
				}
			case 3: // store and load a record
				d := devs[rapid.IntRange(0, 1).Draw(rt, "who")]
				b, err := d.session.MarshalBinary()
				if err != nil {
					rt.Fatal(err)
				}
				var loaded Session
				if err := loaded.UnmarshalBinary(b); err != nil {
					rt.Fatalf("stored session does not load: %v", err)
				}
				again, _ := loaded.MarshalBinary()
				if !bytes.Equal(again, b) {
					rt.Fatal("a loaded session stores differently")
				}
				d.session = loaded
			}
		}
	})
}

// TestPropertySenderKeyBounds: a sender's messages reach a group member in
// a random order with repeats and long jumps. The member's sender key
// behaves as the model of the bounds says: a message decrypts when its
// iteration is ahead by at most MaxSkip or its key is among the
// MaxSkippedKeys kept, exactly once; the stored form round-trips.
func TestPropertySenderKeyBounds(t *testing.T) {
	const n = 2*MaxSkip + 200
	ours, err := NewSenderKey()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ours.Distribution()
	// The chain keys of every iteration, so that a message is made (and
	// signed) only when a test delivers it.
	first := *ours.states[0]
	chainKeys := make([][32]byte, n)
	chainKeys[0] = first.key
	for i := 1; i < n; i++ {
		_, chainKeys[i] = chainStep(&chainKeys[i-1])
	}
	msgs := map[uint32][]byte{}
	msgAt := func(i uint32) []byte {
		if m, ok := msgs[i]; ok {
			return m
		}
		st := first
		st.chain = chain{key: chainKeys[i], index: i}
		m, err := (&SenderKey{states: []*senderKeyState{&st}}).Encrypt([]byte{byte(i), byte(i >> 8)})
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
		return m
	}
	rapid.Check(t, func(rt *rapid.T) {
		var peer SenderKey
		peer.Process(d)
		// The model: the next iteration and the kept skipped ones.
		next := uint32(0)
		var skipped []uint32
		for range rapid.IntRange(1, 20).Draw(rt, "deliveries") {
			i := uint32(rapid.OneOf(
				rapid.IntRange(0, n-1),
				rapid.Custom(func(t *rapid.T) int { return min(n-1, int(next)+rapid.IntRange(MaxSkip-2, MaxSkip+2).Draw(t, "jump")) }),
			).Draw(rt, "iteration"))
			got, err := peer.Decrypt(msgAt(i))
			switch {
			case i >= next && i-next > MaxSkip:
				if !errors.Is(err, ErrTooFarAhead) {
					rt.Fatalf("iteration %d with the chain at %d: %v, want ErrTooFarAhead", i, next, err)
				}
			case i >= next:
				if err != nil || !bytes.Equal(got, []byte{byte(i), byte(i >> 8)}) {
					rt.Fatalf("iteration %d: %x, %v", i, got, err)
				}
				for j := next; j < i; j++ {
					skipped = append(skipped, j)
				}
				if len(skipped) > MaxSkippedKeys {
					skipped = skipped[len(skipped)-MaxSkippedKeys:]
				}
				next = i + 1
			case slices.Contains(skipped, i):
				if err != nil {
					rt.Fatalf("skipped iteration %d: %v", i, err)
				}
				skipped = slices.DeleteFunc(skipped, func(j uint32) bool { return j == i })
			default:
				if !errors.Is(err, ErrDuplicate) {
					rt.Fatalf("used or dropped iteration %d: %v, want ErrDuplicate", i, err)
				}
			}
			if rapid.Bool().Draw(rt, "store") {
				b, _ := peer.MarshalBinary()
				var loaded SenderKey
				if err := loaded.UnmarshalBinary(b); err != nil {
					rt.Fatal(err)
				}
				if again, _ := loaded.MarshalBinary(); !bytes.Equal(again, b) {
					rt.Fatal("a loaded sender key stores differently")
				}
				peer = loaded
			}
		}
		st := peer.states[0]
		if st.index != next || len(st.skipped) != len(skipped) {
			rt.Fatalf("chain at %d with %d skipped keys, model %d with %d", st.index, len(st.skipped), next, len(skipped))
		}
	})
}
