package vpcflow

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

func describe(r *Reader) []byte {
	var b bytes.Buffer
	header, err := r.Header()
	fmt.Fprintf(&b, "header: %d fields, default=%v, err=%v\n", len(header), r.IsDefault(), err)
	for {
		line, err := r.Next()
		if err != nil {
			fmt.Fprintf(&b, "end: %v\n", err)
			return b.Bytes()
		}
		fmt.Fprintf(&b, "line %d: account-id=%q interface-id=%q action=%q log-status=%q flow-direction=%q\n%s\n",
			r.Line(), r.Field("account-id"), r.Field("interface-id"), r.Field("action"), r.Field("log-status"), r.Field("flow-direction"), line)
	}
}

func TestGolden(t *testing.T) {
	golden.CheckStream(t, func(r io.Reader) []byte { return describe(NewReader(r, 0)) })
}

func TestHeaderAndFields(t *testing.T) {
	r := NewReader(strings.NewReader(strings.Join(DefaultFields, " ")+"\n2 1 eni-1 a b 1 2 6 1 2 3 4 ACCEPT OK\nshort line\n"), 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !r.IsDefault() {
		t.Error("default header not recognised")
	}
	if i := r.Index("action"); i != 12 || string(r.FieldAt(i)) != "ACCEPT" {
		t.Errorf("Index(action) = %d → %q", i, r.FieldAt(i))
	}
	if r.Field("vpc-id") != nil || r.Index("vpc-id") != -1 {
		t.Error("a field missing from the header must be nil / -1")
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Field("action") != nil || string(r.Field("version")) != "short" {
		t.Errorf("short line: action %q, version %q", r.Field("action"), r.Field("version"))
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = r.Field("interface-id") }); allocs != 0 {
		t.Errorf("Field allocates %v times", allocs)
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct {
		name, in string
		max      int
		want     error
		lines    int
	}{
		{"empty file", "", 0, io.EOF, 0},
		{"blank lines only", "\n\r\n", 0, io.EOF, 0},
		{"data first", "2 123 eni-1 ACCEPT OK\n", 0, ErrNoHeader, 0},
		{"CloudFront file", "#Version: 1.0\n#Fields: date time\n", 0, ErrNoHeader, 0},
		{"upper-case header", "Version Account-ID\n", 0, ErrNoHeader, 0},
		{"header over the cap", strings.Repeat("srcaddr ", 20) + "\n1\n", 64, ErrNoHeader, 0},
		{"too-long line is skipped", "srcaddr dstaddr\n1.1.1.1 2.2.2.2\n" + strings.Repeat("9", 300) + "\n3.3.3.3 4.4.4.4\n", 64, io.EOF, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(c.in), c.max)
			n, tooLong := 0, 0
			var err error
			for {
				if _, err = r.Next(); err == nil {
					n++
					continue
				}
				if errors.Is(err, lines.ErrTooLong) {
					tooLong++
					continue
				}
				break
			}
			if !errors.Is(err, c.want) || n != c.lines {
				t.Fatalf("%d lines, end %v; want %d, %v", n, err, c.lines, c.want)
			}
			if c.want == io.EOF && c.max > 0 && tooLong != 1 {
				t.Errorf("%d too-long errors, want 1", tooLong)
			}
		})
	}
}

func FuzzReader(f *testing.F) {
	for _, in := range []string{"version action\n2 ACCEPT\n", "a b\r\nc d", "2 x\n", "\n\nsrcaddr\n1\n"} {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)), 128)
		header, herr := r.Header()
		for {
			line, err := r.Next()
			if errors.Is(err, lines.ErrTooLong) {
				continue
			}
			if err != nil {
				if herr == nil && err != io.EOF {
					t.Fatalf("unexpected end %v", err)
				}
				return
			}
			if len(line) == 0 || bytes.ContainsAny(line[len(line)-1:], "\r\n") || bytes.IndexByte(line, '\n') >= 0 {
				t.Fatalf("bad line %q", line)
			}
			for i, name := range header {
				if got, want := r.Field(name), r.FieldAt(r.Index(name)); !bytes.Equal(got, want) {
					t.Fatalf("Field(%q) %q != FieldAt(%d) %q", name, got, i, want)
				}
			}
			if got := bytes.Join(fields(r, len(bytes.Split(line, []byte(" ")))), []byte(" ")); !bytes.Equal(got, line) {
				t.Fatalf("fields rejoin to %q, line %q", got, line)
			}
		}
	})
}

func fields(r *Reader, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = r.FieldAt(i)
	}
	return out
}

// benchLines builds a deterministic default-format file of n data lines.
func benchLines(n int) []byte {
	rng := rand.New(rand.NewPCG(7, 11))
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	fmt.Fprintln(w, strings.Join(DefaultFields, " "))
	actions := []string{"ACCEPT", "ACCEPT", "ACCEPT", "REJECT"}
	for i := range n {
		if i%50 == 49 {
			fmt.Fprintf(w, "2 123456789012 eni-%017x - - - - - - - 1717161240 1717161300 - NODATA\n", rng.Uint64()>>4)
			continue
		}
		fmt.Fprintf(w, "2 123456789012 eni-%017x 10.%d.%d.%d 172.31.%d.%d %d %d 6 %d %d 1717161240 1717161300 %s OK\n",
			rng.Uint64()>>4, rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256),
			rng.IntN(65536), rng.IntN(65536), 1+rng.IntN(500), 40+rng.IntN(1<<20), actions[rng.IntN(4)])
	}
	w.Flush()
	return b.Bytes()
}

// BenchmarkReader reads a default-format file and looks up two fields per
// line, reporting lines/s (goal: >= 1.5 M/s on one core).
func BenchmarkReader(b *testing.B) {
	const n = 100000
	data := benchLines(n)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(data), 0)
		action, account := -1, -1
		got := 0
		for {
			_, err := r.Next()
			if err != nil {
				break
			}
			if action < 0 {
				action, account = r.Index("action"), r.Index("account-id")
			}
			if len(r.FieldAt(action)) > 0 && len(r.FieldAt(account)) > 0 {
				got++
			}
		}
		if got != n {
			b.Fatalf("%d lines, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkReaderGzip is the same file read through gunzip.
func BenchmarkReaderGzip(b *testing.B) {
	const n = 100000
	data := benchLines(n)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(data)
	zw.Close()
	zr, err := gzip.NewReader(bytes.NewReader(z.Bytes()))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := zr.Reset(bytes.NewReader(z.Bytes())); err != nil {
			b.Fatal(err)
		}
		r := NewReader(zr, 0)
		got := 0
		for {
			if _, err := r.Next(); err != nil {
				break
			}
			if len(r.Field("action")) > 0 {
				got++
			}
		}
		if got != n {
			b.Fatalf("%d lines, want %d", got, n)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "lines/s")
}
