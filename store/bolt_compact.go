package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// compactTxMaxSize bounds the bytes copied per transaction of a compaction,
// and so the memory it takes.
const compactTxMaxSize = 16 << 20

// compactPath is the file a compaction of the store at path writes, beside
// it, before renaming it over path.
func compactPath(path string) string { return path + ".compacting" }

// compactStep, when a test sets it, is called after each step of a
// compaction ("written": the new file is complete and synced; "renamed": it
// replaced the old one) so that the test can stop the process there.
var compactStep func(step string)

// compact rewrites the store into a fresh file that holds only the live
// records, marked with keyNoPlaintext, and puts it in place of the old
// file: written beside it and synced, renamed over it (atomic: a crash
// leaves the old file or the new one, never neither), then the directory
// synced. The old file's pages, free ones included, go with it. The new
// file stays open (and locked) throughout, so no other process can take it
// between the rename and its use. The caller holds s.mu exclusively.
func (s *BoltStore) compact() (err error) {
	defer func() {
		if r := recover(); r != nil { // bbolt panics on some damaged pages
			err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r)
		}
	}()
	tmp := compactPath(s.path)
	if err := removeIfExists(tmp); err != nil {
		return fmt.Errorf("remove an earlier %s: %w", tmp, err)
	}
	info, err := os.Stat(s.path)
	if err != nil {
		return err
	}
	dst, err := bolt.Open(tmp, info.Mode().Perm(), &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := fill(dst, s.db); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	dir := filepath.Dir(s.path)
	if err := syncDir(dir); err != nil { // the new file's entry
		_ = dst.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	reached("written")
	if err := os.Rename(tmp, s.path); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return err
	}
	// The file at s.path is dst now, whatever happens next.
	old := s.db
	s.db = dst
	reached("renamed")
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the replaced file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("sync directory %s after the rename: %w", dir, err)
	}
	return nil
}

// fill copies src into the empty dst and marks it keyNoPlaintext; every
// commit is synced.
func fill(dst, src *bolt.DB) error {
	if err := bolt.Compact(dst, src, compactTxMaxSize); err != nil {
		return err
	}
	return dst.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyNoPlaintext, []byte{1})
	})
}

// reached calls compactStep, if a test set it.
func reached(name string) {
	if compactStep != nil {
		compactStep(name)
	}
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
