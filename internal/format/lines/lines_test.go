package lines

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type result struct {
	lines []string
	errs  []int // line numbers of ErrTooLong
	end   error
}

func collect(r *Reader) result {
	var res result
	for {
		line, err := r.Next()
		var e *Error
		switch {
		case err == nil:
			res.lines = append(res.lines, string(line))
		case errors.As(err, &e) && errors.Is(err, ErrTooLong):
			res.errs = append(res.errs, e.Line)
		default:
			res.end = err
			return res
		}
	}
}

func TestNext(t *testing.T) {
	for _, c := range []struct {
		name  string
		in    string
		max   int
		lines []string
		errs  []int
	}{
		{name: "empty", in: ""},
		{name: "LF", in: "a\nb\n", lines: []string{"a", "b"}},
		{name: "CRLF", in: "a\r\nb\r\n", lines: []string{"a", "b"}},
		{name: "final line without LF", in: "a\nb", lines: []string{"a", "b"}},
		{name: "final line with CR only", in: "a\nb\r", lines: []string{"a", "b"}},
		{name: "several trailing CRs", in: "a\r\r\n", lines: []string{"a"}},
		{name: "interior CR kept", in: "a\rb\n", lines: []string{"a\rb"}},
		{name: "blank lines kept", in: "\n\na\n\n", lines: []string{"", "", "a", ""}},
		{name: "only LF", in: "\n", lines: []string{""}},
		{name: "line at the cap", in: "12345\n12345\r\n", max: 5, lines: []string{"12345", "12345"}},
		{name: "line over the cap is skipped", in: "ok\n123456\nafter\n", max: 5, lines: []string{"ok", "after"}, errs: []int{2}},
		{name: "very long line skipped with bounded memory", in: "ok\n" + strings.Repeat("x", 100000) + "\nafter", max: 10, lines: []string{"ok", "after"}, errs: []int{2}},
		{name: "long final line without LF", in: "ok\n" + strings.Repeat("x", 1000), max: 10, lines: []string{"ok"}, errs: []int{2}},
	} {
		for _, wrap := range []struct {
			name string
			fn   func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"one-byte", iotest.OneByteReader}, {"half", iotest.HalfReader}} {
			t.Run(c.name+"/"+wrap.name, func(t *testing.T) {
				r := NewReader(wrap.fn(strings.NewReader(c.in)), c.max)
				res := collect(r)
				if res.end != io.EOF {
					t.Fatalf("end %v, want EOF", res.end)
				}
				if strings.Join(res.lines, "|") != strings.Join(c.lines, "|") || len(res.lines) != len(c.lines) {
					t.Errorf("lines %q, want %q", res.lines, c.lines)
				}
				if len(res.errs) != len(c.errs) || (len(c.errs) > 0 && res.errs[0] != c.errs[0]) {
					t.Errorf("too-long lines %v, want %v", res.errs, c.errs)
				}
				if c.max > 0 && cap(r.buf) > c.max+2 {
					t.Errorf("buffer grew to %d, over the cap %d+2", cap(r.buf), c.max)
				}
			})
		}
	}
}

func TestLineNumbers(t *testing.T) {
	r := NewReader(strings.NewReader("a\nb\nc"), 0)
	for want := 1; want <= 3; want++ {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if r.Line() != want {
			t.Errorf("Line() = %d, want %d", r.Line(), want)
		}
	}
}

var errNet = errors.New("connection reset")

func TestReadErrorIsSticky(t *testing.T) {
	r := NewReader(io.MultiReader(strings.NewReader("a\nb"), iotest.ErrReader(errNet)), 0)
	if line, err := r.Next(); err != nil || string(line) != "a" {
		t.Fatalf("first line %q, %v", line, err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if !errors.Is(err1, errNet) || err1 != err2 {
		t.Fatalf("errors %v, %v; want the same read error twice", err1, err2)
	}
}

func TestColumns(t *testing.T) {
	c := NewColumns(' ')
	c.Reset([]byte("2 123 eni-1 - OK"))
	if c.Len() != 5 || string(c.At(0)) != "2" || string(c.At(2)) != "eni-1" || string(c.At(4)) != "OK" || c.At(5) != nil || c.At(-1) != nil {
		t.Errorf("split wrong: len %d, %q %q %q", c.Len(), c.At(0), c.At(2), c.At(4))
	}
	c.Reset([]byte("a  b "))
	if c.Len() != 4 || string(c.At(1)) != "" || string(c.At(2)) != "b" || string(c.At(3)) != "" {
		t.Errorf("empty fields wrong: len %d", c.Len())
	}
	c.Reset(nil)
	if c.Len() != 1 || len(c.At(0)) != 0 {
		t.Errorf("empty line: len %d", c.Len())
	}
	xyzw := []byte("x y z w")
	c.Reset(xyzw)
	if allocs := testing.AllocsPerRun(100, func() { c.Reset(xyzw); _ = c.At(3) }); allocs != 0 {
		t.Errorf("%v allocations per lookup", allocs)
	}
}

func FuzzNext(f *testing.F) {
	f.Add([]byte("a\r\nb\n\nc"), uint8(3))
	f.Add([]byte("long line here\nx"), uint8(4))
	f.Fuzz(func(t *testing.T, in []byte, max uint8) {
		limit := int(max)%64 + 1
		res := collect(NewReader(iotest.OneByteReader(bytes.NewReader(in)), limit))
		if res.end != io.EOF {
			t.Fatalf("end %v", res.end)
		}
		// Oracle: split on LF, drop the empty piece after a final LF, trim CRs.
		parts := strings.Split(string(in), "\n")
		if len(parts) > 0 && parts[len(parts)-1] == "" {
			parts = parts[:len(parts)-1]
		}
		var want []string
		var tooLong int
		for _, p := range parts {
			if len(strings.TrimSuffix(p, "\r")) > limit {
				tooLong++
				continue
			}
			want = append(want, strings.TrimRight(p, "\r"))
		}
		if strings.Join(res.lines, "\n") != strings.Join(want, "\n") || len(res.lines) != len(want) || len(res.errs) != tooLong {
			t.Fatalf("got %q (%d too long), want %q (%d too long)", res.lines, len(res.errs), want, tooLong)
		}
	})
}

func BenchmarkNext(b *testing.B) {
	line := "2 123456789012 eni-07e1d2c3b4a596870 10.12.3.45 172.31.8.19 443 51724 6 18 9432 1717161240 1717161300 ACCEPT OK\n"
	data := []byte(strings.Repeat(line, 20000))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(data), 0)
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}
