package view

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wafleet/wafleet/api"
	wredis "github.com/wafleet/wafleet/store/redis"
	"github.com/wafleet/wafleet/wire/jid"
)

// Defaults of RouterConfig.
const (
	DefaultWait        = 3 * time.Second
	DefaultMaxInFlight = 16
)

// The actions of api.Controller, by the names they travel under.
const (
	ActionPair    = "pair"
	ActionRestart = "restart"
	ActionLogout  = "logout"
)

const (
	// maxMessage bounds a request or reply read from an inbox, beyond the
	// text of a send (RouterConfig.MaxText); larger ones are dropped
	// unread.
	maxMessage = 4 << 10
	// maxReason bounds the reason a reply carries.
	maxReason = 512
	// inboxTTL: an inbox nobody reads (its instance died) expires.
	inboxTTL = time.Minute
	// blockFor is how long one BLPOP waits for a message.
	blockFor = 30 * time.Second
	// actionQR fetches an account's QR code (sealed for the requester).
	actionQR = "qr"
	// actionPairPhone pairs an account by phone number; the link code
	// comes back sealed for the requester.
	actionPairPhone = "pair_phone"
	// actionSend sends a text message (Router.SendText, api.Sender).
	actionSend = "send"
	// maxActionTime bounds the time an owner gives one routed action.
	maxActionTime = time.Minute
)

// Action runs one account action on this instance, on an account it
// holds, and returns what the API maps to a status: nil, an error
// wrapping api.ErrUnknownAccount, *api.Refused, *api.Unavailable, or one
// wrapping context.DeadlineExceeded.
type Action func(ctx context.Context, id string) error

// RouterConfig configures a Router. Wait, MaxInFlight and Logger are
// optional.
type RouterConfig struct {
	Client   goredis.UniversalClient
	Keys     wredis.ViewKeys
	Instance string
	// Actions are the actions routed, by name, as this instance runs them
	// on the accounts it holds. Router's api.Controller methods use
	// ActionPair, ActionRestart and ActionLogout; another action (DELETE,
	// say) is one more entry, called through Do.
	Actions map[string]Action
	// Holds reports whether this instance holds acct's lease.
	Holds func(acct string) bool
	// Listed reports whether the fleet runs acct (an account nobody holds
	// is then 503, else 404).
	Listed func(acct string) bool
	// QR returns the QR code acct shows here, if any.
	QR func(acct string) (string, bool)
	// PairByPhone pairs an account held here by phone number (api.LinkPairer
	// of this instance). Default nil: Router.PairByPhone answers 503.
	PairByPhone func(ctx context.Context, id, phone string) (api.LinkCode, error)
	// Send sends a text from an account held here (api.Sender of this
	// instance). Default nil: Router.SendText answers 503.
	Send func(ctx context.Context, id string, m api.OutgoingText) (api.Sent, error)
	// MaxText bounds the text of a send, in bytes, as the owner bounds
	// it: a longer one is refused (400) before it travels, and an inbox
	// message is read up to this much text more than the other actions'
	// bound. Required with Send.
	MaxText int
	// Wait bounds the wait for an owner to take a request from its inbox
	// (or answer it). Default 3 s: well under the API's ActionTimeout (10
	// s). Once taken, the answer is awaited until the caller's context
	// ends; the owner runs the action within the time left.
	Wait time.Duration
	// MaxInFlight bounds the requests of other instances running here at
	// once; beyond, they are refused as busy. Default 16.
	MaxInFlight int
	Logger      *slog.Logger
}

// Router sends account actions to the instance holding the account's
// lease and runs those sent here. It implements api.Controller; Run reads
// this instance's inbox.
type Router struct {
	cfg   RouterConfig
	log   *slog.Logger
	slots chan struct{}

	// inboxLimit bounds a message read from the inbox, and a request
	// sent: maxMessage plus a send's text encoded.
	inboxLimit int

	mu      sync.Mutex
	waiting map[string]chan message // by request id
}

