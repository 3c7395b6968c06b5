package connection

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
)

// Decrypt failure reasons: the label values of the decrypt failure metric
// (Observer.DecryptFailed), a bounded set.
const (
	failMalformed    = "malformed"      // the ciphertext or stanza does not parse
	failNoSession    = "no_session"     // a msg from a device we have no session with
	failNoSenderKey  = "no_sender_key"  // an skmsg before its sender key was distributed
	failMissingKey   = "missing_prekey" // a pkmsg naming a prekey we no longer hold
	failBadMAC       = "bad_mac"        // no session state's MAC accepts the message
	failBadSignature = "bad_signature"  // a sender-key message's signature fails
	failTooFarAhead  = "too_far_ahead"  // beyond the protocol's skip bound
	failDecrypt      = "decrypt"        // the cipher or its padding failed
	failUnsupported  = "unsupported"    // an enc type or version this client does not read
	failStore        = "store"          // the store failed: the stanza stays unacknowledged
)

// failReasons are the reasons, in a fixed order (failLog counts by it).
var failReasons = [...]string{failMalformed, failNoSession, failNoSenderKey, failMissingKey, failBadMAC,
	failBadSignature, failTooFarAhead, failDecrypt, failUnsupported, failStore}

// DecryptFailureReasons lists the reasons the decrypt failure metric
// counts by (each exported from the start).
var DecryptFailureReasons = failReasons[:]

// failureReason names err for the metric.
func failureReason(err error) string {
	switch {
	case errors.Is(err, errStore):
		return failStore
	case errors.Is(err, errUnsupported):
		return failUnsupported
	case errors.Is(err, signal.ErrNoSession):
		return failNoSession
	case errors.Is(err, signal.ErrNoSenderKey):
		return failNoSenderKey
	case errors.Is(err, signal.ErrMissingPreKey):
		return failMissingKey
	case errors.Is(err, signal.ErrBadMAC):
		return failBadMAC
	case errors.Is(err, signal.ErrBadSignature):
		return failBadSignature
	case errors.Is(err, signal.ErrTooFarAhead):
		return failTooFarAhead
	case errors.Is(err, signal.ErrDecrypt), errors.Is(err, signal.ErrBadPadding):
		return failDecrypt
	}
	return failMalformed
}

var (
	errStore       = errors.New("store")
	errUnsupported = errors.New("unsupported")
)

// decryption is the Signal state one stanza reads and changes, kept in
// memory until the stanza is done: nothing is written unless every <enc>
// child decrypted, and then all of it at once (one ApplySignal). A stanza
// changes one or two records, so they are kept in slices, in the order
// they changed, and nothing is allocated before a record is read.
type decryption struct {
	ctx context.Context
	r   *receiver

	sessions   []changedSession
	senderKeys []changedSenderKey
	usedPreKey uint32
}

// changedSession is a session the stanza changed, with the peer identity
// it holds (to record).
type changedSession struct {
	addr        string
	s           *signal.Session
	identity    [32]byte
	hasIdentity bool
}

type changedSenderKey struct {
	name senderKeyName
	k    *signal.SenderKey
}

type senderKeyName struct{ group, sender string }

func newDecryption(ctx context.Context, r *receiver) *decryption {
	return &decryption{ctx: ctx, r: r}
}

// session returns the session with addr: the one this stanza changed, else
// the stored one, else an empty one.
func (d *decryption) session(addr string) (*signal.Session, error) {
	for _, c := range d.sessions {
		if c.addr == addr {
			return c.s, nil
		}
	}
	s := new(signal.Session)
	rec, err := d.r.sig.Session(d.ctx, d.r.dev.ID, addr)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("%w: read session %s: %w", errStore, addr, err)
	default:
		if err := s.UnmarshalBinary(rec); err != nil {
			return nil, fmt.Errorf("%w: session %s: %w", errStore, addr, err)
		}
	}
	return s, nil
}

// changedSession records that the session with addr changed.
func (d *decryption) changedSession(addr string, s *signal.Session) {
	c := changedSession{addr: addr, s: s}
	c.identity, c.hasIdentity = s.RemoteIdentity()
	for i := range d.sessions {
		if d.sessions[i].addr == addr {
			d.sessions[i] = c
			return
		}
	}
	d.sessions = append(d.sessions, c)
}

// senderKey returns the sender key of sender in group: the one this stanza
// changed, else the stored one, else nil.
func (d *decryption) senderKey(name senderKeyName) (*signal.SenderKey, error) {
	for _, c := range d.senderKeys {
		if c.name == name {
			return c.k, nil
		}
	}
	if name.sender == d.r.ownAddr {
		return nil, fmt.Errorf("%w: a sender key under our own device's address", signal.ErrMalformed)
	}
	rec, err := d.r.sig.SenderKey(d.ctx, d.r.dev.ID, name.group, name.sender)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read sender key: %w", errStore, err)
	}
	k := new(signal.SenderKey)
	if err := k.UnmarshalBinary(rec); err != nil {
		return nil, fmt.Errorf("%w: sender key: %w", errStore, err)
	}
	return k, nil
}

func (d *decryption) changedSenderKey(name senderKeyName, k *signal.SenderKey) {
	for i := range d.senderKeys {
		if d.senderKeys[i].name == name {
			d.senderKeys[i].k = k
			return
		}
	}
	d.senderKeys = append(d.senderKeys, changedSenderKey{name, k})
}

