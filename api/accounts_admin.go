package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/status"
)

// ErrAccountExists is what an AccountAdmin returns (wrapped or not) when
// an account with that id already exists; the API answers 409.
var ErrAccountExists = errors.New("api: account exists")

// maxAdminBody bounds the JSON body of POST and PATCH /api/accounts.
const maxAdminBody = 8 << 10

// deleteTimeout bounds DELETE /api/accounts/{id}: with ?logout=true it
// waits for the server to unlink the device, and in fleet mode for the
// owning instance to stop the account.
const deleteTimeout = 45 * time.Second

// AccountSpec is a new account (POST /api/accounts).
type AccountSpec struct {
	ID         string `json:"id"`
	Proxy      string `json:"proxy,omitempty"`
	DeviceName string `json:"device_name,omitempty"`
	// Phone makes the account pair by phone number (a link code) instead
	// of by QR code: its number in E.164.
	Phone string `json:"phone,omitempty"`
}

// AccountPatch changes an account's settings (PATCH /api/accounts/{id});
// a nil field is left as it is, "" clears it.
type AccountPatch struct {
	Proxy      *string `json:"proxy"`
	DeviceName *string `json:"device_name"`
}

// AccountAdmin creates, changes and deletes accounts at runtime. Package
// app implements it on the account registry. Accounts the YAML file names
// are changed there: the methods refuse them with *Refused. Every method
// honours ctx.
type AccountAdmin interface {
	// Create adds the account and starts it (it pairs: its view shows QR
	// codes) and returns its view. An existing id is an error wrapping
	// ErrAccountExists.
	Create(ctx context.Context, spec AccountSpec) (status.Account, error)
	// Update changes the account's proxy or device name; its actor
	// restarts with them, keeping its device. An unknown id wraps
	// ErrUnknownAccount.
	Update(ctx context.Context, id string, patch AccountPatch) error
	// Delete stops the account and forgets it; its device is archived
	// (reason "deleted", restorable through the archive). With logout the
	// device is first unlinked from the phone. An unknown id wraps
	// ErrUnknownAccount.
	Delete(ctx context.Context, id string, logout bool) error
}

// adminRoutes registers POST /api/accounts, PATCH and DELETE
// /api/accounts/{id}.
func (s *Server) adminRoutes(handle func(method, path string, h http.HandlerFunc)) {
	handle(http.MethodPost, routeAccounts, s.handleCreate)
	handle(http.MethodPatch, routeAccount, s.handleUpdate)
	handle(http.MethodDelete, routeAccount, s.handleDelete)
}

// decodeBody reads r's JSON body into v: at most maxAdminBody bytes, one
// object, no unknown fields. It writes 400 (413 for a body too long) and
// returns false otherwise.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		return true
	}
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	code, msg := http.StatusBadRequest, "body is not a JSON object"
	switch {
	case errors.As(err, &tooLarge):
		code, msg = http.StatusRequestEntityTooLarge, "body is longer than "+strconv.Itoa(maxAdminBody)+" bytes"
	case errors.As(err, &typeErr) && typeErr.Field != "":
		msg = typeErr.Field + ": want a JSON " + typeErr.Type.String()
	case errors.Is(err, io.EOF):
		msg = "body is empty: want a JSON object"
	default:
		var syntax *json.SyntaxError
		if !errors.As(err, &syntax) && !errors.Is(err, io.ErrUnexpectedEOF) {
			msg = err.Error() // "json: unknown field \"x\"", or "more than one JSON value"
		}
	}
	writeError(w, code, msg)
	return false
}

// settingsProblem checks a proxy and device name as the configuration
// does and returns the message naming the bad field, or "".
func settingsProblem(proxy, deviceName *string) string {
	if proxy != nil {
		if p := config.ProxyProblem(*proxy); p != "" {
			return "proxy " + p
		}
	}
	if deviceName != nil {
		if p := config.DeviceNameProblem(*deviceName); p != "" {
			return "device_name " + p
		}
	}
	return ""
}

// adminAvailable answers 503 and reports false when the server has no
// account administration (api.Config.Admin is nil).
func (s *Server) adminAvailable(w http.ResponseWriter) bool {
	if s.cfg.Admin == nil {
		writeError(w, http.StatusServiceUnavailable, "account administration is not available")
		return false
	}
	return true
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if !s.adminAvailable(w) {
		return
	}
	var spec AccountSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	if !validID(spec.ID) {
		writeError(w, http.StatusBadRequest, "id: want 1 to 64 of A-Z a-z 0-9 . _ -, not . or ..")
		return
	}
	if p := settingsProblem(&spec.Proxy, &spec.DeviceName); p != "" {
		writeError(w, http.StatusBadRequest, p)
		return
	}
	if spec.Phone != "" {
		if p := config.PhoneProblem(spec.Phone); p != "" {
			writeError(w, http.StatusBadRequest, "phone: "+p)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	view, err := s.cfg.Admin.Create(ctx, spec)
	if err != nil {
		s.adminError(w, "create", spec.ID, err)
		return
	}
	s.log.Info("account action", "account", spec.ID, "action", "create", "status", http.StatusCreated)
	w.Header().Set("Location", routeAccounts+"/"+spec.ID)
	writeJSON(w, http.StatusCreated, view)
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if !s.adminAvailable(w) {
		return
	}
	var patch AccountPatch
	if !decodeBody(w, r, &patch) {
		return
	}
	if patch.Proxy == nil && patch.DeviceName == nil {
		writeError(w, http.StatusBadRequest, "nothing to change: set proxy or device_name")
		return
	}
	if p := settingsProblem(patch.Proxy, patch.DeviceName); p != "" {
		writeError(w, http.StatusBadRequest, p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	if err := s.cfg.Admin.Update(ctx, id, patch); err != nil {
		s.adminError(w, "update", id, err)
		return
	}
	s.log.Info("account action", "account", id, "action", "update", "status", http.StatusOK)
	writeJSON(w, http.StatusOK, actionResult{ID: id, Action: "update", Status: "accepted"})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	if !s.adminAvailable(w) {
		return
	}
	logout := false
	if v := r.URL.Query().Get("logout"); v != "" {
		var err error
		if logout, err = strconv.ParseBool(v); err != nil {
			writeError(w, http.StatusBadRequest, "logout: want true or false")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), max(s.cfg.ActionTimeout, deleteTimeout))
	defer cancel()
	if err := s.cfg.Admin.Delete(ctx, id, logout); err != nil {
		s.adminError(w, "delete", id, err)
		return
	}
	s.log.Info("account action", "account", id, "action", "delete", "logout", logout, "status", http.StatusNoContent)
	w.WriteHeader(http.StatusNoContent)
}

// adminError answers a failed create, update or delete.
func (s *Server) adminError(w http.ResponseWriter, action, id string, err error) {
	code, msg := actionStatus(err)
	if errors.Is(err, ErrAccountExists) {
		code, msg = http.StatusConflict, "account exists"
	}
	if code >= 500 {
		s.log.Error("account action failed", "account", id, "action", action, "error", err)
	} else {
		s.log.Info("account action", "account", id, "action", action, "status", code)
	}
	writeError(w, code, fmt.Sprintf("%s: %s", action, msg))
}
