package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/webhook"
)

// Routes of the webhooks.
const (
	routeWebhooks        = "/api/webhooks"
	routeDeadLetters     = "/api/webhooks/deadletters"
	routeRedrive         = "/api/webhooks/deadletters/{id}/redrive"
	routeAccountWebhooks = "/api/accounts/{id}/webhooks"
)

// Bounds of the webhook routes.
const (
	maxWebhooksBody        = 64 << 10
	defaultDeadLetterLimit = 100
	maxDeadLetterLimit     = 1000
)

// Webhooks is the webhook delivery engine as the API uses it;
// *webhook.Engine is one. Errors: a *webhook.FieldError is a bad setting
// (400), a wrapped store.ErrNotFound an unknown dead letter (404).
type Webhooks interface {
	Endpoints(ctx context.Context) ([]webhook.Status, error)
	DeadLetters(ctx context.Context, endpoint string, n int) ([]store.DeadLetter, error)
	Redrive(ctx context.Context, id string) error
	AccountEndpoints(ctx context.Context, account string) ([]webhook.Endpoint, error)
	SetAccountEndpoints(ctx context.Context, account string, eps []webhook.Endpoint) ([]webhook.Endpoint, error)
}

// deadLetterView is one dead letter in GET /api/webhooks/deadletters.
type deadLetterView struct {
	ID       string          `json:"id"`
	Endpoint string          `json:"endpoint"`
	EventID  string          `json:"event_id"`
	Kind     string          `json:"kind"`
	Account  string          `json:"account"`
	Instance string          `json:"instance"`
	Time     time.Time       `json:"time"`
	Attempts int             `json:"attempts"`
	Reason   string          `json:"reason"`
	At       time.Time       `json:"at"`
	Payload  json.RawMessage `json:"payload"`
}

// redriven is the body of a redrive's answer.
type redriven struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// accountWebhookView is one per-account endpoint as the API shows it:
// never its secret, its URL without the query.
type accountWebhookView struct {
	Name        string   `json:"name"`
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Timeout     string   `json:"timeout"`
	MaxAttempts int      `json:"max_attempts"`
}

type accountWebhooksView struct {
	Account  string               `json:"account"`
	Webhooks []accountWebhookView `json:"webhooks"`
}

// accountWebhooksRequest is the body of PUT /api/accounts/{id}/webhooks.
type accountWebhooksRequest struct {
	Webhooks *[]accountWebhookRequest `json:"webhooks,omitempty"` // nil: missing
}

type accountWebhookRequest struct {
	URL         string       `json:"url"`
	Events      []string     `json:"events"`
	Secret      string       `json:"secret"`
	Timeout     jsonDuration `json:"timeout"`
	MaxAttempts int          `json:"max_attempts"`
}

// jsonDuration reads "10s" (a Go duration) or 10 (seconds).
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if s, err := strconv.Unquote(string(b)); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("timeout: not a duration such as \"10s\"")
		}
		*d = jsonDuration(v)
		return nil
	}
	secs, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return errors.New("timeout: not a duration such as \"10s\" or a number of seconds")
	}
	*d = jsonDuration(time.Duration(secs * float64(time.Second)))
	return nil
}

func (s *Server) webhookRoutes(handle func(method, path string, h http.HandlerFunc)) {
	handle(http.MethodGet, routeWebhooks, s.withWebhooks(s.handleWebhooks))
	handle(http.MethodGet, routeDeadLetters, s.withWebhooks(s.handleDeadLetters))
	handle(http.MethodPost, routeRedrive, s.withWebhooks(s.handleRedrive))
	handle(http.MethodGet, routeAccountWebhooks, s.withWebhooks(s.handleAccountWebhooks))
	handle(http.MethodPut, routeAccountWebhooks, s.withWebhooks(s.handlePutAccountWebhooks))
	handle(http.MethodDelete, routeAccountWebhooks, s.withWebhooks(s.handleDeleteAccountWebhooks))
}

func (s *Server) withWebhooks(h http.HandlerFunc) http.HandlerFunc {
	return requireFeature(func() bool { return s.cfg.Webhooks != nil }, "webhooks are not available", h)
}

