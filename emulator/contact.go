package emulator

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
)

// Numbering of emulated contacts: 1555100xxxx, apart from the accounts'
// 1555000xxxx and day-one's made-up peers 15559xxxxxx.
const contactPhoneBase = 15551000000

// Stock of a SignalDevice's published one-time prekeys: a new device
// publishes contactPreKeys, and tops the stock up to it when a fetch leaves
// fewer than minPrekeys (as a real client does after the server's encrypt
// notification).
const contactPreKeys = 50

// maxContacts bounds the contacts of one server (each holds two devices'
// keys and sessions).
const maxContacts = 10_000

// Contact is an emulated WhatsApp user on the other side of our accounts'
// conversations: a phone number with a primary device (0) and one
// companion (1), each a SignalDevice with its own keys. The server
// publishes their prekey bundles in the same way as those our devices
// upload (Server.PreKeyBundle).
type Contact struct {
	user    jid.JID // phone-number user JID, no device
	name    string  // push name
	devices [2]*SignalDevice
}

// JID is the contact's user JID (phone@s.whatsapp.net).
func (c *Contact) JID() jid.JID { return c.user }

// Name is the contact's push name (the notify attribute of its messages).
func (c *Contact) Name() string { return c.name }

// Devices returns the contact's devices: the phone (device 0), then the
// companion (device 1).
func (c *Contact) Devices() []*SignalDevice { return c.devices[:] }

// Device returns the contact's device with the given number (0 or 1).
func (c *Contact) Device(n uint16) (*SignalDevice, bool) {
	if int(n) >= len(c.devices) {
		return nil, false
	}
	return c.devices[n], true
}

// SignalDevice is an emulated device that talks Signal: a contact's phone
// or companion, or an account's phone (which sends our companions their
// own-device copies). It holds the device's identity key pair,
// registration ID, signed prekey (signed by the identity key over 05 ||
// public key, as the protocol wants), the private halves of its one-time
// prekeys, the public halves the server still has to hand out, and its
// sessions and sender keys. Every field after jid is guarded by mu.
type SignalDevice struct {
	jid jid.JID

	mu           sync.Mutex
	local        signal.LocalIdentity
	signed       *crypto.KeyPair
	signedID     uint32
	signedSig    [64]byte
	preKeys      map[uint32]*crypto.KeyPair // private halves, until a pkmsg uses one
	published    []oneTimePreKey            // public halves the server has not handed out yet
	nextPreKeyID uint32

	sessions    map[jid.JID]*signal.Session   // by peer device JID
	ownSKs      map[jid.JID]*signal.SenderKey // our sender key, by group
	peerSKs     map[senderKeyName]*signal.SenderKey
	distributed map[senderKeyName]bool // (group, peer device) given our sender key
	received    []Received             // what companions sent it, the last maxReceived (route.go)

	distributions int            // sender key distributions companions sent it (groups.go)
	retries       map[string]int // retry receipts it sent companions, by message id (groups.go)
	traffic       Traffic        // counts of its 1:1 ciphertexts with our companions
}

// Traffic counts the 1:1 ciphertexts a Signal device exchanged with our
// companions, by type: a pkmsg starts a session (a re-key when one
// existed), a msg continues it. Its JSON form is part of GET /contacts.
type Traffic struct {
	// SentPreKey and SentMsg count what the device encrypted for our
	// companions (resends answering retry receipts included).
	SentPreKey int64 `json:"sent_pkmsg"`
	SentMsg    int64 `json:"sent_msg"`
	// ReceivedPreKey and ReceivedMsg count what it decrypted from them.
	ReceivedPreKey int64 `json:"received_pkmsg"`
	ReceivedMsg    int64 `json:"received_msg"`
	// DecryptFailures counts their ciphertexts it could not decrypt.
	DecryptFailures int64 `json:"decrypt_failures"`
}

// add adds o's counts to t.
func (t *Traffic) add(o Traffic) {
	t.SentPreKey += o.SentPreKey
	t.SentMsg += o.SentMsg
	t.ReceivedPreKey += o.ReceivedPreKey
	t.ReceivedMsg += o.ReceivedMsg
	t.DecryptFailures += o.DecryptFailures
}

// Traffic returns the device's counts of ciphertexts.
func (d *SignalDevice) Traffic() Traffic {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.traffic
}

