package app

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wafleet/wafleet/config"
	"github.com/wafleet/wafleet/store"
	"github.com/wafleet/wafleet/store/storetest"
)

func TestEncryptionKeyMigratesAndRejectsAWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wafleet.db")
	plain, err := store.OpenBolt(path, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dev := storetest.PairedDevice(t, "acct", "15550000001", "100000000000001", 1)
	if err := plain.Save(context.Background(), dev); err != nil {
		t.Fatal(err)
	}
	plain.Close()

	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Path = path
	key := make([]byte, 32)
	key[0] = 1
	cfg.Store.EncryptionKey = base64.StdEncoding.EncodeToString(key)

	st, err := openStore(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	bolt := st.(*store.BoltStore)
	got, info, err := bolt.LoadRecord(context.Background(), "acct")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Sealed {
		t.Fatal("the record written before the key was set was not sealed at start")
	}
	if diff := storetest.Diff(dev, got); len(diff) != 0 {
		t.Fatalf("device changed by the migration: %v", diff)
	}
	st.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if name, found := storetest.DeviceSecretIn(raw, dev); found {
		t.Fatalf("%s, written before the key was set, is still in the file after the start", name)
	}

	key[0] = 2
	cfg.Store.EncryptionKey = base64.StdEncoding.EncodeToString(key)
	if _, err := openStore(cfg, logger); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("wrong key at start: err = %v, want ErrWrongKey", err)
	}
}

func TestEmptyStoreFileStopsTheStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wafleet.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store.Path = path
	st, err := openStore(cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err == nil {
		_ = st.Close()
		t.Fatal("an empty store file was accepted")
	}
	if !errors.Is(err, store.ErrNotAStore) || strings.Count(err.Error(), path) != 1 {
		t.Fatalf("openStore = %v; want ErrNotAStore naming the file once", err)
	}
	if info, err := os.Stat(path); err != nil || info.Size() != 0 {
		t.Fatalf("the empty file was written or removed: %v", err)
	}
}
