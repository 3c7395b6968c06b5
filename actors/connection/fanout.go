package connection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// sendRun prepares one message in its own goroutine: the recipient's and
// our own device lists (usync), prekey bundles for the devices without a
// session, then, as one store job, a session per device (new ones from
// their bundles), one ciphertext per device and ApplySignal of every
// session change. It holds copies of what it needs and talks to the
// actor only by messages.
type sendRun struct {
	out      *outgoing
	own      jid.JID // our device JID
	local    signal.LocalIdentity
	identity []byte // our ADVSignedDeviceIdentity, for <device-identity>
	l        *link
	st       store.SignalStore
	q        *storeQueue
	account  string
	log      *slog.Logger

	timeout, storeTimeout time.Duration
	self                  *actor.PID
	root                  *actor.RootContext
}

// run prepares the message and hands it to the actor, unless the link
// ended meanwhile (then the actor reported the send failed, and may be
// stopped: see link.receive).
func (r *sendRun) run() {
	msg, err := r.prepare()
	if r.l.ctx.Err() != nil {
		return
	}
	r.root.Send(r.self, &sendReady{gen: r.l.gen, out: r.out, msg: msg, err: err})
}

// errNoDevices: the recipient has no device: the number is not on
// WhatsApp.
var errNoDevices = errors.New("the recipient has no devices (not on WhatsApp)")

func (r *sendRun) prepare() (node.Node, error) {
	switch {
	case r.out.retry != nil:
		return r.prepareRetry()
	case r.out.to.Server == jid.GroupServer:
		return r.prepareGroup()
	}
	ownUser := r.own.ToNonAD()
	lists, err := r.deviceLists([]jid.JID{r.out.to, ownUser})
	if err != nil {
		return node.Node{}, err
	}
	devices := lists[r.out.to]
	if len(devices) == 0 {
		return node.Node{}, errNoDevices
	}
	for _, d := range lists[ownUser] {
		if d.Device != r.own.Device {
			devices = append(devices, d)
		}
	}

	bundles, err := r.bundlesFor(devices)
	if err != nil {
		return node.Node{}, err
	}

	var parts []e2e.Part
	err = r.inStore(func(ctx context.Context) error {
		parts, err = r.encrypt(ctx, devices, bundles)
		return err
	})
	if err != nil {
		return node.Node{}, err
	}
	return e2e.Message(r.out.id, r.out.to, parts, r.identity), nil
}