// senderKeyName names one sender's key in one group.
type senderKeyName struct {
	group, sender jid.JID
}

// oneTimePreKey is the public half of a one-time prekey as the server keeps
// it to hand out.
type oneTimePreKey struct {
	id  uint32
	pub [32]byte
}

// newSignalDevice makes a device with the given identity (nil: a fresh
// one), a random registration ID, signed prekey 1 and, when stocked,
// contactPreKeys one-time prekeys (else they are made at the first bundle
// fetch: an account's phone, which day-one makes for every account and
// which is rarely fetched, does not pay for them up front).
func newSignalDevice(j jid.JID, identity *crypto.KeyPair, stocked bool) (*SignalDevice, error) {
	if identity == nil {
		var err error
		if identity, err = crypto.GenerateKeyPair(); err != nil {
			return nil, fmt.Errorf("identity key: %w", err)
		}
	}
	signed, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("signed prekey: %w", err)
	}
	sig, err := crypto.Sign(identity, signal.SerializeKey(signed.Pub))
	if err != nil {
		return nil, fmt.Errorf("sign prekey: %w", err)
	}
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, err
	}
	d := &SignalDevice{
		jid: j,
		// Registration IDs are 14 bits and never 0 (libsignal's
		// generateRegistrationId: 1..16380).
		local:       signal.LocalIdentity{Key: identity, RegistrationID: binary.BigEndian.Uint32(r[:])%16380 + 1},
		signed:      signed,
		signedID:    1,
		signedSig:   sig,
		preKeys:     make(map[uint32]*crypto.KeyPair),
		sessions:    make(map[jid.JID]*signal.Session),
		ownSKs:      make(map[jid.JID]*signal.SenderKey),
		peerSKs:     make(map[senderKeyName]*signal.SenderKey),
		distributed: make(map[senderKeyName]bool),
	}
	if stocked {
		if err := d.refillPreKeys(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// refillPreKeys tops the published one-time prekeys up to contactPreKeys
// (caller holds mu, or d is not shared yet).
func (d *SignalDevice) refillPreKeys() error {
	for len(d.published) < contactPreKeys {
		kp, err := crypto.GenerateKeyPair()
		if err != nil {
			return fmt.Errorf("one-time prekey: %w", err)
		}
		d.nextPreKeyID = d.nextPreKeyID%(1<<24-1) + 1 // 24-bit IDs, never 0
		d.preKeys[d.nextPreKeyID] = kp
		d.published = append(d.published, oneTimePreKey{id: d.nextPreKeyID, pub: kp.Pub})
	}
	return nil
}

// JID is the device's JID (user:device@s.whatsapp.net).
func (d *SignalDevice) JID() jid.JID { return d.jid }

// Identity returns the device's Signal identity: its identity key pair and
// registration ID. The private key is for tests that act as the device.
func (d *SignalDevice) Identity() signal.LocalIdentity {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.local
}

// PublishedPreKeys is how many one-time prekeys the server can still hand
// out for the device.
func (d *SignalDevice) PublishedPreKeys() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.published)
}

// takeBundle is the device's prekey bundle with its oldest published
// one-time prekey, which the server then forgets (the real server hands
// each out once); the stock is topped up first when it runs low.
func (d *SignalDevice) takeBundle() (signal.Bundle, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.published) < minPrekeys {
		if err := d.refillPreKeys(); err != nil {
			return signal.Bundle{}, err
		}
	}
	b := signal.Bundle{
		RegistrationID:        d.local.RegistrationID,
		IdentityKey:           d.local.Key.Pub,
		SignedPreKeyID:        d.signedID,
		SignedPreKey:          d.signed.Pub,
		SignedPreKeySignature: d.signedSig,
	}
	if len(d.published) > 0 {
		k := d.published[0]
		d.published = slices.Delete(d.published, 0, 1)
		b.PreKeyID, b.PreKey = k.id, &k.pub
	}
	return b, nil
}

// contactBook is the server's registry of contacts. Lock order: registry.mu,
// then contactBook.mu, then a SignalDevice's mu.
type contactBook struct {
	mu     sync.Mutex
	byUser map[string]*Contact
	next   uint64
	routes routeBook // messages routed to our companions (contactroute.go)

	groups    map[string]*group // by group ID (the user part of its JID; groups.go)
	nextGroup uint64
}

