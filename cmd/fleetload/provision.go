package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wafleet/wafleet/actors/connection"
	"github.com/wafleet/wafleet/crypto"
	"github.com/wafleet/wafleet/emulator"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/waproto"
	"github.com/wafleet/wafleet/wire/jid"
)

// Provisioning (--provision) is the load shortcut that replaces pairing:
// each account's device is made here with the manager's own NewDevice,
// recorded as paired by the emulator (`manager emulator --provisioning`,
// POST /provision: a new account whose phone signs the device identity),
// completed as a pairing would complete it (the companion's device
// signature, JIDs, platform) and saved into the store with --prekeys
// one-time prekeys marked uploaded (the same key pairs in every account),
// the count the emulator holds too, with their public halves for bundles.
// The manager then starts on that store as on one it paired itself: it
// logs every account in with a full Noise handshake and, holding enough
// prekeys on both sides, uploads none until day-one's contacts have used
// them up.

// provisionBatch is the number of devices per POST /provision.
const provisionBatch = 2000

// loadAccount is one provisioned account: its paired device and the
// one-time prekeys the emulator holds for it.
type loadAccount struct {
	dev     *store.Device
	prekeys []store.PreKey
}

// accountID is the id of account i in the configurations fleetload writes.
func accountID(i int) string { return fmt.Sprintf("load-%05d", i) }

// provisionAccounts makes n paired accounts with prekeys one-time prekeys
// each, recorded by the emulator.
func provisionAccounts(ctx context.Context, emu *emulatorProc, n, prekeys int) ([]loadAccount, error) {
	// One set of one-time prekeys serves every account (generating
	// 19,000 × 50 key pairs would take minutes on two cores); the emulator
	// gets their public halves, so day-one's contacts start sessions with
	// them as with uploaded ones.
	keys := make([]store.PreKey, prekeys)
	pubs := make([][32]byte, prekeys)
	for k := range keys {
		priv, pub, err := crypto.GeneratePair()
		if err != nil {
			return nil, err
		}
		keys[k] = store.PreKey{ID: uint32(k + 1), KeyPair: store.KeyPair{Priv: priv, Pub: pub}}
		pubs[k] = pub
	}
	accts := make([]loadAccount, n)
	if err := parallel(ctx, n, func(i int) error {
		d, err := connection.NewDevice(accountID(i))
		if err != nil {
			return err
		}
		accts[i] = loadAccount{dev: d, prekeys: keys}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("make devices: %w", err)
	}
	for lo := 0; lo < n; lo += provisionBatch {
		hi := min(n, lo+provisionBatch)
		reqs := make([]emulator.ProvisionRequest, 0, hi-lo)
		for _, a := range accts[lo:hi] {
			d := a.dev
			reqs = append(reqs, emulator.ProvisionRequest{
				NoisePub: d.NoiseKey.Pub, IdentityPub: d.IdentityKey.Pub, RegistrationID: d.RegistrationID,
				SignedPreKeyID: d.SignedPreKey.ID, SignedPreKeyPub: d.SignedPreKey.Pub, SignedPreKeySig: d.SignedPreKey.Signature,
				PreKeys: prekeys, PreKeyPubs: pubs,
			})
		}
		got, err := postProvision(ctx, emu, reqs)
		if err != nil {
			return nil, err
		}
		if err := parallel(ctx, hi-lo, func(i int) error { return completePairing(accts[lo+i].dev, got[i]) }); err != nil {
			return nil, fmt.Errorf("complete pairing: %w", err)
		}
	}
	return accts, nil
}

func postProvision(ctx context.Context, emu *emulatorProc, reqs []emulator.ProvisionRequest) ([]emulator.ProvisionedJSON, error) {
	body, err := emulator.ProvisionBody(reqs)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, emu.controlURL+"/provision", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST /provision: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("POST /provision: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var out struct {
		Devices []emulator.ProvisionedJSON `json:"devices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("POST /provision: %w", err)
	}
	if len(out.Devices) != len(reqs) {
		return nil, fmt.Errorf("POST /provision: %d devices back for %d", len(out.Devices), len(reqs))
	}
	return out.Devices, nil
}

// completePairing does to d what the companion does with a verified
// pair-success: check the account signature, add its device signature,
// and record the JIDs, the platform and the account's identity key.
func completePairing(d *store.Device, p emulator.ProvisionedJSON) error {
	var sdi waproto.ADVSignedDeviceIdentity
	var di waproto.ADVDeviceIdentity
	if err := proto.Unmarshal(p.Account, &sdi); err != nil {
		return fmt.Errorf("%s: signed device identity: %w", d.ID, err)
	}
	if err := proto.Unmarshal(sdi.GetDetails(), &di); err != nil {
		return fmt.Errorf("%s: device identity: %w", d.ID, err)
	}
	if err := crypto.VerifyADVAccountSignature(&sdi, &di, d.IdentityKey.Pub[:]); err != nil {
		return fmt.Errorf("%s: %w", d.ID, err)
	}
	identity := &crypto.KeyPair{Priv: d.IdentityKey.Priv, Pub: d.IdentityKey.Pub}
	if err := crypto.SignADVDevice(&sdi, identity); err != nil {
		return fmt.Errorf("%s: %w", d.ID, err)
	}
	account, err := proto.Marshal(&sdi)
	if err != nil {
		return fmt.Errorf("%s: %w", d.ID, err)
	}
	pn, err := jid.Parse(p.JID)
	if err != nil {
		return fmt.Errorf("%s: jid: %w", d.ID, err)
	}
	lid, err := jid.Parse(p.LID)
	if err != nil {
		return fmt.Errorf("%s: lid: %w", d.ID, err)
	}
	d.JID, d.LID, d.Platform, d.Account = pn.String(), lid.String(), p.Platform, account
	copy(d.MainDeviceIdentity[:], sdi.GetAccountSignatureKey())
	d.PairedAt = time.Now().UTC()
	return d.Validate()
}

// saveAccounts writes the accounts into st: each device, then its prekeys,
// marked uploaded.
func saveAccounts(ctx context.Context, st store.Store, accts []loadAccount) error {
	return parallel(ctx, len(accts), func(i int) error {
		a := accts[i]
		if err := st.Save(ctx, a.dev); err != nil {
			return err
		}
		if len(a.prekeys) == 0 {
			return nil
		}
		if err := st.AddPreKeys(ctx, a.dev.ID, a.prekeys); err != nil {
			return err
		}
		return st.MarkPreKeysUploaded(ctx, a.dev.ID, a.prekeys[len(a.prekeys)-1].ID)
	})
}

// parallel runs fn(0..n-1) on a few goroutines per CPU and returns the
// first error.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil || next >= n {
			return 0, false
		}
		next++
		return next - 1, true
	}
	for range 4 * runtime.NumCPU() {
		wg.Go(func() {
			for {
				i, ok := take()
				if !ok {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(i)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
