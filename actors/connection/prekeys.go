package connection

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// One-time prekey policy (PROTOCOL.md 9.8; the reference client's
// prekeys.go, Baileys the same numbers): after every login the client asks
// the server how many of its one-time prekeys it holds, and uploads when
// the server or the store has fewer than minPreKeys: initialPreKeys when
// neither has any (a new device), preKeyBatch otherwise. The server also
// says when it runs low, with <notification type=encrypt><count/>.
const (
	minPreKeys     = 5
	initialPreKeys = 812
	preKeyBatch    = 50
)

// preKeyCountIQ asks the server how many one-time prekeys it holds.
func preKeyCountIQ(id string) node.Node {
	return node.IQ(id, jid.ServerJID, "get", "encrypt", node.New("count"))
}

// serverPreKeyCount reads <count value=N/> from the count IQ's result or an
// encrypt notification.
func serverPreKeyCount(n node.Node) (int, bool) {
	c, ok := n.Child("count")
	if !ok {
		return 0, false
	}
	v, ok := c.AttrInt("value")
	if !ok || v < 0 || v > store.MaxPreKeyID {
		return 0, false
	}
	return int(v), true
}

// preparePreKeys decides whether prekeys must be uploaded for a server that
// holds serverCount of them and returns the keys to upload: those stored
// but never uploaded first, then fresh ones, generated and stored before
// they are returned (so that a key the server hands to a peer is always one
// we can find again). It returns no keys when nothing needs uploading.
func preparePreKeys(ctx context.Context, st store.Store, id string, serverCount int) ([]store.PreKey, error) {
	counts, err := st.PreKeyCounts(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("count stored prekeys: %w", err)
	}
	if serverCount >= minPreKeys && counts.Uploaded >= minPreKeys {
		return nil, nil
	}
	want := preKeyBatch
	if serverCount == 0 && counts.Uploaded == 0 {
		want = initialPreKeys
	}
	keys, err := st.PreKeysToUpload(ctx, id, want)
	if err != nil {
		return nil, fmt.Errorf("read prekeys to upload: %w", err)
	}
	missing := want - len(keys)
	if missing <= 0 {
		return keys, nil
	}
	fresh, err := addPreKeys(ctx, st, id, counts.MaxID, missing)
	if err != nil {
		return nil, err
	}
	return append(keys, fresh...), nil
}

// addPreKeys generates n new one-time prekeys numbered after maxID (the
// store's PreKeyCounts.MaxID) and stores them, not yet uploaded.
func addPreKeys(ctx context.Context, st store.Store, id string, maxID uint32, n int) ([]store.PreKey, error) {
	if uint64(maxID)+uint64(n) > store.MaxPreKeyID {
		return nil, fmt.Errorf("prekey IDs exhausted (%d used)", maxID)
	}
	fresh := make([]store.PreKey, n)
	for i := range fresh {
		if err := ctx.Err(); err != nil {
			return nil, err // the connection is gone: stop generating
		}
		k, err := store.NewPreKey(maxID + 1 + uint32(i))
		if err != nil {
			return nil, fmt.Errorf("generate prekey: %w", err)
		}
		fresh[i] = k
	}
	if err := st.AddPreKeys(ctx, id, fresh); err != nil {
		return nil, fmt.Errorf("store new prekeys: %w", err)
	}
	return fresh, nil
}

// preKeyUploadIQ is the upload of keys with the device's registration ID,
// identity key and signed prekey (PROTOCOL.md 9.8):
//
//	<iq xmlns=encrypt type=set><registration>4 bytes</registration><type>05</type>
//	<identity>32</identity><list><key><id>3</id><value>32</value></key>…</list>
//	<skey><id>3</id><value>32</value><signature>64</signature></skey></iq>
func preKeyUploadIQ(id string, d *store.Device, keys []store.PreKey) node.Node {
	list := make([]node.Node, len(keys))
	for i := range keys {
		list[i] = preKeyNode(keys[i])
	}
	return node.IQ(id, jid.ServerJID, "set", "encrypt",
		node.New("registration").WithBytes(registrationBytes(d.RegistrationID)),
		node.New("type").WithBytes([]byte{0x05}),
		node.New("identity").WithBytes(d.IdentityKey.Pub[:]),
		node.New("list").WithChildren(list...),
		signedPreKeyNode(d.SignedPreKey),
	)
}