// ErrContact is wrapped by AddContact's errors: a phone that is not a
// number, already a contact or an emulated account, or too many contacts.
var ErrContact = errors.New("emulator: bad contact")

// AddContact creates a contact with the given phone number (digits; ""
// takes the next free 1555100xxxx) and its two devices with fresh keys,
// and publishes their bundles. Errors wrap ErrContact.
func (s *Server) AddContact(phone string) (*Contact, error) {
	if phone != "" {
		if _, err := strconv.ParseUint(phone, 10, 64); err != nil || len(phone) > 20 {
			return nil, fmt.Errorf("%w: phone %q is not a number", ErrContact, phone)
		}
	}
	s.reg.mu.Lock()
	defer s.reg.mu.Unlock()
	cb := &s.contacts
	cb.mu.Lock()
	defer cb.mu.Unlock()
	if len(cb.byUser) >= maxContacts {
		return nil, fmt.Errorf("%w: at most %d contacts", ErrContact, maxContacts)
	}
	if phone == "" {
		for {
			cb.next++
			phone = strconv.FormatUint(contactPhoneBase+cb.next, 10)
			if cb.byUser[phone] == nil && s.reg.accounts[phone] == nil {
				break
			}
		}
	}
	switch {
	case cb.byUser[phone] != nil:
		return nil, fmt.Errorf("%w: %s is a contact already", ErrContact, phone)
	case s.reg.accounts[phone] != nil:
		return nil, fmt.Errorf("%w: %s is an emulated account", ErrContact, phone)
	}
	c := &Contact{user: jid.New(phone, jid.DefaultUserServer), name: "Contact " + phone[max(len(phone)-4, 0):]}
	for i := range c.devices {
		d, err := newSignalDevice(jid.JID{User: phone, Device: uint16(i), Server: jid.DefaultUserServer}, nil, true)
		if err != nil {
			return nil, fmt.Errorf("contact %s device %d: %w", phone, i, err)
		}
		c.devices[i] = d
	}
	if cb.byUser == nil {
		cb.byUser = make(map[string]*Contact)
	}
	cb.byUser[phone] = c
	s.stats.add(func(st *Stats) *int64 { return &st.Contacts }, 1)
	return c, nil
}

// Contact returns the contact whose user (any device, PN JID) j names.
func (s *Server) Contact(j jid.JID) (*Contact, bool) {
	if j.Server != jid.DefaultUserServer {
		return nil, false
	}
	s.contacts.mu.Lock()
	defer s.contacts.mu.Unlock()
	c, ok := s.contacts.byUser[j.User]
	return c, ok
}

// Contacts returns the contacts, ordered by phone number.
func (s *Server) Contacts() []*Contact {
	s.contacts.mu.Lock()
	out := make([]*Contact, 0, len(s.contacts.byUser))
	for _, c := range s.contacts.byUser {
		out = append(out, c)
	}
	s.contacts.mu.Unlock()
	slices.SortFunc(out, func(a, b *Contact) int {
		if len(a.user.User) != len(b.user.User) {
			return len(a.user.User) - len(b.user.User)
		}
		switch {
		case a.user.User < b.user.User:
			return -1
		case a.user.User > b.user.User:
			return 1
		}
		return 0
	})
	return out
}

// contactDevice returns the contact device j names (PN device JID).
func (s *Server) contactDevice(j jid.JID) (*SignalDevice, bool) {
	c, ok := s.Contact(j)
	if !ok {
		return nil, false
	}
	return c.Device(j.Device)
}

// phoneDevice returns the Signal device of an account's phone (device 0),
// made on first use: its identity key is the account's primary key, the one
// that signs its companions' ADV identities (the phone is the account's
// identity). Caller holds registry.mu.
func (a *account) phoneDevice() (*SignalDevice, error) {
	if a.phoneSignal == nil {
		d, err := newSignalDevice(jid.New(a.phone, jid.DefaultUserServer), a.primary, false)
		if err != nil {
			return nil, fmt.Errorf("phone of %s: %w", a.phone, err)
		}
		a.phoneSignal = d
	}
	return a.phoneSignal, nil
}
