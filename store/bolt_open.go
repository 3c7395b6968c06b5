package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// OpenBolt opens the store in the bbolt file at path, and creates a new
// store there only when no file exists. An existing file that is not a
// wafleet store (empty, not a bbolt file, with damaged pages or without the
// store's buckets) is an error wrapping ErrNotAStore that names the file,
// which is left as it was; bbolt's panics on damaged pages become such
// errors too. If another process holds the file, it fails with ErrLocked
// after opts.Timeout instead of waiting forever. A compaction file that a
// crash during Reseal left beside the store is removed.
//
// The check reads the meta pages, the freelist and every page of the
// store's buckets except the accounts' prekeys; damage that bbolt does not
// detect (it trusts the element counts and overflow lengths of page
// headers) can still fail later, or exhaust memory.
func OpenBolt(path string, opts BoltOptions) (*BoltStore, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o600
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
		}
	}
	existed, err := fileExists(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db, err := openBoltFile(path, opts)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := prepare(db, existed, opts.Sealer != nil); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Holding the lock, nobody else can be compacting into this file.
	if err := removeIfExists(compactPath(path)); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: remove the file of an unfinished compaction: %w", path, err)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &BoltStore{db: db, sealer: opts.Sealer, path: path, outboxHistory: opts.OutboxHistory, now: opts.Now}, nil
}

// fileExists reports whether a file is at path. An empty file is an error:
// bbolt would make a new store of it, and an existing store truncated to
// nothing must not be silently replaced by an empty one.
func fileExists(path string) (bool, error) {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !info.Mode().IsRegular():
		return false, fmt.Errorf("%w: not a regular file", ErrNotAStore)
	case info.Size() == 0:
		return false, fmt.Errorf("%w: the file exists but is empty; move it away to start a new store", ErrNotAStore)
	}
	return true, nil
}

// openBoltFile opens path with bbolt. Errors that say the file is not a
// valid bbolt file, and panics, wrap ErrNotAStore.
func openBoltFile(path string, opts BoltOptions) (db *bolt.DB, err error) {
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			// bbolt panics on some damaged pages (its freelist) while
			// opening. The descriptor is closed here; the memory mapping,
			// and with it the file lock, last until the process exits.
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("%w: bbolt: %v", ErrNotAStore, r)
		}
	}()
	db, err = bolt.Open(path, opts.FileMode, &bolt.Options{
		Timeout: opts.Timeout,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	var pathErr *fs.PathError
	var errno syscall.Errno
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("no lock after %v: %w", opts.Timeout, ErrLocked)
	case errors.As(err, &pathErr), errors.As(err, &errno):
		return nil, err // the system's, not the file's content
	default:
		return nil, fmt.Errorf("%w: bbolt: %w", ErrNotAStore, err)
	}
}

// prepare checks that an existing file holds a wafleet store, creates the
// buckets a new (or older) one lacks, and keeps keyNoPlaintext true: set in
// a file created with a Sealer, dropped when the file is opened without
// one. bbolt panics on some damaged pages; that is an error here.
func prepare(db *bolt.DB, existed, sealed bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt: %v", ErrNotAStore, r)
		}
	}()
	if existed {
		if err := db.View(checkLayout); err != nil {
			return err
		}
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keySchema) == nil {
			if err := meta.Put(keySchema, []byte{boltSchema}); err != nil {
				return err
			}
		}
		switch {
		case !sealed:
			return meta.Delete(keyNoPlaintext)
		case !existed:
			return meta.Put(keyNoPlaintext, []byte{1})
		}
		return nil
	})
}

// checkLayout checks that the file is a wafleet store of a known schema and
// reads every page of its buckets but the prekeys of each account (the
// bulk of a large store), so that damage there shows now, not at the first
// use.
func checkLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil || tx.Bucket(bucketDevices) == nil {
		return fmt.Errorf("%w: no %q or %q bucket", ErrNotAStore, bucketMeta, bucketDevices)
	}
	if v := meta.Get(keySchema); len(v) != 1 || v[0] != boltSchema {
		return fmt.Errorf("%w: unsupported schema %x", ErrCorrupt, v)
	}
	for _, name := range allBuckets {
		b := tx.Bucket(name)
		if b == nil {
			continue // created by prepare: added after schema 1 was
		}
		if err := b.ForEach(func(_, _ []byte) error { return nil }); err != nil {
			return fmt.Errorf("read bucket %s: %w", name, err)
		}
	}
	return nil
}

// allBuckets are the top-level buckets every store file has; the ones
// added after schema 1 are created when missing, and an older binary
// ignores them.
var allBuckets = [][]byte{
	bucketMeta, bucketDevices, bucketDevMap, bucketPN2LID, bucketLID2PN, bucketPreKeys, bucketSettings,
	bucketOutbox, bucketQueues, bucketDead, bucketEndpoints, bucketAccounts, bucketSignal,
}

// removeIfExists removes the file at path, if there is one.
func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