var (
	_ api.Controller = (*Router)(nil)
	_ api.LinkPairer = (*Router)(nil)
	_ api.Sender     = (*Router)(nil)
)

// message is a request or a reply in an inbox. It carries no secret: a
// QR code or a link code travels sealed for the requester's one-time key
// (a send's text is a message's content, not a secret of the account:
// see Text).
type message struct {
	Reply   bool   `json:"reply,omitempty"`
	ID      string `json:"id"`
	From    string `json:"from"`
	Action  string `json:"action,omitempty"`
	Account string `json:"account,omitempty"`
	// TimeoutMs is the time the requester waits for the answer: the owner
	// runs the action within it.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// Key is the requester's X25519 public key (QR requests).
	Key []byte `json:"key,omitempty"`
	// Result is the owner's outcome: one of the result constants.
	Result string `json:"result,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Sealed is the QR code, or the link code, sealed for Key (seal.go).
	Sealed []byte `json:"sealed,omitempty"`
	// Phone is the number of a pair_phone request (digits); ExpiresMs when
	// the link code of its reply stops working (Unix ms).
	Phone     string `json:"phone,omitempty"`
	ExpiresMs int64  `json:"expires_ms,omitempty"`
	// To, Text and SendKey are a send request's recipient (a JID), text
	// (base64 in JSON, so its encoded size is bounded by its length) and
	// idempotency key. The text travels in the clear, as received
	// messages do on the Redis event stream; the inbox holds it until the
	// owner takes it (at once) or the request is taken back.
	To      string `json:"to,omitempty"`
	Text    []byte `json:"text,omitempty"`
	SendKey string `json:"send_key,omitempty"`
	// MessageID and Duplicate are a send's reply (api.Sent);
	// RetryAfterMs comes with resultLimited.
	MessageID    string `json:"message_id,omitempty"`
	Duplicate    bool   `json:"duplicate,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
}

// The results a reply carries.
const (
	resultOK          = "ok"
	resultUnknown     = "unknown"      // no such account there (404)
	resultRefused     = "refused"      // Reason says why (409)
	resultBadRequest  = "bad_request"  // a send refused: Reason says why (400)
	resultLimited     = "rate_limited" // a send refused: RetryAfterMs (429)
	resultUnavailable = "unavailable"  // Reason says why (503)
	resultTimeout     = "timeout"      // the owner's actor did not answer (504)
	resultFailed      = "failed"       // see the owner's log (500)
)

// NewRouter returns a Router.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Client == nil || cfg.Instance == "" || cfg.Holds == nil || cfg.Listed == nil || cfg.QR == nil {
		return nil, fmt.Errorf("%w: Client, Instance, Holds, Listed and QR are required", ErrConfig)
	}
	for _, name := range []string{ActionPair, ActionRestart, ActionLogout} {
		if cfg.Actions[name] == nil {
			return nil, fmt.Errorf("%w: no action %q", ErrConfig, name)
		}
	}
	if cfg.Send != nil && cfg.MaxText <= 0 {
		return nil, fmt.Errorf("%w: Send needs MaxText", ErrConfig)
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Router{
		cfg: cfg, log: log, slots: make(chan struct{}, cfg.MaxInFlight),
		inboxLimit: maxMessage + base64.StdEncoding.EncodedLen(cfg.MaxText),
		waiting:    map[string]chan message{},
	}, nil
}

// Pair implements api.Controller on the account's owner.
func (r *Router) Pair(ctx context.Context, id string) error { return r.Do(ctx, ActionPair, id) }

// Restart implements api.Controller on the account's owner.
func (r *Router) Restart(ctx context.Context, id string) error { return r.Do(ctx, ActionRestart, id) }

// Logout implements api.Controller on the account's owner.
func (r *Router) Logout(ctx context.Context, id string) error { return r.Do(ctx, ActionLogout, id) }