// decrypt decrypts one <enc> child of in and returns its Message.
func (d *decryption) decrypt(in *inbound, e encPart) (*waproto.Message, error) {
	if e.v != 2 {
		// v=3 carries a differently framed message (whatsmeow's
		// "armadillo"): not read here, and not decrypted, so that the
		// session is left as it was.
		return nil, fmt.Errorf("%w: enc v=%d", errUnsupported, e.v)
	}
	addr, _ := senderAddress(in.sender) // parseInbound checked it
	var plaintext []byte
	var err error
	switch e.typ {
	case "pkmsg":
		plaintext, err = d.preKeyMessage(addr, e.body)
	case "msg":
		plaintext, err = d.message(addr, e.body)
	case "skmsg":
		if !in.group {
			return nil, fmt.Errorf("%w: skmsg outside a group", errUnsupported)
		}
		plaintext, err = d.groupMessage(senderKeyName{in.chat.String(), addr}, e.body)
	default:
		return nil, fmt.Errorf("%w: enc type %q", errUnsupported, e.typ)
	}
	if err != nil {
		return nil, err
	}
	if plaintext, err = signal.Unpad(plaintext); err != nil {
		return nil, err
	}
	msg := new(waproto.Message)
	if err := proto.Unmarshal(plaintext, msg); err != nil {
		return nil, fmt.Errorf("%w: Message protobuf: %w", signal.ErrMalformed, err)
	}
	return msg, nil
}

func (d *decryption) preKeyMessage(addr string, body []byte) ([]byte, error) {
	m, err := signal.ParsePreKeySignalMessage(body)
	if err != nil {
		return nil, err
	}
	s, err := d.session(addr)
	if err != nil {
		return nil, err
	}
	keys := signal.ResponderKeys{Local: d.r.local}
	if m.SignedPreKeyID == d.r.dev.SignedPreKey.ID {
		keys.SignedPreKey = d.r.signed
	}
	if m.HasPreKeyID && !s.Built(m) {
		// A sender that has not heard from us repeats its first message's
		// prekey part in every message: only the first needs the prekey
		// (a store read, a round trip on Redis).
		pk, err := d.r.st.PreKey(d.ctx, d.r.dev.ID, m.PreKeyID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// consumed already: only a repeat of a session built from it decrypts
		case err != nil:
			return nil, fmt.Errorf("%w: read prekey %d: %w", errStore, m.PreKeyID, err)
		default:
			keys.PreKey = &crypto.KeyPair{Pub: pk.Pub, Priv: pk.Priv}
		}
	}
	plaintext, err := s.DecryptPreKey(m, keys)
	if err != nil {
		return nil, err
	}
	d.changedSession(addr, s)
	if m.HasPreKeyID && keys.PreKey != nil {
		d.usedPreKey = m.PreKeyID
	}
	return plaintext, nil
}

func (d *decryption) message(addr string, body []byte) ([]byte, error) {
	if _, err := signal.ParseSignalMessage(body); err != nil {
		return nil, err // before any store read: garbage costs no round trip
	}
	s, err := d.session(addr)
	if err != nil {
		return nil, err
	}
	plaintext, err := s.Decrypt(body)
	if err != nil {
		return nil, err
	}
	d.changedSession(addr, s)
	return plaintext, nil
}

func (d *decryption) groupMessage(name senderKeyName, body []byte) ([]byte, error) {
	if _, err := signal.ParseSenderKeyMessage(body); err != nil {
		return nil, err // before any store read
	}
	k, err := d.senderKey(name)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, fmt.Errorf("%w: from %s in %s", signal.ErrNoSenderKey, name.sender, name.group)
	}
	plaintext, err := k.Decrypt(body)
	if err != nil {
		return nil, err
	}
	d.changedSenderKey(name, k)
	return plaintext, nil
}

// distribution processes a sender-key distribution message that came in a
// 1:1 message from the sender of in, for in's group (the reference client
// uses the stanza's chat, not the group named inside).
func (d *decryption) distribution(in *inbound, raw []byte) error {
	if !in.group {
		return nil // the reference client ignores one outside a group
	}
	dist, err := signal.ParseSenderKeyDistribution(raw)
	if err != nil {
		return err
	}
	addr, _ := senderAddress(in.sender)
	name := senderKeyName{in.chat.String(), addr}
	k, err := d.senderKey(name)
	if err != nil {
		return err
	}
	if k == nil {
		k = new(signal.SenderKey)
	}
	k.Process(dist)
	d.changedSenderKey(name, k)
	return nil
}

// changes are the stanza's changes for ApplySignal.
func (d *decryption) changes() (store.SignalChanges, error) {
	var c store.SignalChanges
	for _, ch := range d.sessions {
		rec, err := fitSession(ch.s, store.MaxSignalRecordLen)
		if err != nil {
			return c, err
		}
		c.Sessions = append(c.Sessions, store.SessionChange{Addr: ch.addr, Record: rec})
		if ch.hasIdentity {
			c.Identities = append(c.Identities, store.IdentityChange{Addr: ch.addr, Key: ch.identity})
		}
	}
	for _, ch := range d.senderKeys {
		rec, err := ch.k.MarshalBinary()
		if err != nil {
			return c, err
		}
		c.SenderKeys = append(c.SenderKeys, store.SenderKeyChange{Group: ch.name.group, Sender: ch.name.sender, Record: rec})
	}
	c.UsedPreKey = d.usedPreKey
	return c, nil
}

// fitSession encodes s within limit bytes: while it is larger, the oldest
// archived states go first (messages still in flight under them will not
// decrypt, and their senders retry). A session's current state alone is
// at most about 360 KB (signal.MaxReceiverChains full chains of skipped
// keys), well under store.MaxSignalRecordLen; only archived states make a
// record outgrow it.
func fitSession(s *signal.Session, limit int) ([]byte, error) {
	for {
		rec, err := s.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if len(rec) <= limit || !s.DropOldestArchived() {
			return rec, nil
		}
	}
}
