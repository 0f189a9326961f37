package main

import (
	"bytes"
	"encoding/json"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
	"github.com/klauspost/compress/gzip"
	"io"
	"testing"
)

// The reference splitter yields every record whole, including strings that
// hold escaped quotes and structural bytes.
func TestSplitRecords(t *testing.T) {
	o := samples.BusyTrail(1, 1000, 1)
	zr, _ := gzip.NewReader(bytes.NewReader(o.Body))
	doc, _ := io.ReadAll(zr)
	n := 0
	err := splitRecords(doc, func(r []byte) error {
		n++
		if !json.Valid(r) {
			t.Fatalf("invalid %s", r)
		}
		return nil
	})
	if err != nil || n != 1000 {
		t.Fatal(err, n)
	}
	doc2 := []byte(`{"Records":[{"a":"x\\\\"},{"b":"q\"}{"},{"c":[1,{"d":"]"}]}]}`)
	n = 0
	err = splitRecords(doc2, func(r []byte) error {
		n++
		if !json.Valid(r) {
			t.Fatalf("invalid %s", r)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatal(err, n)
	}
}
func BenchmarkSplit(b *testing.B) {
	o := samples.BusyTrail(1, 1000, 1)
	zr, _ := gzip.NewReader(bytes.NewReader(o.Body))
	doc, _ := io.ReadAll(zr)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		splitRecords(doc, func([]byte) error { return nil })
	}
}
