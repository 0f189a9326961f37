// Package golden compares test output with files under testdata/ and rewrites
// them when the tests run with -update.
package golden

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the .golden files with the current output")

// Inputs returns the testdata/*.in files of the calling package's directory.
func Inputs(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.in"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.in files")
	}
	return files
}

// Check compares got with the .golden file next to the .in file in, or writes
// it under -update.
func Check(t testing.TB, in string, got []byte) {
	t.Helper()
	path := strings.TrimSuffix(in, ".in") + ".golden"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: output differs from %s\n--- got ---\n%s\n--- want ---\n%s", in, path, got, want)
	}
}

// CheckStream runs describe over each testdata/*.in file, compares the
// result with its .golden file, and checks that reading the same bytes one
// byte at a time describes them identically (buffer boundaries must not
// change what a streaming reader yields).
func CheckStream(t *testing.T, describe func(io.Reader) []byte) {
	t.Helper()
	for _, in := range Inputs(t) {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		got := describe(bytes.NewReader(data))
		Check(t, in, got)
		if again := describe(iotest.OneByteReader(bytes.NewReader(data))); !bytes.Equal(again, got) {
			t.Errorf("%s: one-byte reads differ:\n%s", in, again)
		}
	}
}
