package connection

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Sending to a group. The group's participants come from the group info
// IQ (w:g2), their devices and our own other devices from one usync
// query; the text is encrypted once with our sender key for the group
// (skmsg), and the devices that do not hold that key yet (ownSenderKey
// records who does) get its distribution message in a 1:1 part of the
// same stanza, as Baileys does. whatsmeow sends the distribution to every
// device on every send instead; both are accepted by the server. The key,
// its new holders and the 1:1 sessions are stored in one write before the
// message goes out.
//
// A member device that cannot decrypt the skmsg (it lost the key, or was
// added without our knowing) sends a retry receipt from the group; we
// answer it with the message encrypted 1:1 for that device alone, our
// sender key's distribution inside (retry.go, sealGroupRetry).

// errNoGroupDevices: no device besides ours is in the group.
var errNoGroupDevices = errors.New("the group has no other device")

// prepareGroup builds the group message (see above).
func (r *sendRun) prepareGroup() (node.Node, error) {
	ans, err := r.iq(e2e.GroupInfoQuery("", r.out.to))
	if err != nil {
		return node.Node{}, fmt.Errorf("group participants: %w", err)
	}
	users, err := e2e.ParseGroupParticipants(ans)
	if err != nil {
		return node.Node{}, fmt.Errorf("group participants: %w", err)
	}
	ownUser := r.own.ToNonAD()
	member := false
	for _, u := range users {
		member = member || u == ownUser
	}
	if !member { // the server lists us; our other devices get the key too
		users = append(users, ownUser)
	}
	lists, err := r.deviceLists(users)
	if err != nil {
		return node.Node{}, err
	}
	var devices []jid.JID
	for _, u := range users {
		for _, d := range lists[u] {
			if d != r.own {
				devices = append(devices, d)
			}
		}
	}
	if len(devices) == 0 {
		return node.Node{}, errNoGroupDevices
	}

	var lacking []jid.JID
	rotate := false
	err = r.inStore(func(ctx context.Context) error {
		k, err := r.ownSenderKey(ctx)
		if err != nil {
			return err
		}
		rotate = hasLeft(k.holders, devices)
		for _, d := range devices {
			if rotate || !k.holders[peerAddress(d)] {
				lacking = append(lacking, d)
			}
		}
		return nil
	})
	if err != nil {
		return node.Node{}, err
	}
	bundles, err := r.bundlesFor(lacking)
	if err != nil {
		return node.Node{}, err
	}
	var parts []e2e.Part
	var skmsg []byte
	err = r.inStore(func(ctx context.Context) error {
		parts, skmsg, err = r.encryptGroup(ctx, lacking, bundles, rotate)
		return err
	})
	if err != nil {
		return node.Node{}, err
	}
	return e2e.GroupMessage(r.out.id, r.out.to, parts, skmsg, devices, r.identity), nil
}

// encryptGroup makes our sender key for the group when there is none (or
// a new one, with no holders, when rotate), encrypts its distribution for
// each device of lacking (skipping those without a session or bundle:
// they get it by retry receipt), encrypts the text with it, and stores the
// sessions, the key and its new holders in one write.
func (r *sendRun) encryptGroup(ctx context.Context, lacking []jid.JID, bundles map[jid.JID]e2e.BundleResult, rotate bool) ([]e2e.Part, []byte, error) {
	k, err := r.ownSenderKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	if rotate {
		k.key, k.holders = nil, make(map[string]bool)
	}
	if k.key == nil {
		if k.key, err = signal.NewSenderKey(); err != nil {
			return nil, nil, err
		}
	}
	skdm, err := r.distributionMessage(k.key, nil)
	if err != nil {
		return nil, nil, err
	}
	var changes store.SignalChanges
	parts := make([]e2e.Part, 0, len(lacking))
	for _, d := range lacking {
		p, ok, err := r.sealFor(ctx, d, bundles, skdm, &changes, false)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			parts = append(parts, p)
			k.holders[peerAddress(d)] = true
		}
	}
	text, err := proto.Marshal(&waproto.Message{Conversation: proto.String(r.out.text)})
	if err != nil {
		return nil, nil, fmt.Errorf("marshal message: %w", err)
	}
	skmsg, err := k.key.Encrypt(signal.Pad(text))
	if err != nil {
		return nil, nil, fmt.Errorf("encrypt for the group: %w", err)
	}
	if err := r.applyWithKey(ctx, k, changes); err != nil {
		return nil, nil, err
	}
	return parts, skmsg, nil
}

