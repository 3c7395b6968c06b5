package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/api"
	"github.com/wafleet/wafleet/store"
)

// SendText implements api.Sender on this instance: it asks the account's
// actor to send and maps its refusals to the API's errors.
func (c controller) SendText(ctx context.Context, id string, m api.OutgoingText) (api.Sent, error) {
	res, err := c.a.askAccount(ctx, id, &connection.SendText{To: m.To, Text: m.Text, Key: m.Key})
	if err != nil {
		return api.Sent{}, err
	}
	r, ok := res.(*connection.SendResult)
	if !ok {
		return api.Sent{}, fmt.Errorf("app: account %s answered %T", id, res)
	}
	return sendOutcome(id, r)
}

// sendOutcome maps the actor's answer to a send to what the API answers.
func sendOutcome(id string, r *connection.SendResult) (api.Sent, error) {
	switch {
	case r.Err == nil:
		return api.Sent{ID: r.ID, Duplicate: r.Duplicate}, nil
	case errors.Is(r.Err, connection.ErrSendInput):
		return api.Sent{}, &api.BadRequest{Reason: r.Err.Error()}
	case errors.Is(r.Err, connection.ErrRateLimited):
		return api.Sent{}, &api.RateLimited{RetryAfter: r.RetryAfter}
	case errors.Is(r.Err, connection.ErrNotConnected):
		return api.Sent{}, &api.Refused{Reason: "the account is not connected"}
	case errors.Is(r.Err, store.ErrLeaseLost):
		// Fleet mode: the lease moved while the key was being recorded
		// (a hand-over). The fenced write changed nothing and nothing
		// was sent; a retry reaches the new owner.
		return api.Sent{}, &api.Unavailable{Reason: "account " + id + " is being handed over to another instance: nothing was sent; retry"}
	}
	return api.Sent{}, r.Err
}
