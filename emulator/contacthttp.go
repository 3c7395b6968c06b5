package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/wafleet/wafleet/wire/jid"
)

// The control API of contacts (control.go lists the others):
//
//	GET  /contacts                                → 200 [ContactInfo…]
//	GET  /contacts/received?contact=PHONE         → 200 [ReceivedInfo…] (what its devices decrypted)
//	POST /contacts  {"phone":"…"}                 → 200 ContactInfo ("" or no body: the next 1555100xxxx)
//	POST /contacts/send {"from","to","text"}      → 200 {"id","devices":[…]} (SendText)
//	POST /contacts/send {"from","group","members":[…],"text"} → 200 likewise (SendGroupText)
//	POST /phone/send {"account","to","text"}      → 200 likewise (SendFromPhone: own-device sync)
//
// from is a contact's phone number or device JID (device 0 when none is
// given; "" means the first contact, made if there is none); to, members
// and account are emulated accounts' phone numbers or JIDs (a leading + is
// accepted); group is a …@g.us JID, its members default to [to]. Errors:
// 400 for a malformed body, phone, JID or text; 404 for an unknown contact
// or an account without companions.

// ContactInfo describes a contact (GET and POST /contacts). Traffic sums
// its devices' counts: a sent_pkmsg or received_pkmsg beyond the first of
// each session is a re-key.
type ContactInfo struct {
	JID     string   `json:"jid"`
	Name    string   `json:"name"`
	Devices []string `json:"devices"`
	Traffic Traffic  `json:"traffic"`
}

func contactInfo(c *Contact) ContactInfo {
	info := ContactInfo{JID: c.user.String(), Name: c.name}
	for _, d := range c.devices {
		info.Devices = append(info.Devices, d.jid.String())
		info.Traffic.add(d.Traffic())
	}
	return info
}

// ReceivedInfo is a message a contact's device decrypted from one of our
// companions (GET /contacts/received): the last 64 of each device, the
// phone's first, each oldest first.
type ReceivedInfo struct {
	ID     string `json:"id"`
	Device string `json:"device"` // the contact's device that decrypted it
	From   string `json:"from"`   // the sending companion
	Chat   string `json:"chat"`
	Type   string `json:"type"` // pkmsg or msg
	// Text is the text of a text message ("" for others).
	Text string `json:"text"`
}

func (s *Server) handleContactReceived(w http.ResponseWriter, r *http.Request) {
	// An unescaped leading + of the phone number decodes as a space.
	j, err := userJID(strings.TrimSpace(r.URL.Query().Get("contact")))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	c, ok := s.Contact(j)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s is not a contact", ErrUnknownContact, j.ToNonAD()))
		return
	}
	out := []ReceivedInfo{}
	for _, d := range c.devices {
		for _, m := range d.Received() {
			text := m.Message.GetConversation()
			if text == "" {
				text = m.Message.GetExtendedTextMessage().GetText()
			}
			out = append(out, ReceivedInfo{ID: m.ID, Device: d.jid.String(), From: m.From.String(), Chat: m.Chat.String(), Type: m.Type, Text: text})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleContacts(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		out := []ContactInfo{}
		for _, c := range s.Contacts() {
			out = append(out, contactInfo(c))
		}
		writeJSON(w, http.StatusOK, out)
	case http.MethodPost:
		var req struct {
			Phone string `json:"phone"`
		}
		if r.ContentLength != 0 && !decodeBody(w, r, &req) {
			return
		}
		c, err := s.AddContact(strings.TrimPrefix(req.Phone, "+"))
		if err != nil {
			writeError(w, contactStatus(err), err)
			return
		}
		writeJSON(w, http.StatusOK, contactInfo(c))
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, errors.New("emulator: /contacts wants GET or POST"))
	}
}

func (s *Server) handleContactSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		From    string   `json:"from"`
		To      string   `json:"to"`
		Group   string   `json:"group"`
		Members []string `json:"members"`
		Text    string   `json:"text"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	sent, err := s.contactSend(req.From, req.To, req.Group, req.Members, req.Text)
	if err != nil {
		writeError(w, contactStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, sent)
}

// contactSend is POST /contacts/send.
func (s *Server) contactSend(from, to, group string, members []string, text string) (SentMessage, error) {
	dev, err := s.sendingDevice(from)
	if err != nil {
		return SentMessage{}, err
	}
	if group == "" {
		acct, err := userJID(to)
		if err != nil {
			return SentMessage{}, err
		}
		return s.SendText(dev, acct, text)
	}
	g, err := jid.Parse(group)
	if err != nil {
		return SentMessage{}, fmt.Errorf("%w: group: %w", ErrBadMessage, err)
	}
	if len(members) == 0 {
		members = []string{to}
	}
	accts := make([]jid.JID, len(members))
	for i, m := range members {
		if accts[i], err = userJID(m); err != nil {
			return SentMessage{}, err
		}
	}
	return s.SendGroupText(dev, g, accts, text)
}

// sendingDevice finds the contact device from names ("": the first
// contact's phone, the contact made if there is none).
func (s *Server) sendingDevice(from string) (*SignalDevice, error) {
	if from == "" {
		if cs := s.Contacts(); len(cs) > 0 {
			return cs[0].devices[0], nil
		}
		c, err := s.AddContact("")
		if err != nil {
			return nil, err
		}
		return c.devices[0], nil
	}
	j, err := userJID(from)
	if err != nil {
		return nil, err
	}
	c, ok := s.Contact(j)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a contact", ErrUnknownContact, j.ToNonAD())
	}
	d, ok := c.Device(j.Device)
	if !ok {
		return nil, fmt.Errorf("%w: %s has no device %d", ErrUnknownContact, j.ToNonAD(), j.Device)
	}
	return d, nil
}

// ErrUnknownContact: a control request names no contact or device of one.
var ErrUnknownContact = errors.New("emulator: unknown contact")

// userJID reads a phone number ("+" allowed) or a JID of s.whatsapp.net.
func userJID(s string) (jid.JID, error) {
	s = strings.TrimPrefix(s, "+")
	if !strings.Contains(s, "@") {
		s += "@" + jid.DefaultUserServer
	}
	j, err := jid.Parse(s)
	if err == nil && (j.Server != jid.DefaultUserServer || j.User == "") {
		err = errors.New("not a phone number's JID")
	}
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %q: %w", ErrBadMessage, s, err)
	}
	return j, nil
}

func (s *Server) handlePhoneSend(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account string `json:"account"`
		To      string `json:"to"`
		Text    string `json:"text"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	acct, err := userJID(req.Account)
	var peer jid.JID
	if err == nil {
		peer, err = userJID(req.To)
	}
	var sent SentMessage
	if err == nil {
		sent, err = s.SendFromPhone(acct, peer, req.Text)
	}
	if err != nil {
		writeError(w, contactStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, sent)
}

// decodeBody decodes a JSON control body strictly, answering 400 itself
// when it fails.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody+maxContactText))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("emulator: %s: bad JSON body: %w", r.URL.Path, err))
		return false
	}
	return true
}

// contactStatus maps the contacts' errors to HTTP statuses.
func contactStatus(err error) int {
	switch {
	case errors.Is(err, ErrContact), errors.Is(err, ErrBadMessage):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownContact), errors.Is(err, ErrNoRecipient):
		return http.StatusNotFound
	}
	return statusOf(err)
}
