package emulator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// maxPrekeysPerUpload is the most one-time prekeys one upload may carry:
// 812, what whatsmeow and Baileys upload the first time.
const maxPrekeysPerUpload = 812

// prekeyUploadChildren are the children of a prekey upload, each once.
var prekeyUploadChildren = []string{"registration", "type", "identity", "list", "skey"}

// checkPrekeyUpload validates an upload strictly (PROTOCOL.md 9.8) against
// the device's pairing: <iq xmlns="encrypt" type="set" to="s.whatsapp.net"
// id> with <registration> (4 bytes, the registration ID of pairing),
// <type> (05), <identity> (32 bytes, the device's identity key), <list> of
// 1..812 <key><id>3 bytes</id><value>32 bytes</value></key> with distinct
// IDs and values not of small order, and <skey><id>3</id><value>32</value><signature>64</signature>
// </skey> whose signature verifies with the identity key over 05 || value.
// The signed prekey must be the one of the registration. It returns the
// one-time prekeys.
func checkPrekeyUpload(n node.Node, d *device) ([]oneTimePreKey, error) {
	if to, ok := n.AttrJID("to"); !ok || to != jid.ServerJID {
		return nil, errors.New("to is not s.whatsapp.net (as a JID)")
	}
	if n.Kind() != node.KindChildren {
		return nil, errors.New("no children")
	}
	seen := map[string]*node.Node{}
	for i := range n.Children() {
		c := &n.Children()[i]
		known := false
		for _, t := range prekeyUploadChildren {
			known = known || c.Tag == t
		}
		switch {
		case !known:
			return nil, fmt.Errorf("unexpected child <%s>", c.Tag)
		case seen[c.Tag] != nil:
			return nil, fmt.Errorf("<%s> twice", c.Tag)
		}
		seen[c.Tag] = c
	}
	for _, t := range prekeyUploadChildren {
		if seen[t] == nil {
			return nil, fmt.Errorf("no <%s>", t)
		}
	}
	reg, err := leafBytes(seen["registration"], 4)
	if err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint32(reg) != d.regID {
		return nil, errors.New("<registration> is not the registration ID sent at pairing")
	}
	typ, err := leafBytes(seen["type"], 1)
	if err != nil {
		return nil, err
	}
	if typ[0] != 5 {
		return nil, fmt.Errorf("<type> is %02x, want 05", typ[0])
	}
	ident, err := leafBytes(seen["identity"], 32)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(ident, d.identityPub[:]) {
		return nil, errors.New("<identity> is not the device's identity key")
	}

	list := seen["list"]
	keys := list.Children()
	if list.Kind() != node.KindChildren || len(keys) == 0 || len(keys) > maxPrekeysPerUpload {
		return nil, fmt.Errorf("<list> has %d keys, want 1..%d", len(keys), maxPrekeysPerUpload)
	}
	out := make([]oneTimePreKey, 0, len(keys))
	distinct := make(map[uint32]bool, len(keys))
	for i := range keys {
		k := &keys[i]
		if k.Tag != "key" {
			return nil, fmt.Errorf("<list> holds a <%s>", k.Tag)
		}
		key, err := readKey(k)
		if err != nil {
			return nil, fmt.Errorf("<key> %d: %w", i, err)
		}
		if distinct[key.id] {
			return nil, fmt.Errorf("prekey ID %d twice in one upload", key.id)
		}
		distinct[key.id] = true
		out = append(out, key)
	}

	skid, val, sig, err := readSignedKey(seen["skey"])
	if err != nil {
		return nil, fmt.Errorf("<skey>: %w", err)
	}
	if skid != d.skey.id || val != d.skey.pub {
		return nil, errors.New("<skey> is not the signed prekey the device registered with")
	}
	if !crypto.Verify(d.identityPub[:], append([]byte{5}, val[:]...), sig[:]) {
		return nil, errors.New("<skey> signature does not verify with the identity key over 05 || value")
	}
	return out, nil
}

// readKey reads <key><id>3 bytes</id><value>32 bytes</value></key>, a
// public key not of small order.
func readKey(k *node.Node) (oneTimePreKey, error) {
	parts, err := exactChildren(k, "id", "value")
	if err != nil {
		return oneTimePreKey{}, err
	}
	id, err := keyID(parts[0])
	if err != nil {
		return oneTimePreKey{}, err
	}
	pub, err := leafBytes(parts[1], 32)
	if err != nil {
		return oneTimePreKey{}, err
	}
	if err := crypto.CheckPublicKey(pub); err != nil {
		return oneTimePreKey{}, fmt.Errorf("<value>: %w", err)
	}
	return oneTimePreKey{id: id, pub: [32]byte(pub)}, nil
}

