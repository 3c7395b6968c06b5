package connection

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/wafleet/wafleet/signal"
	"github.com/wafleet/wafleet/store"
)

// ownSenderKey is our sender key in one group and the devices that have
// its distribution message. It is stored as one Signal record, the sender
// key of our own device's address in the group (store.SenderKeyChange:
// sealed and fenced like every session), so that the key and who holds it
// change together in the write that precedes the message. No peer sends
// under our own device's address, so the receive path never reads it
// (decryption refuses that address).
//
// Record, integers big-endian:
//
//	version (1) = 1 | u32 length + signal.SenderKey record | u32 count |
//	count × (u8 length + peer address), addresses sorted
type ownSenderKey struct {
	key     *signal.SenderKey // nil until the first send to the group
	holders map[string]bool   // peer addresses given the distribution
}

const ownSenderKeyVersion = 1

func (k *ownSenderKey) marshal() ([]byte, error) {
	rec, err := k.key.MarshalBinary()
	if err != nil {
		return nil, err
	}
	addrs := make([]string, 0, len(k.holders))
	for a := range k.holders {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	b := make([]byte, 0, 9+len(rec)+len(addrs)*24)
	b = append(b, ownSenderKeyVersion)
	b = binary.BigEndian.AppendUint32(b, uint32(len(rec)))
	b = append(b, rec...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(addrs)))
	for _, a := range addrs {
		b = append(b, byte(len(a)))
		b = append(b, a...)
	}
	clear(rec)
	if len(b) > store.MaxSignalRecordLen {
		return nil, fmt.Errorf("our sender key record would be %d bytes, more than %d", len(b), store.MaxSignalRecordLen)
	}
	return b, nil
}

func (k *ownSenderKey) unmarshal(b []byte) error {
	bad := func(why string) error { return fmt.Errorf("our sender key record: %s", why) }
	if len(b) < 9 || b[0] != ownSenderKeyVersion {
		return bad("not version 1")
	}
	n := binary.BigEndian.Uint32(b[1:])
	if uint64(n) > uint64(len(b)-9) {
		return bad("truncated key")
	}
	k.key = new(signal.SenderKey)
	if err := k.key.UnmarshalBinary(b[5 : 5+n]); err != nil {
		return err
	}
	rest := b[5+n:]
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if uint64(count) > uint64(len(rest)) {
		return bad("truncated holders")
	}
	k.holders = make(map[string]bool, count)
	for range count {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return bad("truncated holder")
		}
		k.holders[string(rest[1:1+rest[0]])] = true
		rest = rest[1+rest[0]:]
	}
	if len(rest) != 0 {
		return bad("trailing bytes")
	}
	return nil
}
