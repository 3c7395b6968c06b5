package connection

import (
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/waproto"
)

// The kinds of Message the receive path names without modelling them: the
// field numbers of WhatsApp's Message (whatsmeow proto/waE2E
// WAWebProtobufsE2E.proto) mapped to events.MessageTypes. The fields
// waproto's e2e.proto declares are read as such; these stay unknown
// fields of the parsed message.
var otherKinds = map[protowire.Number]string{
	3: "image", 4: "contact", 5: "location", 7: "document", 8: "audio", 9: "video", 10: "call",
	13: "contact", 26: "sticker", 28: "group_invite", 36: "list", 37: "view_once", 42: "buttons",
	49: "poll", 55: "view_once", 58: "edited", 59: "view_once", 60: "poll", 64: "poll", 66: "video",
	75: "event",
}

// metadataFields are fields of a Message that are not content of their
// own: the sender-key distribution (2, and 15, its fast-ratchet form) and
// messageContextInfo (35).
var metadataFields = map[protowire.Number]bool{2: true, 15: true, 35: true}

// describe fills m's Type, Text, Summary and RefID from msg, and reports
// whether msg has content (a message that only distributes a sender key
// has none: it makes no event).
func describe(msg *waproto.Message, m *events.Message) bool {
	if inner := msg.GetEphemeralMessage().GetMessage(); inner != nil {
		msg = inner
	}
	switch {
	case msg.Conversation != nil:
		m.Type, m.Text = "text", msg.GetConversation()
	case msg.ExtendedTextMessage != nil:
		m.Type, m.Text = "text", msg.GetExtendedTextMessage().GetText()
	case msg.ReactionMessage != nil:
		r := msg.GetReactionMessage()
		m.Type, m.Text, m.RefID = "reaction", r.GetText(), r.GetKey().GetID()
	case msg.ProtocolMessage != nil:
		p := msg.GetProtocolMessage()
		m.Type, m.Summary, m.RefID = "protocol", strings.ToLower(p.GetType().String()), p.GetKey().GetID()
		if edited := p.GetEditedMessage(); edited != nil {
			var e events.Message
			if describe(edited, &e) && e.Type == "text" {
				m.Text = e.Text
			}
		}
	default:
		kind, ok := unknownKind(msg)
		if !ok {
			return false
		}
		m.Type, m.Summary = kind, kind
	}
	return true
}

// unknownKind names the first content field among msg's unknown fields;
// ok is false when there is none (only metadata).
func unknownKind(msg *waproto.Message) (kind string, ok bool) {
	b := msg.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			break
		}
		b = b[m:]
		if metadataFields[num] {
			continue
		}
		if k, known := otherKinds[num]; known {
			return k, true
		}
		kind, ok = "unknown", true
	}
	return kind, ok
}
