package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/qr"
)

// Numbering of emulated accounts: phone numbers 1555000xxxx, LIDs from a
// 15-digit base. The first account is 15550000001 / 100000000000001.
const (
	phoneBase = 15550000000
	lidBase   = 100000000000000
)

// maxSpentRefs bounds the memory of refs whose registration ended (so that a
// late scan says "expired" rather than "unknown").
const maxSpentRefs = 1 << 16

// registration is one connection that sent a registration payload and was
// given refs (PROTOCOL.md 8.2). Its fields after refs are guarded by
// registry.mu.
type registration struct {
	sess        *session
	noisePub    [32]byte // the handshake's static key
	identityPub [32]byte // devicePairingData.eIdent
	regID       uint32
	skey        signedPreKey // devicePairingData's signed prekey
	os          string       // DeviceProps.os, shown in Devices
	refs        []string
	expires     []time.Time // expiry of each ref

	state   regState
	attempt *pairAttempt // set while state == regScanning
	link    *linkCode    // the companion's link-code request, if any
}

type regState int

const (
	regWaiting  regState = iota // refs live, waiting for a scan
	regScanning                 // pair-success sent, waiting for the reply
	regPaired                   // pair-device-sign verified
	regDead                     // expired, failed or disconnected
)

// account is one emulated WhatsApp account: a phone with its primary identity
// key, phone number and LID, and the device numbers it has handed out.
type account struct {
	phone       string
	lid         string
	primary     *crypto.KeyPair
	rawID       uint32
	nextDevice  uint16 // last device number used
	identities  [][32]byte
	phoneSignal *SignalDevice // the phone as a Signal device, made on first use (phoneDevice)
}

// signedPreKey is the signed prekey a companion registered with: a prekey
// upload must carry the same one.
type signedPreKey struct {
	id  uint32
	pub [32]byte
	sig [64]byte // by the identity key over 05 || pub, handed out in bundles
}

// device is one paired companion.
type device struct {
	jid, lid    jid.JID
	noisePub    [32]byte
	identityPub [32]byte
	account     *account
	keyIndex    uint32
	os          string
	pairedAt    time.Time
	regID       uint32                // the registration ID of devicePairingData
	skey        signedPreKey          // the signed prekey of devicePairingData
	sessions    map[*session]struct{} // logged-in connections; guarded by registry.mu
	st          deviceState           // day-one and prekey state; its own lock
}

// registry holds the server's pairing and device state.
type registry struct {
	mu        sync.Mutex
	refs      map[string]*registration
	spent     map[string]struct{} // refs of ended registrations (bounded)
	accounts  map[string]*account // by phone number
	devices   map[jid.JID]*device // by PN device JID
	byLID     map[jid.JID]*device
	nextPhone uint64
}

func newRegistry() *registry {
	return &registry{
		refs:     make(map[string]*registration),
		spent:    make(map[string]struct{}),
		accounts: make(map[string]*account),
		devices:  make(map[jid.JID]*device),
		byLID:    make(map[jid.JID]*device),
	}
}

// newRef returns a fresh ref: "2@" and base64 of random bytes, no commas.
func newRef() (string, error) {
	var b [66]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "2@" + base64.StdEncoding.EncodeToString(b[:]), nil
}

// addRegistration issues n refs to reg; ref i expires after first + i×next.
func (r *registry) addRegistration(reg *registration, n int, first, next time.Duration, now time.Time) error {
	refs := make([]string, n)
	expires := make([]time.Time, n)
	for i := range refs {
		ref, err := newRef()
		if err != nil {
			return fmt.Errorf("make ref: %w", err)
		}
		refs[i] = ref
		expires[i] = now.Add(first + time.Duration(i)*next)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	reg.refs, reg.expires = refs, expires
	for _, ref := range refs {
		r.refs[ref] = reg
	}
	return nil
}

// removeRegistration forgets reg's refs and marks it dead. It returns the
// pairing attempt that was in flight, if any.
func (r *registry) removeRegistration(reg *registration) *pairAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.spent) > maxSpentRefs {
		clear(r.spent)
	}
	for _, ref := range reg.refs {
		delete(r.refs, ref)
		r.spent[ref] = struct{}{}
	}
	var a *pairAttempt
	if reg.state == regScanning {
		a = reg.attempt
	}
	if reg.state != regPaired {
		reg.state = regDead
	}
	return a
}

// expire marks reg dead if nobody has scanned it; it reports whether it did.
func (r *registry) expire(reg *registration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.state != regWaiting {
		return false
	}
	reg.state = regDead
	return true
}

