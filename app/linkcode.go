package app

import (
	"context"
	"time"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/api"
)

// PairByPhone implements api.LinkPairer on this instance: it asks the
// account's actor to pair by link code, then waits on the board for a code
// newer than the one showing before (if any). When ctx ends first it says
// what the account is doing instead.
func (c controller) PairByPhone(ctx context.Context, id, phone string) (api.LinkCode, error) {
	var before time.Time
	if v, ok := c.a.board.Get(id); ok && v.LinkCodeExpiresAt != nil {
		before = *v.LinkCodeExpiresAt
	}
	if err := c.request(ctx, id, &connection.Pair{Phone: phone}); err != nil {
		return api.LinkCode{}, err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v, _ := c.a.board.Get(id)
		if v.LinkCode != nil && v.LinkCodeExpiresAt != nil && !v.LinkCodeExpiresAt.Equal(before) {
			return api.LinkCode{Code: *v.LinkCode, ExpiresAt: *v.LinkCodeExpiresAt}, nil
		}
		select {
		case <-ctx.Done():
			reason := "no link code yet: the account is " + string(v.State)
			if v.LastError != "" {
				reason += " (" + v.LastError + ")"
			}
			return api.LinkCode{}, &api.Unavailable{Reason: reason + "; GET /api/accounts/" + id + " shows the code once it is ready"}
		case <-tick.C:
		}
	}
}
