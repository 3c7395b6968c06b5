package connection

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/wire/e2e"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Answering retry receipts. A device that could not decrypt one of our
// messages (it lost its session, or the group's sender key) sends a retry
// receipt (whatsmeow retry.go handleRetryReceipt):
//
//	<receipt id from=GROUP participant=DEVICE type=retry><retry count id t v/><registration/>[<keys/>]</receipt>
//	<receipt id from=DEVICE [recipient=CHAT] type=retry><retry count id t v/><registration/>[<keys/>]</receipt>
//
// the first for a group message, the second for a 1:1 one (recipient when
// the device is one of our own, naming the chat our copy was for). The
// message goes again, through the send queue, encrypted 1:1 for that
// device alone: the text (a DeviceSentMessage for our own devices; for a
// group, with our sender key's distribution, sealGroupRetry).

// Bounds of the messages an account remembers to answer retry receipts
// (whatsmeow keeps its last 256 sends): at most maxRecentSends, and texts
// of maxRecentBytes together, the oldest forgotten first; a retry receipt
// for a forgotten one is logged and not answered. Each device's receipts
// for one message are answered at most maxRetryReceipts times (whatsmeow
// drops them from its tenth), whatever counts they claim.
const (
	maxRecentSends = 64
	maxRecentBytes = 64 << 10
)

// retryReceipt is a device's retry receipt, to answer.
type retryReceipt struct {
	device jid.JID        // the device that could not decrypt
	count  int            // the receipt's retry count, echoed on the <enc>
	t      int64          // the original message's timestamp, from the receipt
	bundle *signal.Bundle // the device's keys the receipt carried, if any
}

// recentSends are the account's last messages, 1:1 and group, by id,
// oldest first in order: what a device's retry receipt asks to send again.
type recentSends struct {
	byID  map[string]*recentSend
	order []string
	bytes int // of the texts kept
}

// recentSend is a message kept for retry receipts, with how many of each
// device's it answered.
type recentSend struct {
	out      *outgoing
	answered map[jid.JID]int
}

// remember keeps out for retry receipts.
func (r *recentSends) remember(out *outgoing) {
	if r.byID == nil {
		r.byID = make(map[string]*recentSend)
	}
	for len(r.order) > 0 && (len(r.order) == maxRecentSends || r.bytes+len(out.text) > maxRecentBytes) {
		r.bytes -= len(r.byID[r.order[0]].out.text)
		delete(r.byID, r.order[0])
		r.order = append(r.order[:0], r.order[1:]...)
	}
	r.byID[out.id] = &recentSend{out: out}
	r.order = append(r.order, out.id)
	r.bytes += len(out.text)
}

// onRetryReceipt answers a retry receipt (see above) by queueing the
// message again for that device alone, up to maxRetryReceipts times per
// device. A 1:1 message's receipt must come from a device of the
// recipient or of our own user. That our own device names the chat in
// recipient is how whatsmeow reads such a receipt (its message source's
// chat); we have not seen one from the real server, and one without
// recipient is not answered.
func (c *conn) onRetryReceipt(ctx actor.Context, n node.Node) {
	id, _ := n.Attr("id")
	from, _ := n.AttrJID("from")
	retry, okRetry := n.Child("retry")
	dev, chat, okDev := from, from.ToNonAD(), true
	if from.Server == jid.GroupServer {
		dev, okDev = n.AttrJID("participant")
	} else if rc, ok := n.AttrJID("recipient"); ok {
		chat = rc.ToNonAD()
	}
	own, _ := jid.Parse(c.dev.JID)
	sent := c.recentSent.byID[id]
	if sent == nil || !okDev || !okRetry || chat != sent.out.to || dev.Server != jid.DefaultUserServer ||
		(chat.Server != jid.GroupServer && dev.User != chat.User && dev.User != own.User) {
		c.log.Info("retry receipt for no message we remember", slog.String("id", id))
		return
	}
	count, _ := retry.AttrInt("count")
	if count < 1 || count > maxRetryReceipts || sent.answered[dev] == maxRetryReceipts {
		c.log.Warn("retry receipt not answered: count out of range or too many", slog.String("id", id), slog.Int64("count", count))
		return
	}
	if sent.answered == nil {
		sent.answered = make(map[jid.JID]int)
	}
	sent.answered[dev]++
	t, _ := retry.AttrInt("t")
	bundle, err := e2e.ParseRetryKeys(n)
	if err != nil {
		c.log.Warn("retry receipt with unreadable keys", slog.String("id", id), slog.String("error", err.Error()))
	}
	out := sent.out
	c.queueSend(ctx, &outgoing{id: out.id, to: out.to, text: out.text, retry: &retryReceipt{device: dev, count: int(count), t: t, bundle: bundle}})
}

