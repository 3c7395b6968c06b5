package e2e

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// MaxDevicesPerUser bounds the devices read for one user from a usync
// answer: a phone and its companions (WhatsApp allows four companions;
// the bound leaves room and caps what a bad answer can make us encrypt).
const MaxDevicesPerUser = 64

// ErrMalformed: an answer of the server does not have the expected shape.
var ErrMalformed = errors.New("e2e: malformed answer")

// DeviceQuery is the usync IQ asking for the device lists of users (JIDs
// without device; a device is dropped).
func DeviceQuery(id, sid string, users []jid.JID) node.Node {
	list := make([]node.Node, len(users))
	for i, u := range users {
		list[i] = node.New("user", node.JIDAttr("jid", u.ToNonAD()))
	}
	return node.IQ(id, jid.ServerJID, "get", "usync", node.New("usync",
		node.StrAttr("sid", sid), node.StrAttr("mode", "query"), node.StrAttr("last", "true"),
		node.StrAttr("index", "0"), node.StrAttr("context", "message"),
	).WithChildren(
		node.New("query").WithChildren(node.New("devices", node.StrAttr("version", "2"))),
		node.New("list").WithChildren(list...),
	))
}

// ParseDevices reads a usync answer: the device JIDs of every user it
// lists, in the answer's order, device 0 (the phone) included. A user
// without a device list has no devices (not on WhatsApp). Hosted devices
// (is_hosted) are skipped: they are not reached through this path.
func ParseDevices(answer node.Node) (map[jid.JID][]jid.JID, error) {
	usync, ok := answer.Child("usync")
	if !ok {
		return nil, fmt.Errorf("%w: usync answer without <usync>", ErrMalformed)
	}
	list, ok := usync.Child("list")
	if !ok {
		return nil, fmt.Errorf("%w: usync answer without <list>", ErrMalformed)
	}
	out := make(map[jid.JID][]jid.JID)
	for u := range list.ChildrenByTag("user") {
		user, ok := u.AttrJID("jid")
		if !ok || user.User == "" {
			return nil, fmt.Errorf("%w: <user> without a jid", ErrMalformed)
		}
		user = user.ToNonAD()
		var devs []jid.JID
		if d, ok := u.Child("devices"); ok {
			if dl, ok := d.Child("device-list"); ok {
				for dev := range dl.ChildrenByTag("device") {
					id, ok := dev.Attr("id")
					n, err := strconv.ParseUint(id, 10, 16)
					if !ok || err != nil {
						return nil, fmt.Errorf("%w: <device> of %s with id %q", ErrMalformed, user, id)
					}
					if h, _ := dev.Attr("is_hosted"); h == "true" {
						continue
					}
					if len(devs) == MaxDevicesPerUser {
						return nil, fmt.Errorf("%w: more than %d devices for %s", ErrMalformed, MaxDevicesPerUser, user)
					}
					d := user
					d.Device = uint16(n)
					devs = append(devs, d)
				}
			}
		}
		out[user] = devs
	}
	return out, nil
}
