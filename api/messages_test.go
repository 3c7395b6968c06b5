package api

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/wafleet/wafleet/wire/jid"
)

// fakeSender is a controller that sends: it records the texts and answers
// with err, or with a duplicate for a key it saw.
type fakeSender struct {
	fakeController
	mu   sync.Mutex
	sent []OutgoingText
	keys map[string]string
	err  error
}

func (f *fakeSender) SendText(_ context.Context, id string, m OutgoingText) (Sent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return Sent{}, f.err
	}
	if prev, ok := f.keys[m.Key]; ok && m.Key != "" {
		return Sent{ID: prev, Duplicate: true}, nil
	}
	f.sent = append(f.sent, m)
	msgID := "3EB0" + string(rune('A'+len(f.sent)))
	if f.keys == nil {
		f.keys = map[string]string{}
	}
	f.keys[m.Key] = msgID
	return Sent{ID: msgID}, nil
}

func TestSendMessage(t *testing.T) {
	s := &fakeSender{}
	f := newFixture(t, func(c *Config) { c.Controller = s })
	post := func(body string) (*http.Response, messageResult, string) {
		t.Helper()
		resp, b := f.send(t, http.MethodPost, "/api/accounts/alice/messages", body)
		var res messageResult
		var e errorBody
		_ = json.Unmarshal(b, &res)
		_ = json.Unmarshal(b, &e)
		return resp, res, e.Error
	}

	resp, res, _ := post(`{"to":"+15551234567","text":"hi","idempotency_key":"order-1"}`)
	if resp.StatusCode != http.StatusAccepted || res.ID == "" || res.Duplicate {
		t.Fatalf("send: %d %+v", resp.StatusCode, res)
	}
	resp, again, _ := post(`{"to":"+15551234567","text":"hi","idempotency_key":"order-1"}`)
	if resp.StatusCode != http.StatusOK || again.ID != res.ID || !again.Duplicate {
		t.Fatalf("repeated key: %d %+v", resp.StatusCode, again)
	}
	if resp, _, _ := post(`{"to":"15557654321@s.whatsapp.net","text":"hi"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send to a JID: %d", resp.StatusCode)
	}
	if resp, _, _ := post(`{"to":"120363012345678901@g.us","text":"hi"}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send to a group: %d", resp.StatusCode)
	}
	want := []jid.JID{jid.New("15551234567", jid.DefaultUserServer), jid.New("15557654321", jid.DefaultUserServer),
		jid.New("120363012345678901", jid.GroupServer)}
	if len(s.sent) != 3 || s.sent[0].To != want[0] || s.sent[1].To != want[1] || s.sent[2].To != want[2] || s.sent[0].Text != "hi" || s.sent[0].Key != "order-1" {
		t.Fatalf("sent %+v", s.sent)
	}

	for _, body := range []string{
		`{"to":"15551234567","text":"hi"}`,                  // neither + nor a JID
		`{"to":"+1555abc","text":"hi"}`,                     // not a number
		`{"to":"15551234567:2@s.whatsapp.net","text":"hi"}`, // a device
		`{"to":"1203630abc@g.us","text":"hi"}`,              // a group ID that is not digits
		`{"to":"12345@broadcast","text":"hi"}`,              // a broadcast list
		`{"to":"+15551234567","text":""}`,
		`{"to":"+15551234567"}`,
		`{"to":"+15551234567","text":"hi","extra":1}`,
		`not json`,
	} {
		if resp, _, msg := post(body); resp.StatusCode != http.StatusBadRequest || msg == "" {
			t.Errorf("%s: %d %q, want 400", body, resp.StatusCode, msg)
		}
	}
	if len(s.sent) != 3 {
		t.Fatalf("a refused request was sent: %+v", s.sent)
	}

	cases := []struct {
		err   error
		code  int
		retry string
	}{
		{&RateLimited{RetryAfter: 2500 * time.Millisecond}, http.StatusTooManyRequests, "3"},
		{&BadRequest{Reason: "the text is too long"}, http.StatusBadRequest, ""},
		{&Refused{Reason: "the account is not connected"}, http.StatusConflict, ""},
		{ErrUnknownAccount, http.StatusNotFound, ""},
	}
	for _, c := range cases {
		s.mu.Lock()
		s.err = c.err
		s.mu.Unlock()
		resp, _, msg := post(`{"to":"+15551234567","text":"hi"}`)
		if resp.StatusCode != c.code || resp.Header.Get("Retry-After") != c.retry || msg == "" {
			t.Errorf("%v: %d Retry-After %q %q", c.err, resp.StatusCode, resp.Header.Get("Retry-After"), msg)
		}
	}
}

func TestSendMessageWithoutSender(t *testing.T) {
	f := newFixture(t, nil) // a controller that cannot send (the fleet's router)
	resp, _ := f.send(t, http.MethodPost, "/api/accounts/alice/messages", `{"to":"+15551234567","text":"hi"}`)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", resp.StatusCode)
	}
}
