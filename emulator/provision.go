package emulator

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
)

// Provisioning is a shortcut for load runs: it records companion devices as
// paired without a registration connection, a QR code or pair-device-sign,
// so a benchmark can start a fleet of many thousands of paired accounts in
// seconds instead of pairing each one (a pairing also uploads 812 one-time
// prekeys). Everything after pairing stays as strict as for a scanned
// device: each provisioned device logs in with a full Noise handshake and
// its recorded noise key, and day-one mode pushes, checks acks and pings it
// the same way. It is off unless Options.Provisioning is set (`manager
// emulator --provisioning`).

// MaxProvisionBatch is the most devices one Provision call (one POST
// /provision) may record.
const MaxProvisionBatch = 10_000

// maxProvisionBody bounds the body of POST /provision: MaxProvisionBatch
// devices of about 330 bytes of JSON each, and 67 bytes for each public
// prekey they bring (a load run's 20 each).
const maxProvisionBody = 24 << 20

// ProvisionRequest describes a companion device to record as paired: the
// public halves of the keys it would have registered with and the number of
// one-time prekeys the server holds for it.
type ProvisionRequest struct {
	NoisePub    [32]byte
	IdentityPub [32]byte
	// RegistrationID is the device's registration ID (a prekey upload
	// must carry it).
	RegistrationID uint32
	// SignedPreKeyID, SignedPreKeyPub and SignedPreKeySig are the signed
	// prekey; the signature must verify with IdentityPub over 05 || pub.
	SignedPreKeyID  uint32
	SignedPreKeyPub [32]byte
	SignedPreKeySig [64]byte
	// PreKeys is the number of one-time prekeys the server holds for the
	// device, with IDs 1..PreKeys (0..MaxPreKeysProvisioned): the device
	// stores the same keys, marked uploaded.
	PreKeys int
	// PreKeyPubs are the public halves of the first of those (IDs 1, 2,
	// …; at most PreKeys), which the server hands out in bundles as it
	// does those of an upload, so day-one's contacts start their sessions
	// with them. A key without its public half is counted and used up,
	// but a bundle that takes it carries no one-time prekey.
	PreKeyPubs [][32]byte
}

// MaxPreKeysProvisioned is the most one-time prekeys a provisioned device
// may start with: one first upload's worth.
const MaxPreKeysProvisioned = maxPrekeysPerUpload

// Provisioned is a device Provision recorded: its JIDs on a new account and
// the account's signed device identity, as pair-success carries it inside
// its HMAC container (details, accountSignatureKey, accountSignature; the
// companion adds its deviceSignature before storing it).
type Provisioned struct {
	JID, LID jid.JID
	// Account is the serialized ADVSignedDeviceIdentity.
	Account []byte
	// Platform is the phone's platform name, as in pair-success.
	Platform string
}

// ErrProvisioningOff: Provision or POST /provision on a server without
// Options.Provisioning.
var ErrProvisioningOff = errors.New("emulator: provisioning is off (manager emulator --provisioning enables it for load runs)")

// ErrBadProvision: a provisioning request that is malformed (the message
// says which device and why).
var ErrBadProvision = errors.New("emulator: bad provisioning request")

// Provision records each request as a device paired to a new account (as a
// first scan of a new companion identity would) and returns them in order.
// The whole batch is checked before any device is recorded: keys not of
// small order, the signed prekey's signature, the prekey count. It counts
// provisioned in Stats.
func (s *Server) Provision(reqs []ProvisionRequest) ([]Provisioned, error) {
	if !s.opts.Provisioning {
		return nil, ErrProvisioningOff
	}
	if s.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if len(reqs) > MaxProvisionBatch {
		return nil, fmt.Errorf("%w: %d devices, at most %d per call", ErrBadProvision, len(reqs), MaxProvisionBatch)
	}
	for i := range reqs {
		if err := checkProvision(&reqs[i]); err != nil {
			return nil, fmt.Errorf("%w: device %d: %w", ErrBadProvision, i, err)
		}
	}
	out := make([]Provisioned, len(reqs))
	now := time.Now()
	for i := range reqs {
		d, err := s.provisionOne(&reqs[i], now)
		if err != nil {
			return out[:i], err
		}
		out[i] = d
		s.stats.update(func(st *Stats) {
			st.Provisioned++
			if reqs[i].PreKeys > 0 {
				st.DevicesWithPrekeys++
			}
		})
	}
	return out, nil
}

