// Package state keeps small values by key: the checkpoints that tell an API
// puller where to resume. A value is saved only past acknowledged data, so a
// restart re-reads at most what was not yet delivered.
//
// Store is the seam that lets a shared store (leases and checkpoints in
// DynamoDB, for several replicas) replace the embedded one later; sources
// depend on Store, never on Bolt.
package state

import (
	"errors"
	"fmt"
	"strings"
)

// Key names one checkpoint. Input, Service and Region identify the unit that
// owns it; Sub distinguishes several checkpoints of one unit (a log group, a
// detector, a namespace) and may be empty.
type Key struct {
	Input, Service, Region, Sub string
}

// String renders the key as "input/service/region/sub" for logs and docs.
// It is for people: a field may itself contain "/" (a log group name), so the
// stores never parse it back.
func (k Key) String() string {
	return k.Input + "/" + k.Service + "/" + k.Region + "/" + k.Sub
}

// Store loads and saves checkpoints. Implementations are safe for concurrent
// use.
type Store interface {
	// Get returns the value saved under k and whether there was one.
	Get(k Key) ([]byte, bool, error)
	// Put saves v under k. When Put returns nil the value survives a crash or
	// power loss of this host.
	Put(k Key, v []byte) error
	// Delete removes k. Deleting a missing key is not an error.
	Delete(k Key) error
	// List returns every entry under prefix. The prefix is a leading run of
	// fields: Key{Input: "aws", Service: "cloudtrail"} selects all regions
	// and subs of that service, Key{} selects everything. A set field after
	// an empty one is an error.
	List(prefix Key) (map[Key][]byte, error)
	// Close releases the store; other methods fail afterwards.
	Close() error
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("state store is closed")

// sep separates the fields of a stored key. A NUL cannot appear in a config
// key or an AWS name, so the encoding stays unambiguous even when a field
// holds "/".
const sep = "\x00"

func (k Key) fields() []string { return []string{k.Input, k.Service, k.Region, k.Sub} }

func (k Key) validate() error {
	for _, f := range k.fields() {
		if strings.Contains(f, sep) {
			return fmt.Errorf("checkpoint key %q: a field contains a NUL byte", k.String())
		}
	}
	return nil
}

// encode returns the stored form of k: the four fields joined by NUL.
func (k Key) encode() ([]byte, error) {
	if err := k.validate(); err != nil {
		return nil, err
	}
	return []byte(strings.Join(k.fields(), sep)), nil
}

// prefixBytes returns the stored-key prefix that selects every key under p,
// and whether p names a single key (all four fields set), in which case the
// caller must match exactly rather than by prefix.
func (p Key) prefixBytes() (prefix []byte, exact bool, err error) {
	if err := p.validate(); err != nil {
		return nil, false, err
	}
	fs := p.fields()
	n := 0
	for n < len(fs) && fs[n] != "" {
		n++
	}
	for _, f := range fs[n:] {
		if f != "" {
			return nil, false, fmt.Errorf("checkpoint prefix %q: a field is set after an empty one", p.String())
		}
	}
	if n == len(fs) {
		b, err := p.encode()
		return b, true, err
	}
	var b strings.Builder
	for _, f := range fs[:n] {
		b.WriteString(f)
		b.WriteString(sep)
	}
	return []byte(b.String()), false, nil
}

func decodeKey(b []byte) (Key, error) {
	fs := strings.Split(string(b), sep)
	if len(fs) != 4 {
		return Key{}, fmt.Errorf("stored checkpoint key %q has %d fields, want 4", b, len(fs))
	}
	return Key{Input: fs[0], Service: fs[1], Region: fs[2], Sub: fs[3]}, nil
}

// Reset deletes every checkpoint under prefix (same prefix rules as List)
// and returns how many it deleted, so the affected units start again from
// their configured start_time. It is for operator tooling; run it only while
// no collector uses the store.
func Reset(s Store, prefix Key) (int, error) {
	entries, err := s.List(prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for k := range entries {
		if err := s.Delete(k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
