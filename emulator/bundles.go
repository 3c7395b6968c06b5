package emulator

import (
	"fmt"
	"time"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// PreKeyBundle hands out the prekey bundle of the device j names, as the
// server does for a peer that starts a session: our paired companions (PN
// or LID JID) from what they registered and uploaded, an account's phone
// (device 0 of an emulated account) and a contact's devices from their own
// keys. The bundle carries the device's oldest one-time prekey, which the
// server then forgets, so no two fetches get the same one; when none is
// left it has none (PreKey nil), as the real server's. A companion whose
// count falls below minPrekeys gets an encrypt notification through its
// queue. Errors wrap ErrUnknownDevice.
func (s *Server) PreKeyBundle(j jid.JID) (signal.Bundle, error) {
	s.reg.mu.Lock()
	d, ok := s.reg.lookup(j)
	var phone *SignalDevice
	if !ok && j.Device == 0 && j.Server == jid.DefaultUserServer {
		if a := s.reg.accounts[j.User]; a != nil {
			var err error
			if phone, err = a.phoneDevice(); err != nil {
				s.reg.mu.Unlock()
				return signal.Bundle{}, err
			}
		}
	}
	s.reg.mu.Unlock()
	switch {
	case ok:
		return s.companionBundle(d)
	case phone != nil:
		return phone.takeBundle()
	}
	if c, ok := s.contactDevice(j); ok {
		return c.takeBundle()
	}
	return signal.Bundle{}, fmt.Errorf("%w: %s", ErrUnknownDevice, j)
}

// companionBundle is PreKeyBundle for one of our paired devices.
func (s *Server) companionBundle(d *device) (signal.Bundle, error) {
	b := signal.Bundle{
		RegistrationID:        d.regID,
		IdentityKey:           d.identityPub,
		SignedPreKeyID:        d.skey.id,
		SignedPreKey:          d.skey.pub,
		SignedPreKeySignature: d.skey.sig,
	}
	d.st.mu.Lock()
	if d.st.removed {
		d.st.mu.Unlock()
		return signal.Bundle{}, fmt.Errorf("%w: %s", ErrUnknownDevice, d.jid)
	}
	k, hasValue, lowCount, emptied, _ := d.st.takePreKey()
	d.st.mu.Unlock()
	if hasValue {
		b.PreKeyID, b.PreKey = k.id, &k.pub
	}
	if emptied {
		s.stats.add(func(st *Stats) *int64 { return &st.DevicesWithPrekeys }, -1)
	}
	if lowCount >= 0 {
		s.enqueue(d, func(seq uint64, salt uint32) node.Node {
			return encryptNotification(serverStanzaID(seq, salt), time.Now(), lowCount)
		})
	}
	return b, nil
}