// hasLeft reports whether a holder of our sender key is no longer among
// the group's devices (a member left or was removed, a device was
// unlinked). Our key is then replaced by a new one given to the devices
// that remain, so that the one that left cannot read what follows: the
// WhatsApp security whitepaper says members clear their sender key when a
// member leaves. Neither reference client is seen doing it on send
// (whatsmeow sends its key, unchanged, to every device each time; Baileys
// sends it to the devices its sender-key memory lacks), so when the real
// clients rotate is not certain here.
func hasLeft(holders map[string]bool, devices []jid.JID) bool {
	if len(holders) == 0 {
		return false
	}
	current := make(map[string]bool, len(devices))
	for _, d := range devices {
		current[peerAddress(d)] = true
	}
	for a := range holders {
		if !current[a] {
			return true
		}
	}
	return false
}

// sealGroupRetry encrypts the answer to a member device's retry receipt
// (prepareRetry): the text and our sender key's distribution, 1:1 for
// that device; the device then holds the key, which is stored with the
// session in one write.
func (r *sendRun) sealGroupRetry(ctx context.Context, dev jid.JID, bundles map[jid.JID]e2e.BundleResult, fresh bool) (e2e.Part, error) {
	k, err := r.ownSenderKey(ctx)
	if err != nil {
		return e2e.Part{}, err
	}
	if k.key == nil {
		return e2e.Part{}, fmt.Errorf("%w: none of ours in %s", signal.ErrNoSenderKey, r.out.to)
	}
	plain, err := r.distributionMessage(k.key, proto.String(r.out.text))
	if err != nil {
		return e2e.Part{}, err
	}
	p, changes, err := r.sealRetryAnswer(ctx, dev, bundles, plain, fresh)
	if err != nil {
		return e2e.Part{}, err
	}
	k.holders[peerAddress(dev)] = true
	return p, r.applyWithKey(ctx, k, changes)
}

// distributionMessage is the serialized Message carrying key's
// distribution for the group, with the text when it is not nil.
func (r *sendRun) distributionMessage(key *signal.SenderKey, text *string) ([]byte, error) {
	dist, err := key.Distribution()
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(&waproto.Message{
		Conversation: text,
		SenderKeyDistributionMessage: &waproto.Message_SenderKeyDistribution{
			GroupID:                             proto.String(r.out.to.String()),
			AxolotlSenderKeyDistributionMessage: dist.Marshal(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("marshal distribution message: %w", err)
	}
	return b, nil
}

// ownSenderKey reads our sender key record for the group (no key yet:
// an empty one).
func (r *sendRun) ownSenderKey(ctx context.Context) (*ownSenderKey, error) {
	k := &ownSenderKey{holders: make(map[string]bool)}
	rec, err := r.st.SenderKey(ctx, r.account, r.out.to.String(), peerAddress(r.own))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return k, nil
	case err != nil:
		return nil, fmt.Errorf("read our sender key: %w", err)
	}
	if err := k.unmarshal(rec); err != nil {
		return nil, err
	}
	return k, nil
}

// applyWithKey stores changes and our sender key record in one write.
func (r *sendRun) applyWithKey(ctx context.Context, k *ownSenderKey, changes store.SignalChanges) error {
	rec, err := k.marshal()
	if err != nil {
		return err
	}
	changes.SenderKeys = append(changes.SenderKeys, store.SenderKeyChange{Group: r.out.to.String(), Sender: peerAddress(r.own), Record: rec})
	if err := r.apply(ctx, changes); err != nil {
		return fmt.Errorf("store sessions and sender key: %w", err)
	}
	return nil
}