// Do runs the named action (one of RouterConfig.Actions) on the instance
// holding the account's lease, this one included, and returns its result
// as that instance's action returned it.
func (r *Router) Do(ctx context.Context, action, id string) error {
	act, ok := r.cfg.Actions[action]
	if !ok {
		return fmt.Errorf("view: no action %q", action)
	}
	if r.cfg.Holds(id) {
		return act(ctx, id)
	}
	owner, err := r.owner(ctx, id)
	if err != nil || owner == r.cfg.Instance {
		if owner == r.cfg.Instance {
			return act(ctx, id) // its lease is being taken or lost here
		}
		return err
	}
	rep, err := r.call(ctx, owner, message{Action: action, Account: id})
	if err != nil {
		return err
	}
	return resultError(owner, rep)
}

// QR returns the QR code account id shows on instance owner ("" when it
// shows none), sealed on the way.
func (r *Router) QR(ctx context.Context, owner, id string) (string, error) {
	if owner == r.cfg.Instance {
		qr, _ := r.cfg.QR(id)
		return qr, nil
	}
	key, err := newSealKey()
	if err != nil {
		return "", err
	}
	rep, err := r.call(ctx, owner, message{Action: actionQR, Account: id, Key: key.PublicKey().Bytes()})
	if err != nil {
		return "", err
	}
	if err := resultError(owner, rep); err != nil {
		return "", err
	}
	if len(rep.Sealed) == 0 {
		return "", nil
	}
	qr, err := open(key, rep.ID, rep.Sealed)
	if err != nil {
		return "", fmt.Errorf("view: the QR code of %s from %s: %w", id, owner, err)
	}
	return qr, nil
}

// PairByPhone implements api.LinkPairer on the account's owner: the
// request carries the number, the link code comes back sealed for a
// one-time key of this instance.
func (r *Router) PairByPhone(ctx context.Context, id, phone string) (api.LinkCode, error) {
	if r.cfg.PairByPhone == nil {
		return api.LinkCode{}, &api.Unavailable{Reason: "pairing by phone number is not available on instance " + r.cfg.Instance}
	}
	if r.cfg.Holds(id) {
		return r.cfg.PairByPhone(ctx, id, phone)
	}
	owner, err := r.owner(ctx, id)
	if owner == r.cfg.Instance {
		return r.cfg.PairByPhone(ctx, id, phone)
	}
	if err != nil {
		return api.LinkCode{}, err
	}
	key, err := newSealKey()
	if err != nil {
		return api.LinkCode{}, err
	}
	rep, err := r.call(ctx, owner, message{Action: actionPairPhone, Account: id, Phone: phone, Key: key.PublicKey().Bytes()})
	if err != nil {
		return api.LinkCode{}, err
	}
	if err := resultError(owner, rep); err != nil {
		return api.LinkCode{}, err
	}
	code, err := open(key, rep.ID, rep.Sealed)
	if err != nil {
		return api.LinkCode{}, fmt.Errorf("view: the link code of %s from %s: %w", id, owner, err)
	}
	return api.LinkCode{Code: code, ExpiresAt: time.UnixMilli(rep.ExpiresMs)}, nil
}