// prepareRetry answers a device's retry receipt: the message encrypted
// 1:1 for that device. The session is a new one, as whatsmeow's
// shouldRecreateSession decides, when we have none, or from the device's
// keys in the receipt, or from a fetched bundle from the second retry on
// (the device may have lost ours; whatsmeow also waits an hour between
// such renewals, which the bound of maxRetryReceipts per message stands
// in for here).
func (r *sendRun) prepareRetry() (node.Node, error) {
	retry := r.out.retry
	dev := retry.device
	var bundles map[jid.JID]e2e.BundleResult
	var err error
	fresh := retry.bundle != nil || retry.count >= 2
	switch {
	case retry.bundle != nil:
		bundles = map[jid.JID]e2e.BundleResult{dev: {Bundle: retry.bundle}}
	case fresh:
		ans, err := r.iq(e2e.KeyQuery("", []jid.JID{dev}))
		if err != nil {
			return node.Node{}, fmt.Errorf("prekey bundle: %w", err)
		}
		if bundles, err = e2e.ParseBundles(ans); err != nil {
			return node.Node{}, fmt.Errorf("prekey bundle: %w", err)
		}
	default:
		if bundles, err = r.bundlesFor([]jid.JID{dev}); err != nil {
			return node.Node{}, err
		}
	}
	var part e2e.Part
	err = r.inStore(func(ctx context.Context) error {
		var err error
		if r.out.to.Server == jid.GroupServer {
			part, err = r.sealGroupRetry(ctx, dev, bundles, fresh)
		} else {
			part, err = r.sealDirectRetry(ctx, dev, bundles, fresh)
		}
		return err
	})
	if err != nil {
		return node.Node{}, err
	}
	return e2e.RetryMessage(r.out.id, r.out.to, part, retry.count, retry.t, r.identity), nil
}

// sealDirectRetry encrypts the answer to a retry receipt for a 1:1
// message: the text for the recipient's device, the DeviceSentMessage
// for one of our own (as whatsmeow wraps it for a receipt from itself),
// and stores the session.
func (r *sendRun) sealDirectRetry(ctx context.Context, dev jid.JID, bundles map[jid.JID]e2e.BundleResult, fresh bool) (e2e.Part, error) {
	plain, synced, err := plaintexts(r.out.to, r.out.text)
	if err != nil {
		return e2e.Part{}, err
	}
	if dev.User == r.own.User {
		plain = synced
	}
	p, changes, err := r.sealRetryAnswer(ctx, dev, bundles, plain, fresh)
	if err != nil {
		return e2e.Part{}, err
	}
	if err := r.apply(ctx, changes); err != nil {
		return e2e.Part{}, fmt.Errorf("store session: %w", err)
	}
	return p, nil
}

// sealRetryAnswer encrypts plain for the one device that asked, on a new
// session when fresh; the caller stores the changes it returns.
func (r *sendRun) sealRetryAnswer(ctx context.Context, dev jid.JID, bundles map[jid.JID]e2e.BundleResult, plain []byte, fresh bool) (e2e.Part, store.SignalChanges, error) {
	var changes store.SignalChanges
	p, ok, err := r.sealFor(ctx, dev, bundles, plain, &changes, fresh)
	if err != nil {
		return e2e.Part{}, changes, err
	}
	if !ok {
		return e2e.Part{}, changes, fmt.Errorf("no session with %s and no prekey bundle", dev)
	}
	return p, changes, nil
}
