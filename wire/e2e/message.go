package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/wire/jid"
	"github.com/wafleet/wafleet/wire/node"
)

// Part is one recipient device's ciphertext of a fan-out message.
type Part struct {
	Device     jid.JID
	Ciphertext signal.Ciphertext
}

// Message is the fan-out <message> of a 1:1 text: one <to jid=DEVICE><enc
// v=2 type=msg|pkmsg/></to> per part, with phash over every device the
// message went to, and <device-identity> (our serialized
// ADVSignedDeviceIdentity) when any part is a pkmsg: a receiver that
// builds a session from it checks that the identity key is one our phone
// signed.
func Message(id string, to jid.JID, parts []Part, deviceIdentity []byte) node.Node {
	devices := make([]jid.JID, len(parts))
	for i, p := range parts {
		devices[i] = p.Device
	}
	content := []node.Node{node.New("participants").WithChildren(toNodes(parts)...)}
	if hasPreKey(parts) {
		content = append(content, node.New("device-identity").WithBytes(deviceIdentity))
	}
	return node.New("message", node.StrAttr("id", id), node.JIDAttr("to", to.ToNonAD()), node.StrAttr("type", "text"),
		node.StrAttr("phash", ParticipantHash(devices))).WithChildren(content...)
}

// ParticipantHash is the participant-list hash (v2) of a set of devices:
// "2:" and the unpadded standard base64 of the first 6 bytes of SHA-256
// over the devices' "USER.AGENT:DEVICE@SERVER" forms, sorted and
// concatenated, the agent being the raw AD agent (0 for phone numbers and
// LIDs): whatsmeow's participantListHashV2. Baileys' generateParticipantHashV2
// disagrees (it hashes the devices' plain JID strings and keeps the first 6
// characters of the base64 of the whole digest); which one the real server
// computes is not known here, we follow the reference Go client.
func ParticipantHash(devices []jid.JID) string {
	forms := make([]string, len(devices))
	for i, d := range devices {
		forms[i] = d.User + "." + strconv.Itoa(int(d.RawAgent)) + ":" + strconv.Itoa(int(d.Device)) + "@" + d.Server
	}
	slices.Sort(forms)
	sum := sha256.Sum256([]byte(strings.Join(forms, "")))
	return "2:" + base64.RawStdEncoding.EncodeToString(sum[:6])
}