// SendText implements api.Sender on the account's owner: the request
// carries the recipient, the text and the idempotency key; the reply the
// message's ID, or the owner's refusal as it was (400, 404, 409, 429 with
// its delay). The key's claim is the owner's, in the store shared by the
// fleet, so a send repeated through any instance, before or after a
// failover, is a duplicate wherever it runs.
func (r *Router) SendText(ctx context.Context, id string, m api.OutgoingText) (api.Sent, error) {
	if r.cfg.Send == nil {
		return api.Sent{}, &api.Unavailable{Reason: "sending is not available on instance " + r.cfg.Instance}
	}
	if len(m.Text) > r.cfg.MaxText {
		return api.Sent{}, &api.BadRequest{Reason: fmt.Sprintf("the text is %d bytes (at most %d)", len(m.Text), r.cfg.MaxText)}
	}
	if r.cfg.Holds(id) {
		return r.cfg.Send(ctx, id, m)
	}
	owner, err := r.owner(ctx, id)
	if owner == r.cfg.Instance {
		return r.cfg.Send(ctx, id, m)
	}
	if err != nil {
		return api.Sent{}, err
	}
	rep, err := r.call(ctx, owner, message{Action: actionSend, Account: id, To: m.To.String(), Text: []byte(m.Text), SendKey: m.Key})
	if err != nil {
		return api.Sent{}, err
	}
	if err := resultError(owner, rep); err != nil {
		return api.Sent{}, err
	}
	if rep.MessageID == "" {
		return api.Sent{}, fmt.Errorf("view: instance %s answered a send from %s without a message id", owner, id)
	}
	return api.Sent{ID: rep.MessageID, Duplicate: rep.Duplicate}, nil
}

// owner returns the instance holding id's lease, or the error to answer
// when none does.
func (r *Router) owner(ctx context.Context, id string) (string, error) {
	v, err := r.cfg.Client.Get(ctx, r.cfg.Keys.Lease(id)).Result()
	switch {
	case errors.Is(err, goredis.Nil):
		if !r.cfg.Listed(id) {
			return "", api.ErrUnknownAccount
		}
		return "", &api.Unavailable{Reason: "no instance runs account " + id + " now (it is starting or being handed over): retry in a few seconds"}
	case err != nil:
		return "", fmt.Errorf("view: read the lease of %s: %w", id, err)
	}
	return wredis.LeaseValue(v).Holder(), nil
}

// call pushes a request to owner's inbox and waits for its reply: at most
// Wait for the owner to take it, then until ctx ends. A request the owner
// did not take in time is taken back out of its inbox, so it never runs
// late.
func (r *Router) call(ctx context.Context, owner string, req message) (message, error) {
	req.ID, req.From = rand.Text(), r.cfg.Instance
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMs = min(time.Until(dl), maxActionTime).Milliseconds()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return message{}, fmt.Errorf("view: encode a request: %w", err)
	}
	if len(body) > r.inboxLimit {
		return message{}, &api.BadRequest{Reason: fmt.Sprintf("the request is %d bytes encoded, more than the %d that travel between instances", len(body), r.inboxLimit)}
	}
	ch := make(chan message, 1)
	r.mu.Lock()
	r.waiting[req.ID] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, req.ID)
		r.mu.Unlock()
	}()
	inbox := r.cfg.Keys.Inbox(owner)
	if err := push(ctx, r.cfg.Client, inbox, body); err != nil {
		return message{}, fmt.Errorf("view: send %s of %s to %s: %w", req.Action, req.Account, owner, err)
	}
	t := time.NewTimer(r.cfg.Wait)
	defer t.Stop()
	select {
	case rep := <-ch:
		return rep, nil
	case <-t.C:
	case <-ctx.Done():
	}
	// Take the request back unless the owner took it. The caller's
	// context may be over: this is bounded by its own timeout.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	n, err := r.cfg.Client.LRem(tctx, inbox, 1, body).Result()
	if err == nil && n == 1 {
		return message{}, &api.Unavailable{Reason: fmt.Sprintf("instance %s, which holds account %s, did not take the request within %s (it may be down): nothing was done", owner, req.Account, r.cfg.Wait)}
	}
	// Taken (or the take-back failed): its answer may still come.
	select {
	case rep := <-ch:
		return rep, nil
	case <-ctx.Done():
	}
	reason := fmt.Sprintf("instance %s, which holds account %s, took the request but did not answer in time: it may still take effect", owner, req.Account)
	if req.Action == actionSend {
		reason += " (the message may be sent: repeat the request with the same idempotency_key, which never sends it twice)"
	}
	return message{}, &api.Unavailable{Reason: reason}
}