// readSignedKey reads <skey><id>3</id><value>32</value><signature>64
// </signature></skey>; the caller checks the signature.
func readSignedKey(k *node.Node) (id uint32, pub [32]byte, sig [64]byte, err error) {
	parts, err := exactChildren(k, "id", "value", "signature")
	if err != nil {
		return 0, pub, sig, err
	}
	if id, err = keyID(parts[0]); err != nil {
		return 0, pub, sig, err
	}
	v, err := leafBytes(parts[1], 32)
	if err != nil {
		return 0, pub, sig, err
	}
	if err := crypto.CheckPublicKey(v); err != nil {
		return 0, pub, sig, fmt.Errorf("<value>: %w", err)
	}
	s, err := leafBytes(parts[2], 64)
	if err != nil {
		return 0, pub, sig, err
	}
	return id, [32]byte(v), [64]byte(s), nil
}

// keyID reads a 3-byte prekey ID.
func keyID(n *node.Node) (uint32, error) {
	b, err := leafBytes(n, 3)
	if err != nil {
		return 0, err
	}
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]), nil
}

// exactChildren returns n's children, which must be exactly the given tags
// in any order, each once.
func exactChildren(n *node.Node, tags ...string) ([]*node.Node, error) {
	out := make([]*node.Node, len(tags))
	children := n.Children()
	if len(children) != len(tags) {
		return nil, fmt.Errorf("%d children, want %d (%v)", len(children), len(tags), tags)
	}
	for i := range children {
		c := &children[i]
		found := false
		for j, t := range tags {
			if c.Tag == t {
				if out[j] != nil {
					return nil, fmt.Errorf("<%s> twice", t)
				}
				out[j], found = c, true
			}
		}
		if !found {
			return nil, fmt.Errorf("unexpected child <%s>", c.Tag)
		}
	}
	return out, nil
}

// leafBytes returns n's byte content, which must be size bytes.
func leafBytes(n *node.Node, size int) ([]byte, error) {
	b, ok := n.Bytes()
	switch {
	case !ok:
		return nil, fmt.Errorf("<%s> content is not bytes", n.Tag)
	case len(b) != size:
		return nil, fmt.Errorf("<%s> is %d bytes, want %d", n.Tag, len(b), size)
	}
	return b, nil
}

// acceptPrekeys records an upload of the given one-time prekeys or, with
// keys nil, of n anonymous keys (the lenient upload outside day-one mode,
// whose values the server does not read: bundles of such a device carry no
// one-time prekey). A key whose ID the device uploaded before is accepted
// again and not counted twice: a client whose upload result was lost
// offers the same keys again, as the reference client does (whether the
// real server accepts an ID a peer has already used is not known; this one
// does). The public halves are kept to hand out in bundles, oldest first;
// a device that uploads the reference clients' first batch of 812 keeps
// about 30 KB. It updates the count and the devices_with_prekeys gauge.
func (s *Server) acceptPrekeys(d *device, keys []oneTimePreKey, n int) {
	d.st.mu.Lock()
	defer d.st.mu.Unlock()
	if keys != nil {
		n = 0
		for _, k := range keys {
			if !d.st.prekeyIDs.contains(k.id) {
				d.st.prekeyIDs.add(k.id)
				d.st.published = append(d.st.published, k)
				n++
			}
		}
	}
	before := d.st.prekeys
	d.st.prekeys += int64(n)
	if d.st.prekeys >= minPrekeys {
		d.st.lowNotified = false
	}
	s.stats.update(func(st *Stats) {
		st.PrekeyUploads++
		if before == 0 && d.st.prekeys > 0 && !d.st.removed {
			st.DevicesWithPrekeys++
		}
	})
}

// takePreKey uses up one of the device's one-time prekeys (a peer fetched
// it, or started a session with it): the count falls by one and the oldest
// public half known, if any, is returned and forgotten. lowCount is the
// count to announce in an encrypt notification when it fell below
// minPrekeys for the first time since the last upload (-1: none due);
// emptied tells that the device left devices_with_prekeys. Caller holds
// d.st.mu; ok is false when the count was already 0.
func (ds *deviceState) takePreKey() (k oneTimePreKey, hasValue bool, lowCount int64, emptied, ok bool) {
	lowCount = -1
	if ds.prekeys <= 0 {
		return k, false, -1, false, false
	}
	ds.prekeys--
	if len(ds.published) > 0 {
		k, hasValue = ds.published[0], true
		ds.published[0] = oneTimePreKey{}
		ds.published = ds.published[1:]
		if len(ds.published) == 0 {
			ds.published = nil // let the backing array go
		}
	}
	if ds.prekeys < minPrekeys && !ds.lowNotified {
		ds.lowNotified = true
		lowCount = ds.prekeys
	}
	return k, hasValue, lowCount, ds.prekeys == 0, true
}