func checkProvision(r *ProvisionRequest) error {
	for _, k := range []struct {
		name string
		key  []byte
	}{{"noise key", r.NoisePub[:]}, {"identity key", r.IdentityPub[:]}, {"signed prekey", r.SignedPreKeyPub[:]}} {
		if err := crypto.CheckPublicKey(k.key); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
	}
	switch {
	case r.SignedPreKeyID == 0 || r.SignedPreKeyID >= 1<<24:
		return fmt.Errorf("signed prekey ID %d is not in 1..%d", r.SignedPreKeyID, 1<<24-1)
	case !crypto.Verify(r.IdentityPub[:], append([]byte{5}, r.SignedPreKeyPub[:]...), r.SignedPreKeySig[:]):
		return errors.New("the signed prekey's signature does not verify with the identity key over 05 || pub")
	case r.PreKeys < 0 || r.PreKeys > MaxPreKeysProvisioned:
		return fmt.Errorf("prekeys %d not in 0..%d", r.PreKeys, MaxPreKeysProvisioned)
	case len(r.PreKeyPubs) > r.PreKeys:
		return fmt.Errorf("%d public prekeys for %d prekeys", len(r.PreKeyPubs), r.PreKeys)
	}
	for i := range r.PreKeyPubs {
		if err := crypto.CheckPublicKey(r.PreKeyPubs[i][:]); err != nil {
			return fmt.Errorf("public prekey %d: %w", i+1, err)
		}
	}
	return nil
}

// provisionOne records one checked request on a new account.
func (s *Server) provisionOne(r *ProvisionRequest, now time.Time) (Provisioned, error) {
	reg := s.reg
	reg.mu.Lock()
	acct, err := reg.newAccount("")
	if err != nil {
		reg.mu.Unlock()
		return Provisioned{}, err
	}
	acct.identities = append(acct.identities, r.IdentityPub)
	acct.nextDevice++
	pn := jid.JID{User: acct.phone, Device: acct.nextDevice, Server: jid.DefaultUserServer}
	lid := jid.JID{User: acct.lid, Device: acct.nextDevice, Server: jid.HiddenUserServer}
	d := &device{
		jid: pn, lid: lid,
		noisePub: r.NoisePub, identityPub: r.IdentityPub,
		account: acct, keyIndex: uint32(pn.Device),
		os: "provisioned", pairedAt: now, regID: r.RegistrationID,
		skey: signedPreKey{id: r.SignedPreKeyID, pub: r.SignedPreKeyPub, sig: r.SignedPreKeySig},
	}
	d.st.prekeys = int64(r.PreKeys)
	if r.PreKeys > 0 {
		d.st.prekeyIDs = idRanges{{1, uint32(r.PreKeys) + 1}}
	}
	if len(r.PreKeyPubs) > 0 {
		d.st.published = make([]oneTimePreKey, len(r.PreKeyPubs))
		for i, pub := range r.PreKeyPubs {
			d.st.published[i] = oneTimePreKey{id: uint32(i + 1), pub: pub}
		}
	}
	reg.addDevice(d)
	reg.mu.Unlock()

	di := &waproto.ADVDeviceIdentity{
		RawID:     proto.Uint32(acct.rawID),
		Timestamp: proto.Uint64(uint64(now.Unix())),
		KeyIndex:  proto.Uint32(d.keyIndex),
	}
	sdi, err := crypto.SignADVAccount(acct.primary, di, r.IdentityPub[:])
	if err != nil {
		return Provisioned{}, fmt.Errorf("emulator: account signature: %w", err)
	}
	account, err := proto.Marshal(sdi)
	if err != nil {
		return Provisioned{}, fmt.Errorf("emulator: encode signed identity: %w", err)
	}
	return Provisioned{JID: pn, LID: lid, Account: account, Platform: s.opts.Platform}, nil
}