// push appends body to an inbox and (re)arms its expiry, in one round trip.
func push(ctx context.Context, c goredis.UniversalClient, inbox string, body []byte) error {
	pipe := c.Pipeline()
	pipe.RPush(ctx, inbox, body)
	pipe.PExpire(ctx, inbox, inboxTTL)
	_, err := pipe.Exec(ctx)
	return err
}

// resultError turns a reply into what the owner's Controller returned.
func resultError(owner string, rep message) error {
	switch rep.Result {
	case resultOK:
		return nil
	case resultUnknown:
		return fmt.Errorf("%w (on instance %s)", api.ErrUnknownAccount, owner)
	case resultRefused:
		return &api.Refused{Reason: rep.Reason}
	case resultBadRequest:
		return &api.BadRequest{Reason: rep.Reason}
	case resultLimited:
		return &api.RateLimited{RetryAfter: time.Duration(rep.RetryAfterMs) * time.Millisecond}
	case resultUnavailable:
		return &api.Unavailable{Reason: rep.Reason}
	case resultTimeout:
		return fmt.Errorf("view: on instance %s: %w", owner, context.DeadlineExceeded)
	}
	return fmt.Errorf("view: the action failed on instance %s (see its log): %s", owner, rep.Reason)
}

// Run reads this instance's inbox until ctx ends: it runs the requests of
// other instances (at most MaxInFlight at once) and hands replies to the
// calls waiting for them.
func (r *Router) Run(ctx context.Context) {
	inbox := r.cfg.Keys.Inbox(r.cfg.Instance)
	stop := context.AfterFunc(ctx, func() {
		// Wake the BLPOP up: it does not watch ctx.
		wctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = push(wctx, r.cfg.Client, inbox, []byte("{}"))
	})
	defer stop()
	var tasks sync.WaitGroup
	defer tasks.Wait()
	failing := false
	for ctx.Err() == nil {
		kv, err := r.cfg.Client.BLPop(ctx, blockFor, inbox).Result()
		switch {
		case errors.Is(err, goredis.Nil):
			continue
		case err != nil:
			if ctx.Err() == nil && !failing {
				r.log.Warn("fleet view: read the inbox", "error", err)
			}
			failing = true
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		failing = false
		if len(kv) == 2 {
			r.receive(ctx, &tasks, kv[1])
		}
	}
}

// receive handles one message of the inbox.
func (r *Router) receive(ctx context.Context, tasks *sync.WaitGroup, raw string) {
	var m message
	if len(raw) > r.inboxLimit || json.Unmarshal([]byte(raw), &m) != nil || m.ID == "" {
		return // the wake-up, or nothing an instance sends
	}
	if m.Reply {
		r.mu.Lock()
		ch := r.waiting[m.ID]
		r.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
		return
	}
	select {
	case r.slots <- struct{}{}:
	default:
		r.reply(ctx, m, message{Result: resultUnavailable, Reason: "instance " + r.cfg.Instance + " is busy with other routed requests: retry"})
		return
	}
	tasks.Go(func() {
		defer func() { <-r.slots }()
		r.reply(ctx, m, r.serve(ctx, m))
	})
}

// serve runs a request of another instance and returns the reply.
func (r *Router) serve(ctx context.Context, m message) message {
	if !r.cfg.Holds(m.Account) {
		return message{Result: resultUnavailable, Reason: "account " + m.Account + " is no longer on instance " + r.cfg.Instance + " (handed over): retry"}
	}
	if m.Action == actionQR {
		qr, ok := r.cfg.QR(m.Account)
		if !ok {
			return message{Result: resultOK}
		}
		sealed, err := seal(m.Key, m.ID, qr)
		if err != nil {
			return message{Result: resultFailed, Reason: "cannot seal the QR code: " + err.Error()}
		}
		return message{Result: resultOK, Sealed: sealed}
	}
	// Within the requester's wait, less the reply's way back.
	budget := time.Duration(m.TimeoutMs)*time.Millisecond - 500*time.Millisecond
	if budget <= 0 || budget > maxActionTime {
		budget = r.cfg.Wait
	}
	actx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	if m.Action == actionPairPhone && r.cfg.PairByPhone != nil {
		lc, err := r.cfg.PairByPhone(actx, m.Account, m.Phone)
		if err != nil {
			return r.outcome(m, err)
		}
		sealed, err := seal(m.Key, m.ID, lc.Code)
		if err != nil {
			return message{Result: resultFailed, Reason: "cannot seal the link code: " + err.Error()}
		}
		return message{Result: resultOK, Sealed: sealed, ExpiresMs: lc.ExpiresAt.UnixMilli()}
	}
	if m.Action == actionSend {
		if r.cfg.Send == nil {
			return message{Result: resultUnavailable, Reason: "sending is not available on instance " + r.cfg.Instance}
		}
		return r.serveSend(actx, m)
	}
	act, ok := r.cfg.Actions[m.Action]
	if !ok {
		return message{Result: resultFailed, Reason: "instance " + r.cfg.Instance + " has no action " + truncate(m.Action, 32)}
	}
	return r.outcome(m, act(actx, m.Account))
}

// serveSend sends the text of request m and returns the reply.
func (r *Router) serveSend(ctx context.Context, m message) message {
	to, err := jid.Parse(m.To)
	if err != nil {
		return message{Result: resultBadRequest, Reason: "the recipient is not a JID"}
	}
	if len(m.Text) > r.cfg.MaxText {
		return message{Result: resultBadRequest, Reason: fmt.Sprintf("the text is %d bytes (at most %d)", len(m.Text), r.cfg.MaxText)}
	}
	sent, err := r.cfg.Send(ctx, m.Account, api.OutgoingText{To: to, Text: string(m.Text), Key: m.SendKey})
	if err != nil {
		return r.outcome(m, err)
	}
	return message{Result: resultOK, MessageID: sent.ID, Duplicate: sent.Duplicate}
}

// outcome is the reply that carries err, the result of request m.
func (r *Router) outcome(m message, err error) message {
	var refused *api.Refused
	var unavailable *api.Unavailable
	var bad *api.BadRequest
	var limited *api.RateLimited
	switch {
	case err == nil:
		return message{Result: resultOK}
	case errors.Is(err, api.ErrUnknownAccount):
		return message{Result: resultUnknown}
	case errors.As(err, &refused):
		return message{Result: resultRefused, Reason: truncate(refused.Reason, maxReason)}
	case errors.As(err, &bad):
		return message{Result: resultBadRequest, Reason: truncate(bad.Reason, maxReason)}
	case errors.As(err, &limited):
		return message{Result: resultLimited, RetryAfterMs: max(limited.RetryAfter.Milliseconds(), 1)}
	case errors.As(err, &unavailable):
		return message{Result: resultUnavailable, Reason: truncate(unavailable.Reason, maxReason)}
	case errors.Is(err, context.DeadlineExceeded):
		return message{Result: resultTimeout}
	}
	r.log.Error("fleet view: routed action failed", "account", m.Account, "action", m.Action, "from", m.From, "error", err)
	return message{Result: resultFailed}
}

// reply pushes rep, the answer to req, to the requester's inbox.
func (r *Router) reply(ctx context.Context, req, rep message) {
	rep.Reply, rep.ID, rep.From, rep.Account = true, req.ID, r.cfg.Instance, req.Account
	body, err := json.Marshal(rep)
	if err == nil {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		err = push(tctx, r.cfg.Client, r.cfg.Keys.Inbox(truncate(req.From, 64)), body)
	}
	if err != nil {
		r.log.Warn("fleet view: answer a routed request", "account", req.Account, "to", req.From, "error", err)
	}
}
