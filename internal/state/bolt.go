package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// FileName is the checkpoint database inside the persistence directory.
const FileName = "checkpoints.db"

// lockTimeout bounds how long Open waits for the file lock. bbolt retries
// flock until then; a second collector on the same directory must fail
// clearly instead of hanging.
var lockTimeout = 2 * time.Second

var (
	checkpointsBucket = []byte("checkpoints")
	metaBucket        = []byte("meta")
	versionKey        = []byte("version")
	// formatVersion is the layout of stored keys and values. Bump it, and
	// migrate in Open, if the encoding ever changes.
	formatVersion = []byte("1")
)

// Bolt is the embedded Store: one bbolt file under the persistence
// directory. bbolt commits by writing new pages, fsyncing them and only then
// switching the meta page, so a process killed mid-write leaves the previous
// committed state intact.
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

// Open opens (creating if needed) <dir>/checkpoints.db; dir is created with
// mode 0700 because checkpoints reveal which accounts and resources are read.
// Only one process may hold the file: if another holds it, Open fails after
// about two seconds with an error that names the file.
func Open(dir string) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create persistence directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open checkpoint store %s: file is locked: another collector is running with the same persistence directory", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open checkpoint store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(checkpointsBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch v := meta.Get(versionKey); {
		case v == nil:
			return meta.Put(versionKey, formatVersion)
		case !bytes.Equal(v, formatVersion):
			return fmt.Errorf("unsupported format version %q (this build reads %q)", v, formatVersion)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialise checkpoint store %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Path returns the database file name.
func (b *Bolt) Path() string { return b.db.Path() }

// Get implements Store.
func (b *Bolt) Get(k Key) ([]byte, bool, error) {
	key, err := k.encode()
	if err != nil {
		return nil, false, err
	}
	var out []byte
	err = b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(checkpointsBucket).Get(key); v != nil {
			// bbolt's slice is only valid inside the transaction.
			out = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, false, b.wrap("get", k, err)
	}
	return out, out != nil, nil
}

// Put implements Store. The commit is fsynced before Put returns.
func (b *Bolt) Put(k Key, v []byte) error {
	key, err := k.encode()
	if err != nil {
		return err
	}
	if v == nil {
		// bbolt stores nil as an empty value, and Get reports a missing key
		// as nil; keep "present" distinguishable.
		v = []byte{}
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(checkpointsBucket).Put(key, v)
	})
	return b.wrap("put", k, err)
}

// Delete implements Store.
func (b *Bolt) Delete(k Key) error {
	key, err := k.encode()
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(checkpointsBucket).Delete(key)
	})
	return b.wrap("delete", k, err)
}

// List implements Store.
func (b *Bolt) List(prefix Key) (map[Key][]byte, error) {
	p, exact, err := prefix.prefixBytes()
	if err != nil {
		return nil, err
	}
	out := make(map[Key][]byte)
	err = b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(checkpointsBucket).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if exact && !bytes.Equal(k, p) {
				break
			}
			key, err := decodeKey(k)
			if err != nil {
				return err
			}
			out[key] = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, b.wrap("list", prefix, err)
	}
	return out, nil
}

// Close implements Store. It releases the file lock.
func (b *Bolt) Close() error {
	return b.db.Close()
}

func (b *Bolt) wrap(op string, k Key, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = ErrClosed
	}
	return fmt.Errorf("%s checkpoint %s in %s: %w", op, k, b.db.Path(), err)
}