// preKeyNode is a one-time prekey as uploads and retry receipts carry it:
// <key><id>3 bytes</id><value>32</value></key>.
func preKeyNode(k store.PreKey) node.Node {
	return node.New("key").WithChildren(
		node.New("id").WithBytes(id3(k.ID)),
		node.New("value").WithBytes(k.Pub[:]),
	)
}

// signedPreKeyNode is the signed prekey as uploads and retry receipts carry
// it: <skey><id>3</id><value>32</value><signature>64</signature></skey>.
func signedPreKeyNode(k store.SignedPreKey) node.Node {
	return node.New("skey").WithChildren(
		node.New("id").WithBytes(id3(k.ID)),
		node.New("value").WithBytes(k.Pub[:]),
		node.New("signature").WithBytes(k.Signature[:]),
	)
}

// id3 is a prekey ID as it travels: 3 bytes, big-endian.
func id3(id uint32) []byte { return []byte{byte(id >> 16), byte(id >> 8), byte(id)} }

// preKeyRange describes an upload for logs: "812 (1-812)".
func preKeyRange(keys []store.PreKey) string {
	if len(keys) == 0 {
		return "0"
	}
	return strconv.Itoa(len(keys)) + " (" + strconv.FormatUint(uint64(keys[0].ID), 10) + "-" + strconv.FormatUint(uint64(keys[len(keys)-1].ID), 10) + ")"
}

// onServerPreKeyCount starts an upload when the server's count (or the
// store's) is low, unless one is already under way on this connection. It
// reports whether it started one; its end (onPreKeysReady or
// onPreKeysUploaded) goes active.
func (c *conn) onServerPreKeyCount(ctx actor.Context, count int) bool {
	if c.cur.preKeysBusy || c.dev == nil || !c.dev.Paired() || c.cur.link == nil {
		return false
	}
	c.cur.preKeysBusy = true
	l, st, id, timeout := c.cur.link, c.deps.Store, c.deps.AccountID, c.deps.StoreTimeout
	self, root := ctx.Self(), ctx.ActorSystem().Root
	c.store.run(func() {
		pctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		var keys []store.PreKey
		err := pctx.Err() // after a wipe that came first, the old device's keys must not come back
		if err == nil {
			keys, err = preparePreKeys(pctx, st, id, count)
		}
		root.Send(self, &preKeysReady{gen: l.gen, keys: keys, err: err})
	})
	return true
}

func (c *conn) onPreKeysReady(ctx actor.Context, m *preKeysReady) {
	if m.err != nil {
		c.cur.preKeysBusy = false
		c.log.Error("prepare prekeys", slog.String("error", m.err.Error()))
		c.goActive(ctx)
		return
	}
	if len(m.keys) == 0 {
		c.cur.preKeysBusy = false
		c.goActive(ctx)
		return
	}
	id := c.newID()
	if c.write(ctx, preKeyUploadIQ(id, c.dev, m.keys), 0) != nil {
		return
	}
	c.cur.uploadID, c.cur.uploadTop, c.cur.uploadN = id, m.keys[len(m.keys)-1].ID, len(m.keys)
	c.log.Info("uploading prekeys", slog.String("keys", preKeyRange(m.keys)))
}

// onPreKeysUploaded records an upload the server accepted, so the keys are
// not offered again, and goes active. A refused upload (or one whose mark
// is lost) offers the same keys again at the next trigger, as the
// reference client does.
func (c *conn) onPreKeysUploaded(ctx actor.Context, n node.Node, ok bool) {
	c.cur.preKeysBusy = false
	defer c.goActive(ctx)
	if !ok {
		c.log.Warn("the server refused the prekey upload", slog.String("error", n.ErrorText()))
		return
	}
	c.deps.Observer.PreKeysUploaded(c.cur.uploadN)
	l, st, id, top, timeout, log := c.cur.link, c.deps.Store, c.deps.AccountID, c.cur.uploadTop, c.deps.StoreTimeout, c.log
	c.store.run(func() {
		ctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		err := ctx.Err()
		if err == nil {
			err = st.MarkPreKeysUploaded(ctx, id, top)
		}
		if err != nil {
			log.Warn("mark prekeys uploaded (they will be offered again)", slog.String("error", err.Error()))
		}
	})
}
