package connection

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/events"
	"github.com/wafleet/wafleet/metrics"
	"github.com/wafleet/wafleet/waproto"
)

// withUnknown is a Message carrying field num (a message this client does
// not model) as an unknown field, as a parse of WhatsApp's bytes leaves it.
func withUnknown(t *testing.T, nums ...protowire.Number) *waproto.Message {
	t.Helper()
	var b []byte
	for _, n := range nums {
		b = protowire.AppendTag(b, n, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte{0x0a, 0x01, 'x'})
	}
	m := new(waproto.Message)
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDescribe(t *testing.T) {
	key := &waproto.Message_Key{ID: proto.String("3EB0REF")}
	revoke := waproto.Message_Protocol_REVOKE
	edit := waproto.Message_Protocol_MESSAGE_EDIT
	tests := []struct {
		name string
		msg  *waproto.Message
		want events.Message
		ok   bool
	}{
		{"conversation", text("hi"), events.Message{Type: "text", Text: "hi"}, true},
		{"extended text", &waproto.Message{ExtendedTextMessage: &waproto.Message_ExtendedText{Text: proto.String("see https://x")}}, events.Message{Type: "text", Text: "see https://x"}, true},
		{"ephemeral", &waproto.Message{EphemeralMessage: &waproto.Message_FutureProof{Message: text("gone soon")}}, events.Message{Type: "text", Text: "gone soon"}, true},
		{"reaction", &waproto.Message{ReactionMessage: &waproto.Message_Reaction{Key: key, Text: proto.String("👍")}}, events.Message{Type: "reaction", Text: "👍", RefID: "3EB0REF"}, true},
		{"revoke", &waproto.Message{ProtocolMessage: &waproto.Message_Protocol{Key: key, Type: &revoke}}, events.Message{Type: "protocol", Summary: "revoke", RefID: "3EB0REF"}, true},
		{"edit", &waproto.Message{ProtocolMessage: &waproto.Message_Protocol{Key: key, Type: &edit, EditedMessage: text("fixed")}}, events.Message{Type: "protocol", Summary: "message_edit", RefID: "3EB0REF", Text: "fixed"}, true},
		{"image", withUnknown(t, 35, 3), events.Message{Type: "image", Summary: "image"}, true},
		{"poll", withUnknown(t, 64), events.Message{Type: "poll", Summary: "poll"}, true},
		{"unmodelled kind", withUnknown(t, 129), events.Message{Type: "unknown", Summary: "unknown"}, true},
		{"only a sender key and context", withUnknown(t, 35, 15), events.Message{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got events.Message
			if ok := describe(tt.msg, &got); ok != tt.ok || got.Type != tt.want.Type || got.Text != tt.want.Text ||
				got.Summary != tt.want.Summary || got.RefID != tt.want.RefID {
				t.Fatalf("describe: %+v (%t), want %+v (%t)", got, ok, tt.want, tt.ok)
			}
			if tt.ok && !slices.Contains(events.MessageTypes, got.Type) {
				t.Fatalf("type %q is not in events.MessageTypes", got.Type)
			}
		})
	}
}

// Every type describe can name is documented in events.MessageTypes, and
// the metric counts the reasons this package names.
func TestNamesAreDocumented(t *testing.T) {
	for _, k := range otherKinds {
		if !slices.Contains(events.MessageTypes, k) {
			t.Errorf("kind %q is not in events.MessageTypes", k)
		}
	}
	if !slices.Equal(DecryptFailureReasons, metrics.DecryptFailureReasons) {
		t.Errorf("DecryptFailureReasons %v, metrics.DecryptFailureReasons %v", DecryptFailureReasons, metrics.DecryptFailureReasons)
	}
}