// bundlesFor fetches the prekey bundles of those of devices we have no
// session with (nil when there is none).
func (r *sendRun) bundlesFor(devices []jid.JID) (map[jid.JID]e2e.BundleResult, error) {
	var missing []jid.JID
	err := r.inStore(func(ctx context.Context) error {
		for _, d := range devices {
			_, err := r.st.Session(ctx, r.account, peerAddress(d))
			switch {
			case errors.Is(err, store.ErrNotFound):
				missing = append(missing, d)
			case err != nil:
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read sessions: %w", err)
	}
	if len(missing) == 0 {
		return nil, nil
	}
	bundles := make(map[jid.JID]e2e.BundleResult, len(missing))
	for chunk := range slices.Chunk(missing, maxQueryUsers) {
		ans, err := r.iq(e2e.KeyQuery("", chunk))
		if err != nil {
			return nil, fmt.Errorf("prekey bundles: %w", err)
		}
		got, err := e2e.ParseBundles(ans)
		if err != nil {
			return nil, fmt.Errorf("prekey bundles: %w", err)
		}
		maps.Copy(bundles, got)
	}
	return bundles, nil
}

// maxQueryUsers bounds the users of one usync query and the devices of
// one prekey-bundle fetch; a group's larger lists go in several. The real
// server's limit is not documented (both reference clients send one query
// whatever the size); the emulator answers 400 beyond 512.
const maxQueryUsers = 500

// deviceLists asks for the device lists of users, maxQueryUsers at a time.
func (r *sendRun) deviceLists(users []jid.JID) (map[jid.JID][]jid.JID, error) {
	lists := make(map[jid.JID][]jid.JID, len(users))
	for chunk := range slices.Chunk(users, maxQueryUsers) {
		ans, err := r.iq(e2e.DeviceQuery("", r.out.id, chunk))
		if err != nil {
			return nil, fmt.Errorf("device list: %w", err)
		}
		got, err := e2e.ParseDevices(ans)
		if err != nil {
			return nil, fmt.Errorf("device list: %w", err)
		}
		maps.Copy(lists, got)
	}
	return lists, nil
}

// encrypt encrypts the message for every device it can (a device without
// a session and without a usable bundle is skipped and logged, as the
// reference client does) and stores every session change before it
// returns; at least one of the recipient's devices must be reached.
func (r *sendRun) encrypt(ctx context.Context, devices []jid.JID, bundles map[jid.JID]e2e.BundleResult) ([]e2e.Part, error) {
	plain, synced, err := plaintexts(r.out.to, r.out.text)
	if err != nil {
		return nil, err
	}
	var changes store.SignalChanges
	parts := make([]e2e.Part, 0, len(devices))
	reached := false
	for _, d := range devices {
		pt := plain
		if d.User == r.own.User {
			pt = synced
		}
		p, ok, err := r.sealFor(ctx, d, bundles, pt, &changes, false)
		if err != nil {
			return nil, err
		}
		if ok {
			parts = append(parts, p)
			reached = reached || d.User == r.out.to.User
		}
	}
	if !reached {
		return nil, fmt.Errorf("none of the recipient's %d devices could be reached", len(devices))
	}
	if err := r.apply(ctx, changes); err != nil {
		return nil, fmt.Errorf("store sessions: %w", err)
	}
	return parts, nil
}

// apply writes changes (ApplySignal) and logs the identity keys that
// changed.
func (r *sendRun) apply(ctx context.Context, changes store.SignalChanges) error {
	applied, err := r.st.ApplySignal(ctx, r.account, changes)
	if err != nil {
		return err
	}
	for _, addr := range applied.ChangedIdentities {
		r.log.Warn("a contact's identity key changed", slog.String("peer", addr))
	}
	return nil
}

// sealFor pads and encrypts plaintext for device d with its session, a
// new one from its bundle when there is none (or, fresh, whatever is
// stored), and adds the session change (and a new session's identity) to
// changes. A device without a session and without a usable bundle is
// skipped and logged (false), as the reference client does.
func (r *sendRun) sealFor(ctx context.Context, d jid.JID, bundles map[jid.JID]e2e.BundleResult, plaintext []byte, changes *store.SignalChanges, fresh bool) (e2e.Part, bool, error) {
	addr := peerAddress(d)
	var sess signal.Session
	rec, err := r.st.Session(ctx, r.account, addr)
	switch {
	case fresh:
	case err == nil:
		if err := sess.UnmarshalBinary(rec); err != nil {
			return e2e.Part{}, false, fmt.Errorf("session with %s: %w", addr, err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return e2e.Part{}, false, fmt.Errorf("read session with %s: %w", addr, err)
	}
	if !sess.HasCurrent() {
		b := bundles[d]
		if b.Bundle == nil {
			r.log.Warn("no session and no prekey bundle; device skipped", slog.String("device", d.String()), slog.Any("error", b.Err))
			return e2e.Part{}, false, nil
		}
		if err := sess.Initiate(r.local, b.Bundle); err != nil {
			r.log.Warn("prekey bundle refused; device skipped", slog.String("device", d.String()), slog.String("error", err.Error()))
			return e2e.Part{}, false, nil
		}
		changes.Identities = append(changes.Identities, store.IdentityChange{Addr: addr, Key: b.Bundle.IdentityKey})
	}
	ct, err := sess.Encrypt(signal.Pad(append(make([]byte, 0, len(plaintext)+16), plaintext...)))
	if err != nil {
		return e2e.Part{}, false, fmt.Errorf("encrypt for %s: %w", addr, err)
	}
	if rec, err = sess.MarshalBinary(); err != nil {
		return e2e.Part{}, false, fmt.Errorf("session with %s: %w", addr, err)
	}
	changes.Sessions = append(changes.Sessions, store.SessionChange{Addr: addr, Record: rec})
	return e2e.Part{Device: d, Ciphertext: ct}, true, nil
}

// iq asks the actor to write an IQ and waits for its answer (at most
// timeout); an error answer is an error.
func (r *sendRun) iq(n node.Node) (node.Node, error) {
	if r.l.ctx.Err() != nil {
		return node.Node{}, errNotConnected
	}
	reply := make(chan node.Node, 1)
	r.root.Send(r.self, &sendIQ{gen: r.l.gen, iq: n, reply: reply})
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case a := <-reply:
		if typ, _ := a.Attr("type"); typ != "result" {
			return node.Node{}, fmt.Errorf("the server answered %s", a.ErrorText())
		}
		return a, nil
	case <-t.C:
		return node.Node{}, fmt.Errorf("no answer within %s", r.timeout)
	case <-r.l.ctx.Done():
		return node.Node{}, errNotConnected
	}
}

// inStore runs job on the account's store queue (bounded by storeTimeout,
// not at all once the connection ended) and waits for it.
func (r *sendRun) inStore(job func(ctx context.Context) error) error {
	done := make(chan error, 1)
	r.q.run(func() {
		ctx, cancel := context.WithTimeout(r.l.ctx, r.storeTimeout)
		defer cancel()
		if err := ctx.Err(); err != nil {
			done <- err
			return
		}
		done <- job(ctx)
	})
	return <-done
}

// peerAddress is the store's address of a device.
func peerAddress(d jid.JID) string {
	domain, _ := d.DomainType()
	return store.PeerAddress(d.User, domain, d.Device)
}

// localIdentity is the device's Signal identity.
func localIdentity(d *store.Device) signal.LocalIdentity {
	return signal.LocalIdentity{Key: &crypto.KeyPair{Pub: d.IdentityKey.Pub, Priv: d.IdentityKey.Priv}, RegistrationID: d.RegistrationID}
}

// plaintexts are the serialized Messages of a text send: the text
// (conversation) for the recipient's devices, and for our own other
// devices the same wrapped in a DeviceSentMessage naming the chat, as the
// reference client sends them (whatsmeow marshalMessage).
func plaintexts(to jid.JID, text string) (plain, synced []byte, err error) {
	msg := &waproto.Message{Conversation: proto.String(text)}
	if plain, err = proto.Marshal(msg); err != nil {
		return nil, nil, fmt.Errorf("marshal message: %w", err)
	}
	dsm := &waproto.Message{DeviceSentMessage: &waproto.Message_DeviceSent{DestinationJID: proto.String(to.String()), Message: msg}}
	if synced, err = proto.Marshal(dsm); err != nil {
		return nil, nil, fmt.Errorf("marshal device-sent message: %w", err)
	}
	return plain, synced, nil
}
