package e2e

import (
	"encoding/binary"
	"fmt"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// KeyQuery is the IQ fetching the prekey bundles of devices.
func KeyQuery(id string, devices []jid.JID) node.Node {
	users := make([]node.Node, len(devices))
	for i, d := range devices {
		users[i] = node.New("user", node.JIDAttr("jid", d), node.StrAttr("reason", "identity"))
	}
	return node.IQ(id, jid.ServerJID, "get", "encrypt", node.New("key").WithChildren(users...))
}

// BundleResult is one device's entry of a key-fetch answer: its bundle, or
// why there is none (the server's <error>, or a malformed entry).
type BundleResult struct {
	Bundle *signal.Bundle
	Err    error
}

// ParseBundles reads a key-fetch answer: one result per device it lists.
// Key material is checked for size only; signal.Session.Initiate verifies
// the signed prekey's signature and the keys' order.
func ParseBundles(answer node.Node) (map[jid.JID]BundleResult, error) {
	list, ok := answer.Child("list")
	if !ok {
		return nil, fmt.Errorf("%w: key answer without <list>", ErrMalformed)
	}
	out := make(map[jid.JID]BundleResult)
	for u := range list.ChildrenByTag("user") {
		dev, ok := u.AttrJID("jid")
		if !ok {
			return nil, fmt.Errorf("%w: key answer <user> without a jid", ErrMalformed)
		}
		b, err := parseBundle(u)
		out[dev] = BundleResult{Bundle: b, Err: err}
	}
	return out, nil
}

func parseBundle(u *node.Node) (*signal.Bundle, error) {
	if e, ok := u.Child("error"); ok {
		return nil, fmt.Errorf("the server has no bundle: %s", e.ErrorText())
	}
	var b signal.Bundle
	reg, err := leaf(u, "registration", 4)
	if err != nil {
		return nil, err
	}
	b.RegistrationID = binary.BigEndian.Uint32(reg)
	if err := parseKeys(u, &b); err != nil {
		return nil, err
	}
	return &b, nil
}

// parseKeys reads a bundle's keys from the children of n: <identity>,
// <skey> with its <signature>, and the optional one-time <key>.
func parseKeys(n *node.Node, b *signal.Bundle) error {
	ident, err := leaf(n, "identity", 32)
	if err != nil {
		return err
	}
	copy(b.IdentityKey[:], ident)
	skey, ok := n.Child("skey")
	if !ok {
		return fmt.Errorf("%w: no <skey>", ErrMalformed)
	}
	if b.SignedPreKeyID, err = keyInto(skey, &b.SignedPreKey); err != nil {
		return err
	}
	sig, err := leaf(skey, "signature", 64)
	if err != nil {
		return err
	}
	copy(b.SignedPreKeySignature[:], sig)
	if k, ok := n.Child("key"); ok {
		b.PreKey = new([32]byte)
		if b.PreKeyID, err = keyInto(k, b.PreKey); err != nil {
			return err
		}
	}
	return nil
}

// keyInto reads <id>3 bytes</id><value>32 bytes</value> of a (signed)
// prekey node.
func keyInto(n *node.Node, pub *[32]byte) (uint32, error) {
	id, err := leaf(n, "id", 3)
	if err != nil {
		return 0, err
	}
	v, err := leaf(n, "value", 32)
	if err != nil {
		return 0, err
	}
	copy(pub[:], v)
	return uint32(id[0])<<16 | uint32(id[1])<<8 | uint32(id[2]), nil
}

// leaf returns the bytes of n's child tag, which must be size bytes long.
func leaf(n *node.Node, tag string, size int) ([]byte, error) {
	c, ok := n.Child(tag)
	if !ok {
		return nil, fmt.Errorf("%w: <%s> without <%s>", ErrMalformed, n.Tag, tag)
	}
	b, ok := c.Bytes()
	if !ok || len(b) != size {
		return nil, fmt.Errorf("%w: <%s> is not %d bytes", ErrMalformed, tag, size)
	}
	return b, nil
}

// ParseRetryKeys reads the prekey bundle a retry receipt carries from its
// second on (whatsmeow retry.go sendRetryReceipt), for the sender to build
// a new session with the device that sent it; nil when it carries none:
//
//	<receipt … type=retry><retry/><registration>4</registration>
//	  <keys><type>05</type><identity>32</identity><key><id>3</id><value>32</value></key>
//	  <skey><id>3</id><value>32</value><signature>64</signature></skey><device-identity/></keys></receipt>
//
// The signed prekey's signature is checked when the session is built
// (signal.Session.Initiate), as for a fetched bundle.
func ParseRetryKeys(receipt node.Node) (*signal.Bundle, error) {
	keys, ok := receipt.Child("keys")
	if !ok {
		return nil, nil
	}
	var b signal.Bundle
	reg, err := leaf(&receipt, "registration", 4)
	if err != nil {
		return nil, err
	}
	b.RegistrationID = binary.BigEndian.Uint32(reg)
	typ, err := leaf(keys, "type", 1)
	if err != nil {
		return nil, err
	}
	if typ[0] != 5 {
		return nil, fmt.Errorf("%w: <keys><type> %02x, want 05", ErrMalformed, typ[0])
	}
	if err := parseKeys(keys, &b); err != nil {
		return nil, err
	}
	return &b, nil
}