// claim finds the registration of a scanned code, checks that the ref is live
// and that the code's keys are the registration's, and moves it to scanning
// with a new, not yet armed, pairing attempt.
func (r *registry) claim(code qr.Code, now time.Time) (*registration, *pairAttempt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.refs[code.Ref]
	if !ok {
		if _, spent := r.spent[code.Ref]; spent {
			return nil, nil, ErrRefExpired
		}
		return nil, nil, ErrUnknownRef
	}
	i := slices.Index(reg.refs, code.Ref)
	switch {
	case reg.state == regScanning || reg.state == regPaired:
		return nil, nil, ErrAlreadyScanned
	case reg.state != regWaiting || !now.Before(reg.expires[i]):
		return nil, nil, ErrRefExpired
	}
	noiseOK := subtle.ConstantTimeCompare(code.NoisePub[:], reg.noisePub[:])
	identOK := subtle.ConstantTimeCompare(code.IdentityPub[:], reg.identityPub[:])
	if noiseOK&identOK != 1 {
		return nil, nil, ErrKeyMismatch
	}
	reg.state = regScanning
	reg.attempt = &pairAttempt{done: make(chan pairResult, 1)}
	return reg, reg.attempt, nil
}

// arm makes a filled-in attempt visible to the session's reader. It fails
// if the registration died meanwhile (the attempt has then been finished).
func (r *registry) arm(reg *registration, a *pairAttempt) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.state != regScanning || reg.attempt != a {
		return false
	}
	a.ready = true
	return true
}

// unclaim ends a failed pairing attempt: the registration is dead.
func (r *registry) unclaim(reg *registration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.state == regScanning {
		reg.state = regDead
		reg.attempt = nil
	}
}

// attemptFor returns the armed pairing in flight on reg whose pair-success
// has the IQ id, or nil.
func (r *registry) attemptFor(reg *registration, id string) *pairAttempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if reg.state == regScanning && reg.attempt != nil && reg.attempt.ready && reg.attempt.id == id {
		return reg.attempt
	}
	return nil
}

// allocate chooses the account for a companion identity key (phone "" means:
// the account that linked this identity before, else a new one) and the next
// device number on it. It returns the account and the device JIDs.
func (r *registry) allocate(identityPub [32]byte, phone string) (*account, jid.JID, jid.JID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var acct *account
	if phone != "" {
		acct = r.accounts[phone]
	} else {
	search:
		for _, a := range r.accounts {
			for _, id := range a.identities {
				if id == identityPub {
					acct = a
					break search
				}
			}
		}
	}
	if acct == nil {
		var err error
		if acct, err = r.newAccount(phone); err != nil {
			return nil, jid.JID{}, jid.JID{}, err
		}
	}
	if !slices.Contains(acct.identities, identityPub) {
		acct.identities = append(acct.identities, identityPub)
	}
	acct.nextDevice++
	if acct.nextDevice == 0 { // wrapped: 65535 devices on one account
		acct.nextDevice = 1
	}
	n := acct.nextDevice
	return acct,
		jid.JID{User: acct.phone, Device: n, Server: jid.DefaultUserServer},
		jid.JID{User: acct.lid, Device: n, Server: jid.HiddenUserServer},
		nil
}

// newAccount creates an account (caller holds mu). phone "" allocates the
// next number of the 1555000xxxx range.
func (r *registry) newAccount(phone string) (*account, error) {
	if phone == "" {
		for {
			r.nextPhone++
			phone = strconv.FormatUint(phoneBase+r.nextPhone, 10)
			if _, taken := r.accounts[phone]; !taken {
				break
			}
		}
	}
	primary, err := crypto.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("primary identity key: %w", err)
	}
	var raw [4]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	a := &account{
		phone:   phone,
		lid:     strconv.FormatUint(lidBase+uint64(len(r.accounts))+1, 10),
		primary: primary,
		rawID:   uint32(raw[0])<<24 | uint32(raw[1])<<16 | uint32(raw[2])<<8 | uint32(raw[3]),
	}
	r.accounts[phone] = a
	return a, nil
}

// completePairing records the paired device of reg (PN JID ↔ noise key).
func (r *registry) completePairing(reg *registration, a *pairAttempt, now time.Time) *device {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg.state = regPaired
	reg.attempt = nil
	d := &device{
		jid: a.jid, lid: a.lid,
		noisePub: reg.noisePub, identityPub: reg.identityPub,
		account: a.account, keyIndex: a.keyIndex,
		os: reg.os, pairedAt: now, regID: reg.regID, skey: reg.skey,
	}
	r.addDevice(d)
	return d
}