// provisionJSON is one device of POST /provision: keys as hex.
type provisionJSON struct {
	NoisePub        string   `json:"noise_pub"`
	IdentityPub     string   `json:"identity_pub"`
	RegistrationID  uint32   `json:"registration_id"`
	SignedPreKeyID  uint32   `json:"signed_prekey_id"`
	SignedPreKeyPub string   `json:"signed_prekey_pub"`
	SignedPreKeySig string   `json:"signed_prekey_sig"`
	PreKeys         int      `json:"prekeys"`
	PreKeyPubs      []string `json:"prekey_pubs,omitempty"`
}

// ProvisionBody is the JSON body of POST /provision for reqs.
func ProvisionBody(reqs []ProvisionRequest) ([]byte, error) {
	devs := make([]provisionJSON, len(reqs))
	for i, r := range reqs {
		devs[i] = provisionJSON{
			NoisePub: hex.EncodeToString(r.NoisePub[:]), IdentityPub: hex.EncodeToString(r.IdentityPub[:]),
			RegistrationID: r.RegistrationID, SignedPreKeyID: r.SignedPreKeyID,
			SignedPreKeyPub: hex.EncodeToString(r.SignedPreKeyPub[:]), SignedPreKeySig: hex.EncodeToString(r.SignedPreKeySig[:]),
			PreKeys: r.PreKeys,
		}
		for _, pub := range r.PreKeyPubs {
			devs[i].PreKeyPubs = append(devs[i].PreKeyPubs, hex.EncodeToString(pub[:]))
		}
	}
	return json.Marshal(map[string][]provisionJSON{"devices": devs})
}

func (p provisionJSON) request() (ProvisionRequest, error) {
	r := ProvisionRequest{RegistrationID: p.RegistrationID, SignedPreKeyID: p.SignedPreKeyID, PreKeys: p.PreKeys}
	for _, f := range []struct {
		name string
		hex  string
		dst  []byte
	}{
		{"noise_pub", p.NoisePub, r.NoisePub[:]}, {"identity_pub", p.IdentityPub, r.IdentityPub[:]},
		{"signed_prekey_pub", p.SignedPreKeyPub, r.SignedPreKeyPub[:]}, {"signed_prekey_sig", p.SignedPreKeySig, r.SignedPreKeySig[:]},
	} {
		b, err := hex.DecodeString(f.hex)
		if err != nil || len(b) != len(f.dst) {
			return r, fmt.Errorf("%s must be %d bytes as hex", f.name, len(f.dst))
		}
		copy(f.dst, b)
	}
	if len(p.PreKeyPubs) > MaxPreKeysProvisioned {
		return r, fmt.Errorf("prekey_pubs: more than %d", MaxPreKeysProvisioned)
	}
	r.PreKeyPubs = make([][32]byte, len(p.PreKeyPubs))
	for i, h := range p.PreKeyPubs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return r, fmt.Errorf("prekey_pubs[%d] must be 32 bytes as hex", i)
		}
		copy(r.PreKeyPubs[i][:], b)
	}
	return r, nil
}

// ProvisionedJSON is one device of the answer to POST /provision.
type ProvisionedJSON struct {
	JID      string `json:"jid"`
	LID      string `json:"lid"`
	Account  []byte `json:"account"` // base64 in JSON
	Platform string `json:"platform"`
}

// handleProvision is POST /provision {"devices":[{…}]} → 200
// {"devices":[{"jid","lid","account","platform"}…]} in the same order.
func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) {
	if !s.opts.Provisioning {
		writeError(w, http.StatusForbidden, ErrProvisioningOff)
		return
	}
	var body struct {
		Devices []provisionJSON `json:"devices"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxProvisionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: body must be JSON {\"devices\":[…]}: %w", ErrBadProvision, err))
		return
	}
	reqs := make([]ProvisionRequest, len(body.Devices))
	for i, d := range body.Devices {
		var err error
		if reqs[i], err = d.request(); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w: device %d: %w", ErrBadProvision, i, err))
			return
		}
	}
	devs, err := s.Provision(reqs)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	out := make([]ProvisionedJSON, len(devs))
	for i, d := range devs {
		out[i] = ProvisionedJSON{JID: d.JID.String(), LID: d.LID.String(), Account: d.Account, Platform: d.Platform}
	}
	writeJSON(w, http.StatusOK, map[string][]ProvisionedJSON{"devices": out})
}
