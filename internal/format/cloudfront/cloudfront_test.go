package cloudfront

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

func describe(r *Reader) []byte {
	var b bytes.Buffer
	for {
		line, err := r.Next()
		if err != nil {
			fmt.Fprintf(&b, "version=%q fields=%d\nend: %v\n", r.Version(), len(r.Fields()), err)
			return b.Bytes()
		}
		fmt.Fprintf(&b, "line %d: date=%q c-ip=%q sc-status=%q cs(User-Agent)=%q sc-range-end=%q\n%s\n",
			r.Line(), r.Field("date"), r.Field("c-ip"), r.Field("sc-status"), r.Field("cs(User-Agent)"), r.Field("sc-range-end"), line)
	}
}

func TestGolden(t *testing.T) {
	golden.CheckStream(t, func(r io.Reader) []byte { return describe(NewReader(r, 0)) })
}

func TestEdges(t *testing.T) {
	for _, c := range []struct {
		name, in string
		max      int
		lines    []string
		want     error
	}{
		{"empty", "", 0, nil, io.EOF},
		{"headers only", "#Version: 1.0\n#Fields: date time\n", 0, nil, io.EOF},
		{"comments and blanks skipped", "#Version: 1.0\n# a comment\n#Fields: a b\n\nx\ty\n#Fields: c\nz\n", 0, []string{"x\ty", "z"}, io.EOF},
		{"data before fields", "#Version: 1.0\nx\ty\n", 0, nil, ErrNoFields},
		{"VPC file", "version account-id\n2 123\n", 0, nil, ErrNoFields},
		{"too-long line skipped", "#Fields: a\n" + strings.Repeat("x", 100) + "\nok\n", 32, []string{"ok"}, io.EOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(c.in), c.max)
			var got []string
			var err error
			for {
				var line []byte
				if line, err = r.Next(); err == nil {
					got = append(got, string(line))
					continue
				}
				if errors.Is(err, lines.ErrTooLong) {
					continue
				}
				break
			}
			if !errors.Is(err, c.want) || strings.Join(got, "|") != strings.Join(c.lines, "|") {
				t.Fatalf("lines %q end %v; want %q %v", got, err, c.lines, c.want)
			}
		})
	}
}

func TestFieldsFollowTheLatestHeader(t *testing.T) {
	r := NewReader(strings.NewReader("#Fields: a b\n1\t2\n#Fields: b a\n3\t4\n"), 0)
	r.Next()
	if string(r.Field("b")) != "2" {
		t.Errorf("first header: b=%q", r.Field("b"))
	}
	r.Next()
	if string(r.Field("b")) != "3" || r.Index("a") != 1 {
		t.Errorf("second header: b=%q", r.Field("b"))
	}
	if r.Field("zzz") != nil || r.FieldAt(9) != nil {
		t.Error("unknown field must be nil")
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("#Version: 1.0\n#Fields: a b\nx\ty\r\n"))
	f.Add([]byte("x\n#Fields: a\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)), 64)
		for {
			line, err := r.Next()
			if errors.Is(err, lines.ErrTooLong) {
				continue
			}
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrNoFields) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(line) == 0 || line[0] == '#' || bytes.IndexByte(line, '\n') >= 0 || line[len(line)-1] == '\r' {
				t.Fatalf("bad data line %q", line)
			}
			if r.Fields() == nil {
				t.Fatal("data line without fields")
			}
			for _, name := range r.Fields() {
				if !bytes.Equal(r.Field(name), r.FieldAt(r.Index(name))) {
					t.Fatalf("Field(%q) disagrees with FieldAt", name)
				}
			}
		}
	})
}
