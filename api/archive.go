package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/wafleet/wafleet/store"
)

// Routes of the device archive and of held wipes.
const (
	routeArchive      = "/api/archive"
	routeRestore      = "/api/archive/{id}/restore"
	routeWipes        = "/api/wipes"
	routeConfirmWipes = "/api/wipes/confirm"
)

// maxRestoreBody bounds the JSON body of a restore request.
const maxRestoreBody = 1 << 10

// Archive is the device archive and the held wipes: what a server-initiated
// wipe set aside, and the wipes the mass-logout guard holds. The app
// implements it. Errors: ErrUnknownAccount (404), wrapped store.ErrNotFound
// (no such entry, 404), wrapped store.ErrPaired (409).
type Archive interface {
	// List returns every archive entry (no secrets).
	List(ctx context.Context) ([]store.ArchiveEntry, error)
	// Restore puts archive entry key of account id back and logs the
	// account in with it.
	Restore(ctx context.Context, id, key string) (store.ArchiveEntry, error)
	// HeldWipes says whether wipes are paused and which accounts wait.
	HeldWipes() (paused bool, held []string)
	// ConfirmWipes lets the held wipes go ahead and returns their accounts.
	ConfirmWipes(ctx context.Context) ([]string, error)
}

// wipesView is the body of GET /api/wipes.
type wipesView struct {
	Paused bool     `json:"paused"`
	Held   []string `json:"held"`
}

// confirmedView is the body of POST /api/wipes/confirm.
type confirmedView struct {
	Confirmed []string `json:"confirmed"`
}

// restoreRequest is the optional JSON body of a restore; the query
// parameter key may name the entry instead.
type restoreRequest struct {
	Key string `json:"key"`
}

func (s *Server) archiveRoutes(handle func(method, path string, h http.HandlerFunc)) {
	handle(http.MethodGet, routeArchive, s.withArchive(s.handleArchiveList))
	handle(http.MethodPost, routeRestore, s.withArchive(s.handleRestore))
	handle(http.MethodGet, routeWipes, s.withArchive(s.handleWipes))
	handle(http.MethodPost, routeConfirmWipes, s.withArchive(s.handleConfirmWipes))
}

func (s *Server) withArchive(h http.HandlerFunc) http.HandlerFunc {
	return requireFeature(func() bool { return s.cfg.Archive != nil }, "the device archive is not available", h)
}

func (s *Server) handleArchiveList(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	list, err := s.cfg.Archive.List(ctx)
	if err != nil {
		s.log.Error("list the archive", "error", err)
		code, msg := actionStatus(err)
		writeError(w, code, "list archive: "+msg)
		return
	}
	if list == nil {
		list = []store.ArchiveEntry{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) handleRestore(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	key := r.URL.Query().Get("key")
	if key == "" && r.Body != nil {
		var req restoreRequest
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRestoreBody+1))
		switch {
		case err != nil:
			writeError(w, http.StatusBadRequest, "restore: cannot read the body")
			return
		case len(body) > maxRestoreBody:
			writeError(w, http.StatusRequestEntityTooLarge, "restore: body too large")
			return
		case len(body) > 0 && json.Unmarshal(body, &req) != nil:
			writeError(w, http.StatusBadRequest, `restore: body is not {"key":"…"}`)
			return
		}
		key = req.Key
	}
	if key == "" {
		writeError(w, http.StatusBadRequest, `restore: name the archive entry: ?key=KEY or {"key":"KEY"} (GET /api/archive lists them)`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	e, err := s.cfg.Archive.Restore(ctx, id, key)
	var code int
	var msg string
	switch {
	case errors.Is(err, store.ErrNotFound):
		code, msg = http.StatusNotFound, "no archive entry of this account has that key"
	case errors.Is(err, store.ErrPaired):
		code, msg = http.StatusConflict, "the account has a paired device: log it out first"
	case errors.Is(err, ErrUnknownAccount):
		code, msg = http.StatusNotFound, "unknown account (or not run by this instance)"
	default:
		code, msg = actionStatus(err)
	}
	if code >= 500 {
		s.log.Error("restore an archived device", "account", id, "error", err)
	} else {
		s.log.Info("account action", "account", id, "action", "restore", "status", code)
	}
	if err != nil {
		writeError(w, code, "restore: "+msg)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) handleWipes(w http.ResponseWriter, r *http.Request) {
	paused, held := s.cfg.Archive.HeldWipes()
	if held == nil {
		held = []string{}
	}
	writeJSON(w, http.StatusOK, wipesView{Paused: paused, Held: held})
}

func (s *Server) handleConfirmWipes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ActionTimeout)
	defer cancel()
	ids, err := s.cfg.Archive.ConfirmWipes(ctx)
	if ids == nil {
		ids = []string{}
	}
	if err != nil {
		s.log.Error("confirm held wipes", "confirmed", ids, "error", err)
		code, msg := actionStatus(err)
		writeError(w, code, "confirm wipes: "+msg)
		return
	}
	s.log.Info("held wipes confirmed", "accounts", ids)
	writeJSON(w, http.StatusOK, confirmedView{Confirmed: ids})
}
