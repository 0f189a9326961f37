// Package golden compares test output with files under testdata/ and rewrites
// them when the tests run with -update.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
