package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func benchSealers(b *testing.B) []struct {
	name   string
	sealer store.Sealer
} {
	return []struct {
		name   string
		sealer store.Sealer
	}{
		{"plain", nil},
		{"sealed", mustSealer(b, testKey(1))},
	}
}

// BenchmarkBoltSave measures one fsync'd Save of a paired device (record and
// mapping in one transaction), overwriting the same id.
func BenchmarkBoltSave(b *testing.B) {
	for _, bs := range benchSealers(b) {
		b.Run(bs.name, func(b *testing.B) {
			s := openBolt(b, filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{Sealer: bs.sealer})
			d := storetest.PairedDevice(b, "acct", "15551234567", "123456789012345", 5)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Save(b.Context(), d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBoltLoad measures Load of a paired device from a store of 100.
func BenchmarkBoltLoad(b *testing.B) {
	for _, bs := range benchSealers(b) {
		b.Run(bs.name, func(b *testing.B) {
			s := openBolt(b, filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{Sealer: bs.sealer})
			for i := range 100 {
				d := storetest.PairedDevice(b, "acct-"+string(rune('a'+i/26))+string(rune('a'+i%26)), "15551234567", "123456789012345", 5)
				if err := s.Save(b.Context(), d); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Load(b.Context(), "acct-cd"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCodec measures Encode and Decode alone (no I/O). Encode validates
// with the three X25519 base-point multiplications that check the public
// halves, which dominate; Decode trusts the halves Encode checked.
func BenchmarkCodec(b *testing.B) {
	d := storetest.PairedDevice(b, "acct", "15551234567", "123456789012345", 5)
	for _, bs := range benchSealers(b) {
		rec, err := store.Encode(d, bs.sealer)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("Encode/"+bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := store.Encode(d, bs.sealer); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("Decode/"+bs.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := store.Decode(rec, bs.sealer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBoltPreKeys measures the connection actor's first upload on a
// fresh device: AddPreKeys of 812 keys (one transaction), PreKeysToUpload
// of them and MarkPreKeysUploaded; and the count it takes at every login.
func BenchmarkBoltPreKeys(b *testing.B) {
	for _, bs := range benchSealers(b) {
		b.Run(bs.name, func(b *testing.B) {
			s := openBolt(b, filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{Sealer: bs.sealer})
			keys := storetest.NewPreKeys(b, 1, 812)
			b.Run("upload812", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					if err := s.Delete(b.Context(), "acct"); err != nil {
						b.Fatal(err)
					}
					if err := s.Save(b.Context(), storetest.NewDevice(b, "acct")); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := s.AddPreKeys(b.Context(), "acct", keys); err != nil {
						b.Fatal(err)
					}
					if got, err := s.PreKeysToUpload(b.Context(), "acct", 812); err != nil || len(got) != 812 {
						b.Fatal(len(got), err)
					}
					if err := s.MarkPreKeysUploaded(b.Context(), "acct", 812); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("counts", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if c, err := s.PreKeyCounts(b.Context(), "acct"); err != nil || c.Uploaded != 812 {
						b.Fatal(c, err)
					}
				}
			})
		})
	}
}

// BenchmarkSignalApply measures one ApplySignal of what decrypting a
// message changes: the session (a 2 KB record) and the sender's identity,
// in one fsync'd transaction.
func BenchmarkSignalApply(b *testing.B) {
	for _, bs := range benchSealers(b) {
		b.Run("bolt/"+bs.name, func(b *testing.B) {
			s := openBolt(b, filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{Sealer: bs.sealer})
			if err := s.Save(b.Context(), storetest.NewDevice(b, "acct")); err != nil {
				b.Fatal(err)
			}
			c := store.SignalChanges{
				Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: storetest.SignalRecord(b, 2048)}},
				Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{1}}},
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.ApplySignal(b.Context(), "acct", c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignalApplyAccounts measures ApplySignal of a message's state
// and its event (a 2 KB session, the sender's identity, a 400-byte outbox
// record) made by many accounts at once, each one call at a time as its
// store queue makes them: the group commit shares transactions between
// them. ns/op is per call; tx/op is the write transactions (each one
// fsync) per call.
func BenchmarkSignalApplyAccounts(b *testing.B) {
	for _, accounts := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			s := openBolt(b, filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{})
			for a := range accounts {
				if err := s.Save(b.Context(), storetest.NewDevice(b, fmt.Sprintf("acct%d", a))); err != nil {
					b.Fatal(err)
				}
			}
			rec := storetest.SignalRecord(b, 2048)
			per := (b.N + accounts - 1) / accounts
			b.ReportAllocs()
			tx0 := store.TxID(s)
			b.ResetTimer()
			var wg sync.WaitGroup
			for a := range accounts {
				id := fmt.Sprintf("acct%d", a)
				c := store.SignalChanges{
					Sessions:   []store.SessionChange{{Addr: storetest.PeerPN, Record: rec}},
					Identities: []store.IdentityChange{{Addr: storetest.PeerPN, Key: [32]byte{1}}},
					Events:     []store.OutboxRecord{{Account: id, Kind: "message", Instance: "bench", Body: make([]byte, 400)}},
				}
				wg.Go(func() {
					for range per {
						if _, err := s.ApplySignal(context.Background(), id, c); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(store.TxID(s)-tx0)/float64(per*accounts), "tx/op")
		})
	}
}
