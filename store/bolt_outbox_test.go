package store_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestBoltOutboxContract(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "sealed"}[sealed]
		t.Run(name, func(t *testing.T) {
			storetest.RunOutbox(t, func(t *testing.T) storetest.OutboxFixture {
				path := filepath.Join(t.TempDir(), "devices.db")
				opts := store.BoltOptions{OutboxHistory: storetest.OutboxHistory}
				if sealed {
					opts.Sealer = mustSealer(t, testKey(7))
				}
				s := openBolt(t, path, opts)
				return storetest.OutboxFixture{
					Outbox: s,
					Reopen: func(t *testing.T) store.Outbox {
						if err := s.Close(); err != nil {
							t.Fatal(err)
						}
						s = openBolt(t, path, opts)
						return s
					},
					Sealed: sealed,
					Raw: func(t *testing.T) []byte {
						raw, err := os.ReadFile(path)
						if err != nil {
							t.Fatal(err)
						}
						return raw
					},
				}
			})
		})
	}
}

// An endpoint saved before the store had a key has its secret sealed by
// Reseal, and the compaction leaves no copy of it in the file.
func TestBoltResealSealsEndpointSecrets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "devices.db")
	const secret = "whsec-reseal-me-0123456789abcdef"
	s := openBolt(t, path, store.BoltOptions{})
	e := store.Endpoint{Name: "hooks", Account: "acct1", URL: "https://hooks.example.com/", Secret: secret}
	if err := s.SaveEndpoint(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sealer := mustSealer(t, testKey(9))
	s = openBolt(t, path, store.BoltOptions{Sealer: sealer})
	n, err := s.Reseal(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reseal = %d, %v; want the endpoint sealed", n, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the endpoint secret is still in the file after Reseal")
	}
	got, err := s.Endpoints(t.Context())
	if err != nil || len(got) != 1 || got[0].Secret != secret {
		t.Fatalf("Endpoints after Reseal: %d, %v; want the secret back", len(got), err)
	}
}

// BenchmarkBoltOutboxAppend appends batches as the journal does (one
// fsync'd transaction each); ns/op is per event.
func BenchmarkBoltOutboxAppend(b *testing.B) {
	storetest.BenchOutboxAppend(b, func(b *testing.B) store.Outbox {
		s, err := store.OpenBolt(filepath.Join(b.TempDir(), "devices.db"), store.BoltOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}
