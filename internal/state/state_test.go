package state

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// stores runs a test against every Store implementation, so Memory (used by
// other packages' tests) cannot drift from Bolt.
func stores(t *testing.T, f func(t *testing.T, open func() Store)) {
	t.Run("bolt", func(t *testing.T) {
		dir := t.TempDir()
		f(t, func() Store {
			b, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			return b
		})
	})
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		f(t, func() Store { return m })
	})
}

func TestKeyString(t *testing.T) {
	k := Key{Input: "aws", Service: "cwl_1", Region: "us-east-2", Sub: "/aws/events/x"}
	if got, want := k.String(), "aws/cwl_1/us-east-2//aws/events/x"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

func TestGetPutDelete(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		s := open()
		defer s.Close()
		k := Key{"aws", "audit-events-all", "us-east-2", ""}
		if v, ok, err := s.Get(k); err != nil || ok || v != nil {
			t.Fatalf("Get on empty store = %q, %v, %v; want nil, false, nil", v, ok, err)
		}
		if err := s.Put(k, []byte("2024-05-01T00:00:00Z")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(k, []byte("2024-05-01T01:00:00Z")); err != nil {
			t.Fatal(err)
		}
		v, ok, err := s.Get(k)
		if err != nil || !ok || string(v) != "2024-05-01T01:00:00Z" {
			t.Fatalf("Get = %q, %v, %v; want the second value", v, ok, err)
		}
		// The caller may reuse the returned slice freely.
		v[0] = 'X'
		if v2, _, _ := s.Get(k); string(v2) != "2024-05-01T01:00:00Z" {
			t.Fatalf("mutating a returned value changed the store: %q", v2)
		}
		if err := s.Put(Key{"aws", "x", "y", "empty"}, nil); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := s.Get(Key{"aws", "x", "y", "empty"}); err != nil || !ok || len(v) != 0 {
			t.Fatalf("Get of an empty value = %q, %v, %v; want present and empty", v, ok, err)
		}
		if err := s.Delete(k); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := s.Get(k); err != nil || ok {
			t.Fatalf("Get after Delete: ok=%v err=%v", ok, err)
		}
		if err := s.Delete(k); err != nil {
			t.Fatalf("Delete of a missing key: %v", err)
		}
	})
}

func TestList(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		s := open()
		defer s.Close()
		entries := map[Key]string{
			{"aws", "cwl", "us-east-1", "/aws/a"}:        "1",
			{"aws", "cwl", "us-east-1", "/aws/a/b"}:      "2",
			{"aws", "cwl", "us-east-10", "/aws/a"}:       "3",
			{"aws", "cwl", "eu-west-1", ""}:              "4",
			{"aws", "cwl2", "us-east-1", "/aws/a"}:       "5",
			{"other", "cwl", "us-east-1", "/aws/a"}:      "6",
			{"aws", "guardduty", "us-east-1", "det-123"}: "7",
		}
		for k, v := range entries {
			if err := s.Put(k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		pick := func(vals ...string) map[Key][]byte {
			out := map[Key][]byte{}
			for k, v := range entries {
				for _, want := range vals {
					if v == want {
						out[k] = []byte(v)
					}
				}
			}
			return out
		}
		tests := []struct {
			prefix Key
			want   map[Key][]byte
		}{
			{Key{}, pick("1", "2", "3", "4", "5", "6", "7")},
			{Key{Input: "aws"}, pick("1", "2", "3", "4", "5", "7")},
			// "cwl" must not match "cwl2", nor "us-east-1" match "us-east-10".
			{Key{Input: "aws", Service: "cwl"}, pick("1", "2", "3", "4")},
			{Key{Input: "aws", Service: "cwl", Region: "us-east-1"}, pick("1", "2")},
			// A full key selects exactly that key, not "/aws/a/b".
			{Key{"aws", "cwl", "us-east-1", "/aws/a"}, pick("1")},
			{Key{Input: "nobody"}, map[Key][]byte{}},
		}
		for _, tt := range tests {
			got, err := s.List(tt.prefix)
			if err != nil {
				t.Fatalf("List(%v): %v", tt.prefix, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("List(%v) = %q, want %q", tt.prefix, got, tt.want)
			}
		}
		if _, err := s.List(Key{Input: "aws", Region: "us-east-1"}); err == nil {
			t.Error("List with a gap in the prefix: want an error")
		}
	})
}

func TestRejectsNUL(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		s := open()
		defer s.Close()
		bad := Key{"aws", "svc", "us-east-1", "a\x00b"}
		if err := s.Put(bad, []byte("v")); err == nil {
			t.Error("Put with NUL in a field: want an error")
		}
		if _, _, err := s.Get(bad); err == nil {
			t.Error("Get with NUL in a field: want an error")
		}
	})
}

func TestClosed(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		s := open()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		k := Key{"aws", "svc", "us-east-1", ""}
		if err := s.Put(k, []byte("v")); !errors.Is(err, ErrClosed) {
			t.Errorf("Put after Close = %v, want ErrClosed", err)
		}
		if _, _, err := s.Get(k); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Close = %v, want ErrClosed", err)
		}
	})
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{"aws", "aws-guardduty", "ap-southeast-1", "det"}
	if err := s.Put(k, []byte("cursor-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode = %o, want 700", perm)
	}
	if _, err := os.Stat(filepath.Join(dir, "checkpoints.db")); err != nil {
		t.Errorf("database file: %v", err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, ok, err := s.Get(k); err != nil || !ok || string(v) != "cursor-1" {
		t.Fatalf("after reopen Get = %q, %v, %v", v, ok, err)
	}
}

func TestOpenFailsOnUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(file)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("Open on a regular file = %v, want an error naming it", err)
	}
}

func TestReset(t *testing.T) {
	stores(t, func(t *testing.T, open func() Store) {
		s := open()
		defer s.Close()
		keep := Key{"aws", "cwl2", "us-east-1", "g"}
		for _, k := range []Key{{"aws", "cwl", "us-east-1", "a"}, {"aws", "cwl", "eu-west-1", "b"}, keep} {
			if err := s.Put(k, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		n, err := Reset(s, Key{Input: "aws", Service: "cwl"})
		if err != nil || n != 2 {
			t.Fatalf("Reset = %d, %v; want 2 deleted", n, err)
		}
		left, err := s.List(Key{})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[keep] == nil {
			t.Fatalf("left after Reset: %q", left)
		}
	})
}