// addDevice records a paired device (caller holds mu).
func (r *registry) addDevice(d *device) {
	if d.sessions == nil {
		d.sessions = make(map[*session]struct{})
	}
	var salt [4]byte
	rand.Read(salt[:])
	d.st.salt = uint32(salt[0])<<24 | uint32(salt[1])<<16 | uint32(salt[2])<<8 | uint32(salt[3])
	r.devices[d.jid] = d
	r.byLID[d.lid] = d
}

// login finds the device a login payload names and checks the handshake's
// static key against the one recorded at pairing. On success it attaches
// sess and returns the device, the connections it already had and the new
// count.
func (r *registry) login(user string, dev uint16, noisePub [32]byte, sess *session) (*device, []*session, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[jid.JID{User: user, Device: dev, Server: jid.DefaultUserServer}]
	if !ok || subtle.ConstantTimeCompare(d.noisePub[:], noisePub[:]) != 1 {
		return nil, nil, 0, false
	}
	old := make([]*session, 0, len(d.sessions))
	for o := range d.sessions {
		old = append(old, o)
	}
	d.sessions[sess] = struct{}{}
	d.st.mu.Lock()
	d.st.current = sess
	d.st.mu.Unlock()
	return d, old, len(d.sessions), true
}

// authenticate finds the device a login payload names and checks the
// handshake's static key, without attaching a connection.
func (r *registry) authenticate(user string, dev uint16, noisePub [32]byte) (*device, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.devices[jid.JID{User: user, Device: dev, Server: jid.DefaultUserServer}]
	if !ok || subtle.ConstantTimeCompare(d.noisePub[:], noisePub[:]) != 1 {
		return nil, false
	}
	return d, true
}

// detach removes a logged-in connection from its device.
func (r *registry) detach(d *device, sess *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(d.sessions, sess)
	d.st.mu.Lock()
	if d.st.current == sess {
		d.st.current = nil
	}
	if d.st.ready == sess {
		d.st.ready = nil
	}
	d.st.mu.Unlock()
}

// lookup finds a device by its PN or LID device JID.
func (r *registry) lookup(j jid.JID) (*device, bool) {
	if d, ok := r.devices[j]; ok {
		return d, true
	}
	d, ok := r.byLID[j]
	return d, ok
}

// remove unlinks a device and returns it with its connections. Its pending
// stanzas are dropped; hadPrekeys tells whether it counted in
// devices_with_prekeys.
func (r *registry) remove(j jid.JID) (d *device, sessions []*session, hadPrekeys bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.lookup(j)
	if !ok {
		return nil, nil, false, ErrUnknownDevice
	}
	delete(r.devices, d.jid)
	delete(r.byLID, d.lid)
	sessions = make([]*session, 0, len(d.sessions))
	for s := range d.sessions {
		sessions = append(sessions, s)
	}
	d.st.mu.Lock()
	d.st.removed = true
	hadPrekeys = d.st.prekeys > 0
	d.st.pending, d.st.order = nil, nil
	d.st.mu.Unlock()
	return d, sessions, hadPrekeys, nil
}

// sessionsOf returns the logged-in connections of a device.
func (r *registry) sessionsOf(j jid.JID) ([]*session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.lookup(j)
	if !ok {
		return nil, ErrUnknownDevice
	}
	out := make([]*session, 0, len(d.sessions))
	for s := range d.sessions {
		out = append(out, s)
	}
	return out, nil
}

// companionsOf returns the paired companions of the account whose phone
// number user is (server must be s.whatsapp.net), ordered by device
// number, and whether there is such an account.
func (r *registry) companionsOf(user, server string) ([]*device, bool) {
	if server != jid.DefaultUserServer {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.accounts[user]
	if a == nil {
		return nil, false
	}
	var out []*device
	for n := uint16(1); n != 0 && n <= a.nextDevice; n++ {
		if d, ok := r.devices[jid.JID{User: user, Device: n, Server: jid.DefaultUserServer}]; ok {
			out = append(out, d)
		}
	}
	return out, true
}

// Device describes a paired companion (Server.Devices, GET /devices).
type Device struct {
	JID         string    `json:"jid"`
	LID         string    `json:"lid"`
	OS          string    `json:"os,omitempty"`
	PairedAt    time.Time `json:"paired_at"`
	Connections int       `json:"connections"`
}

// devicesList returns the paired devices sorted by JID.
func (r *registry) devicesList() []Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Device, 0, len(r.devices))
	for _, d := range r.devices {
		out = append(out, Device{JID: d.jid.String(), LID: d.lid.String(), OS: d.os, PairedAt: d.pairedAt, Connections: len(d.sessions)})
	}
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.JID, b.JID) })
	return out
}
