package state

import (
	"bytes"
	"strings"
	"sync"
)

// Memory is a Store that lives in memory and forgets everything on exit. It
// is for tests of the packages that use a Store.
type Memory struct {
	mu     sync.Mutex
	m      map[string][]byte
	closed bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory { return &Memory{m: make(map[string][]byte)} }

// Get implements Store.
func (s *Memory) Get(k Key) ([]byte, bool, error) {
	key, err := k.encode()
	if err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	v, ok := s.m[string(key)]
	return bytes.Clone(v), ok, nil
}

// Put implements Store.
func (s *Memory) Put(k Key, v []byte) error {
	key, err := k.encode()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if v == nil {
		v = []byte{}
	}
	s.m[string(key)] = bytes.Clone(v)
	return nil
}

// Delete implements Store.
func (s *Memory) Delete(k Key) error {
	key, err := k.encode()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	delete(s.m, string(key))
	return nil
}

// List implements Store.
func (s *Memory) List(prefix Key) (map[Key][]byte, error) {
	p, exact, err := prefix.prefixBytes()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make(map[Key][]byte)
	for k, v := range s.m {
		if (exact && k != string(p)) || !strings.HasPrefix(k, string(p)) {
			continue
		}
		key, err := decodeKey([]byte(k))
		if err != nil {
			return nil, err
		}
		out[key] = bytes.Clone(v)
	}
	return out, nil
}

// Close implements Store.
func (s *Memory) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
