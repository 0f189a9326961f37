package umbrella

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

func describe(r *Reader) []byte {
	var b bytes.Buffer
	for {
		row, err := r.Next()
		if err != nil {
			fmt.Fprintf(&b, "end: %v\n", err)
			return b.Bytes()
		}
		fmt.Fprintf(&b, "row ending at line %d, %d bytes:\n%s\n", r.Line(), len(row), row)
	}
}

func TestGolden(t *testing.T) {
	golden.CheckStream(t, func(r io.Reader) []byte { return describe(NewReader(r, 0)) })
}

// Every row the reader yields must be one CSV record, with the cell count
// the layout promises at least.
func TestRowsAreCSVRecords(t *testing.T) {
	for file, layout := range map[string][]string{"testdata/dnslogs.in": DNSColumns, "testdata/iplogs_crlf.in": IPColumns[:7], "testdata/proxylogs_multiline.in": ProxyColumns} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(bytes.NewReader(data), 0)
		for {
			row, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(bytes.NewReader(row)).ReadAll()
			if err != nil || len(recs) != 1 {
				t.Fatalf("%s: row %q is not one CSV record: %v", file, row, err)
			}
			if len(recs[0]) < len(layout) {
				t.Errorf("%s: %d cells, layout has %d", file, len(recs[0]), len(layout))
			}
		}
	}
}

func TestEdges(t *testing.T) {
	for _, c := range []struct {
		name, in string
		max      int
		rows     []string
		want     error
		dropped  int
	}{
		{name: "empty", in: "", want: io.EOF},
		{name: "header only", in: "\"Timestamp\",\"Identity\"\n", want: io.EOF},
		{name: "unquoted header", in: "Timestamp,Identity\n\"a\",\"b\"\n", rows: []string{`"a","b"`}, want: io.EOF},
		{name: "header only dropped on the first row", in: "\"x\"\n\"Timestamp\",\"y\"\n", rows: []string{`"x"`, `"Timestamp","y"`}, want: io.EOF},
		{name: "Timestamp prefix is not a header", in: "\"Timestamps\",\"y\"\n", rows: []string{`"Timestamps","y"`}, want: io.EOF},
		{name: "blank lines skipped", in: "\n\"a\"\n\n\"b\"", rows: []string{`"a"`, `"b"`}, want: io.EOF},
		{name: "escaped quotes stay on one line", in: "\"a \"\"b\"\" c\",\"d\"\n", rows: []string{`"a ""b"" c","d"`}, want: io.EOF},
		{name: "multiline row joined with LF", in: "\"a\",\"b\r\nc\"\r\n\"d\"\n", rows: []string{"\"a\",\"b\nc\"", `"d"`}, want: io.EOF},
		{name: "end inside quotes", in: "\"a\"\n\"b\n", rows: []string{`"a"`}, want: ErrUnterminated},
		{name: "multiline row over the cap", in: "\"a\"\n\"" + strings.Repeat("x", 20) + "\n" + strings.Repeat("y", 20) + "\"\n\"b\"\n", max: 32, rows: []string{`"a"`, `"b"`}, want: io.EOF, dropped: 1},
		{name: "open row with long tail skipped", in: "\"" + strings.Repeat("x", 20) + "\n" + strings.Repeat("y", 20) + "\n" + strings.Repeat("z", 20) + "\"\n\"b\"\n", max: 32, rows: []string{`"b"`}, want: io.EOF, dropped: 1},
		{name: "single line over the cap", in: "\"" + strings.Repeat("x", 40) + "\"\n\"b\"\n", max: 32, rows: []string{`"b"`}, want: io.EOF, dropped: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(iotest.HalfReader(strings.NewReader(c.in)), c.max)
			var rows []string
			dropped := 0
			var err error
			for {
				var row []byte
				if row, err = r.Next(); err == nil {
					rows = append(rows, string(row))
					continue
				}
				if errors.Is(err, ErrRowTooLong) || errors.Is(err, lines.ErrTooLong) {
					dropped++
					continue
				}
				break
			}
			if !errors.Is(err, c.want) || strings.Join(rows, "|") != strings.Join(c.rows, "|") || len(rows) != len(c.rows) || dropped != c.dropped {
				t.Fatalf("rows %q dropped %d end %v; want %q %d %v", rows, dropped, err, c.rows, c.dropped, c.want)
			}
		})
	}
}

func TestColumns(t *testing.T) {
	if Columns("dnslogs")[0] != "Timestamp" || len(Columns("proxylogs")) != 32 || len(Columns("iplogs")) != 8 || Columns("auditlogs") != nil {
		t.Error("layout table wrong")
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("\"Timestamp\",\"a\"\n\"1\",\"x\ny\"\r\n\"2\"\n"))
	f.Add([]byte("\"a \"\"b\"\"\"\n\"open\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(iotest.HalfReader(bytes.NewReader(in)), 64)
		for {
			row, err := r.Next()
			if errors.Is(err, ErrRowTooLong) || errors.Is(err, lines.ErrTooLong) {
				continue
			}
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrUnterminated) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(row) == 0 || len(row) > 64 || oddQuotes(row) || row[len(row)-1] == '\r' && !bytes.Contains(row, []byte("\"")) {
				t.Fatalf("bad row %q", row)
			}
		}
	})
}