func (s *Server) handleWebhooks(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	list, err := s.cfg.Webhooks.Endpoints(ctx)
	if err != nil {
		s.webhookError(w, "list webhooks", err)
		return
	}
	if list == nil {
		list = []webhook.Status{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	endpoint := q.Get("endpoint")
	limit := defaultDeadLetterLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeadLetterLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit: want a number from 1 to %d", maxDeadLetterLimit))
			return
		}
		limit = n
	}
	if len(endpoint) > 200 {
		writeError(w, http.StatusBadRequest, "endpoint: too long to name an endpoint")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	list, err := s.cfg.Webhooks.DeadLetters(ctx, endpoint, limit)
	if err != nil {
		s.webhookError(w, "list dead letters", err)
		return
	}
	views := make([]deadLetterView, len(list))
	for i, d := range list {
		payload := json.RawMessage(d.Entry.Body)
		if !json.Valid(payload) {
			payload = json.RawMessage("null")
		}
		views[i] = deadLetterView{
			ID: d.ID, Endpoint: d.Endpoint, EventID: d.Entry.ID, Kind: d.Entry.Kind, Account: d.Entry.Account,
			Instance: d.Entry.Instance, Time: d.Entry.Time, Attempts: d.Attempts, Reason: d.Reason, At: d.At, Payload: payload,
		}
	}
	writeJSON(w, http.StatusOK, views)
}

func (s *Server) handleRedrive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 200 {
		writeError(w, http.StatusBadRequest, "bad dead letter id")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	if err := s.cfg.Webhooks.Redrive(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "redrive: no dead letter has that id (GET /api/webhooks/deadletters lists them)")
			return
		}
		s.webhookError(w, "redrive", err)
		return
	}
	s.log.Info("webhook dead letter redriven", "dead_letter", id)
	writeJSON(w, http.StatusAccepted, redriven{ID: id, Status: "redriven"})
}

func (s *Server) handleAccountWebhooks(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookAccount(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	list, err := s.cfg.Webhooks.AccountEndpoints(ctx, id)
	if err != nil {
		s.webhookError(w, "list the account's webhooks", err)
		return
	}
	writeJSON(w, http.StatusOK, accountWebhooks(id, list))
}

func (s *Server) handlePutAccountWebhooks(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookAccount(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhooksBody+1))
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "webhooks: cannot read the body")
		return
	case len(body) > maxWebhooksBody:
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("webhooks: body over %d bytes", maxWebhooksBody))
		return
	}
	var req accountWebhooksRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+jsonProblem(err))
		return
	}
	if req.Webhooks == nil {
		writeError(w, http.StatusBadRequest, `webhooks: required, a list of {"url","secret","events","timeout","max_attempts"} (an empty list removes them all)`)
		return
	}
	eps := make([]webhook.Endpoint, len(*req.Webhooks))
	for i, h := range *req.Webhooks {
		eps[i] = webhook.Endpoint{URL: h.URL, Events: h.Events, Secret: h.Secret, Timeout: time.Duration(h.Timeout), MaxAttempts: h.MaxAttempts}
	}
	s.setAccountWebhooks(w, r, id, eps)
}

func (s *Server) handleDeleteAccountWebhooks(w http.ResponseWriter, r *http.Request) {
	id, ok := s.webhookAccount(w, r)
	if !ok {
		return
	}
	s.setAccountWebhooks(w, r, id, nil)
}

func (s *Server) setAccountWebhooks(w http.ResponseWriter, r *http.Request, id string, eps []webhook.Endpoint) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	list, err := s.cfg.Webhooks.SetAccountEndpoints(ctx, id, eps)
	var fe *webhook.FieldError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, fe.Error())
		return
	}
	if err != nil {
		s.webhookError(w, "set the account's webhooks", err)
		return
	}
	s.log.Info("account action", "account", id, "action", "set webhooks", "endpoints", len(list))
	writeJSON(w, http.StatusOK, accountWebhooks(id, list))
}

// webhookAccount reads the account id of the path; an account the API
// does not know (in a fleet: no instance runs) is 404.
func (s *Server) webhookAccount(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return "", false
	}
	if _, known := s.account(w, r, id); !known {
		return "", false
	}
	return id, true
}

func accountWebhooks(id string, list []webhook.Endpoint) accountWebhooksView {
	v := accountWebhooksView{Account: id, Webhooks: make([]accountWebhookView, len(list))}
	for i, e := range list {
		events := e.Events
		if events == nil {
			events = []string{}
		}
		v.Webhooks[i] = accountWebhookView{Name: e.Name, URL: webhook.RedactURL(e.URL), Events: events, Timeout: e.Timeout.String(), MaxAttempts: e.MaxAttempts}
	}
	return v
}

// jsonProblem says what is wrong with a JSON body, naming the field when
// the decoder does, never echoing a value.
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("%s: want a %s", typeErr.Field, typeErr.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + " (known: url, secret, events, timeout, max_attempts)"
	case errors.Is(err, io.EOF):
		return `empty: want {"webhooks":[…]}`
	default:
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return fmt.Sprintf("not JSON (at byte %d)", syn.Offset)
		}
		return err.Error() // the decoder's words, or jsonDuration's
	}
}

// webhookError answers an engine failure: 500, logged.
func (s *Server) webhookError(w http.ResponseWriter, what string, err error) {
	code, msg := actionStatus(err)
	if code == http.StatusAccepted {
		code = http.StatusInternalServerError
	}
	s.log.Error("webhooks: "+what, "error", err)
	writeError(w, code, what+": "+msg)
}
