package emulator

import (
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// devicesOf lists the devices of user the server knows, by device number:
// an emulated account's phone (device 0) and paired companions, or a
// contact's two devices; none for anyone else.
func (s *Server) devicesOf(user string) []jid.JID {
	if companions, ok := s.reg.companionsOf(user, jid.DefaultUserServer); ok {
		out := []jid.JID{jid.New(user, jid.DefaultUserServer)}
		for _, d := range companions {
			out = append(out, d.jid)
		}
		return out
	}
	c, ok := s.Contact(jid.New(user, jid.DefaultUserServer))
	if !ok {
		return nil
	}
	out := make([]jid.JID, 0, len(c.devices))
	for _, d := range c.devices {
		out = append(out, d.jid)
	}
	return out
}

// answerUsync answers a device-list query, <iq xmlns=usync type=get><usync
// sid mode=query context=message><query><devices version=2/></query><list>
// <user jid/>…</list></usync></iq>, with every device of each user
// (devicesOf; no key-index, which the reference client does not read):
//
//	<usync sid><list><user jid><devices><device-list><device id/>…</device-list>
//	<key-index-list ts/></devices></user>…</list></usync>
//
// A query for anything but devices is answered 501, one with no or too
// many users 400.
func (sess *session) answerUsync(id string, usync *node.Node) node.Node {
	query, okq := usync.Child("query")
	list, okl := usync.Child("list")
	if !okq || !okl {
		sess.softViolation("usync without <query> or <list>")
		return iqError(id, 400, "bad-request")
	}
	if _, ok := query.Child("devices"); !ok || len(query.Children()) != 1 {
		return iqError(id, 501, "feature-not-implemented")
	}
	users := list.Children()
	if len(users) == 0 || len(users) > maxKeyFetch {
		sess.softViolation("usync of %d users (want 1..%d)", len(users), maxKeyFetch)
		return iqError(id, 400, "bad-request")
	}
	out := make([]node.Node, 0, len(users))
	for i := range users {
		u, ok := users[i].AttrJID("jid")
		if users[i].Tag != "user" || !ok || u.Server != jid.DefaultUserServer || u.Device != 0 {
			sess.softViolation("usync: a <%s> without a user jid", users[i].Tag)
			return iqError(id, 400, "bad-request")
		}
		var devs []node.Node
		for _, d := range sess.s.devicesOf(u.User) {
			devs = append(devs, node.New("device", node.IntAttr("id", int64(d.Device))))
		}
		out = append(out, node.New("user", node.JIDAttr("jid", u)).WithChildren(
			node.New("devices").WithChildren(
				node.New("device-list").WithChildren(devs...),
				node.New("key-index-list", node.IntAttr("ts", 0)))))
	}
	sid, _ := usync.Attr("sid")
	return serverIQ(id, "result", node.New("usync", node.StrAttr("sid", sid)).WithChildren(node.New("list").WithChildren(out...)))
}
