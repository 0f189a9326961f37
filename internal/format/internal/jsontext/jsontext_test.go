package jsontext

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// whole reports whether b is exactly one valid JSON value with optional
// surrounding whitespace, using the scanner under test.
func whole(b []byte) bool {
	var fl Flags
	end, err := Value(b, 0, &fl)
	if err != nil {
		return false
	}
	return SkipSpace(b, end) == len(b)
}

func TestValueAgreesWithEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1.5e+3`, `-12.0E-2`, `true`, `false`, `null`,
		` {"a" : [1, 2, {"b":null}] } `, `"\u00e9\n\"\\\/"`, `"\ud83d\ude00"`,
		`{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `1e`, `-`, `tru`, `nul`, `"abc`,
		`"\x"`, `"\u12g4"`, "\"a\tb\"", `{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `{"a":1 "b":2}`,
		"\"\xff\"", `{"a":"b"}x`, ``, ` `, `[`, `{"a":[1,2`,
	}
	for _, c := range cases {
		if got, want := whole([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("%q: scanner valid=%v, encoding/json valid=%v", c, got, want)
		}
	}
}

func TestShortVersusSyntax(t *testing.T) {
	short := []string{`{"a":[1,2`, `"abc`, `{"a"`, `tr`, `[`, `{"a":"\u00`, `1.`, `-`}
	for _, c := range short {
		var fl Flags
		if _, err := Value([]byte(c), 0, &fl); !errors.Is(err, ErrShort) {
			t.Errorf("%q: err = %v, want ErrShort", c, err)
		}
	}
	bad := []string{`{"a":tx}`, `[1,]`, `{,}`, `"\q"`}
	for _, c := range bad {
		var fl Flags
		_, err := Value([]byte(c), 0, &fl)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: err = %v, want *SyntaxError", c, err)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := make([]byte, 0, 2*(MaxDepth+1))
	for i := 0; i <= MaxDepth; i++ {
		deep = append(deep, '[')
	}
	for i := 0; i <= MaxDepth; i++ {
		deep = append(deep, ']')
	}
	var fl Flags
	var se *SyntaxError
	if _, err := Value(deep, 0, &fl); !errors.As(err, &se) {
		t.Fatalf("depth %d: err = %v, want *SyntaxError", MaxDepth+1, err)
	}
	ok := deep[1 : len(deep)-1]
	if _, err := Value(ok, 0, &fl); err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
}

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Flags
	}{
		{`{"a":1}`, 0},
		{`{ "a":1}`, Space},
		{`{"a":"é"}`, NonASCII},
		{"[1,\n\"\xff\"]", Space | NonASCII | BadUTF8},
		{`["a\"b"]`, Escape},
		{"{\"\xed\xa0\x80\":\"\\u00e9\"}", NonASCII | BadUTF8 | Escape}, // a UTF-8 surrogate is invalid
		{"[\"\xf0\x9f\x98\x80 0123456789\", \"x\"]", NonASCII | Space},
	} {
		var fl Flags
		if _, err := Value([]byte(c.in), 0, &fl); err != nil {
			t.Fatal(err)
		}
		if fl != c.want {
			t.Errorf("%q: flags %b, want %b", c.in, fl, c.want)
		}
	}
}

// TestStringPositions puts each kind of byte at every offset of a string
// longer than a word, so that both the word-at-a-time loop and the byte loop
// meet it, and checks validity, the end and the flags against encoding/json
// and unicode/utf8.
func TestStringPositions(t *testing.T) {
	inserts := []string{`"`, `\\`, `\"`, `\u00e9`, `\x`, `\u12`, "\x00", "\x1f", "\t", " ", "~", "\x7f",
		"é", "\xff", "\xc3", "\xe2\x82", "€", "\xf0\x9f\x98\x80", "\xed\xa0\x80"}
	for _, ins := range inserts {
		for pos := 0; pos <= 20; pos++ {
			body := strings.Repeat("a", pos) + ins + strings.Repeat("b", 20-pos)
			for _, in := range []string{`"` + body + `"`, `"` + body} {
				var fl Flags
				end, err := String([]byte(in), 0, &fl)
				valid := json.Valid([]byte(in))
				switch {
				case valid && (err != nil || end != len(in)):
					t.Errorf("%q: end %d err %v, want %d", in, end, err, len(in))
				case !valid && err == nil && end == len(in):
					t.Errorf("%q accepted, encoding/json rejects it", in)
				}
				if err != nil {
					continue
				}
				s := in[:end]
				want := Flags(0)
				if strings.ContainsRune(s, '\\') {
					want |= Escape
				}
				for k := 0; k < len(s); k++ {
					if s[k] >= 0x80 {
						want |= NonASCII
					}
				}
				if !utf8.ValidString(s) {
					want |= BadUTF8
				}
				if fl != want {
					t.Errorf("%q: flags %04b, want %04b", s, fl, want)
				}
			}
		}
	}
}

func TestUnquote(t *testing.T) {
	for _, in := range []string{`"plain"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u20ac"`, `"\ud83d\ude00x"`, `"\ud800"`, `"\udc00\u0041"`} {
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if got := string(Unquote([]byte(in), nil)); got != want {
			t.Errorf("Unquote(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestMembers(t *testing.T) {
	b := []byte(` { "a" : 1 , "b":{"c":[true]}, "d":"x"} `)
	var keys, vals []string
	var fl Flags
	end, err := Members(b, 0, &fl, func(m Member) error {
		keys = append(keys, string(m.Key))
		vals = append(vals, string(b[m.ValueStart:m.ValueEnd]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if end != len(b)-1 {
		t.Errorf("end = %d, want %d", end, len(b)-1)
	}
	if got := keys[0] + keys[1] + keys[2]; got != `"a""b""d"` {
		t.Errorf("keys %v", keys)
	}
	if vals[1] != `{"c":[true]}` || vals[2] != `"x"` {
		t.Errorf("vals %v", vals)
	}
}

func FuzzValue(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e3,"x\u00e9"],"b":null}`, `[true,false]`, `"\ud83d\ude00"`, `-0.1`, `{"a":`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := whole(b), json.Valid(b); got != want {
			t.Fatalf("scanner valid=%v, encoding/json valid=%v for %q", got, want, b)
		}
		var fl Flags
		end, err := Value(b, 0, &fl)
		if err != nil {
			return
		}
		// In a valid value, bytes >= 0x80 and backslashes occur only in
		// strings.
		v := b[:end]
		if got, want := fl&NonASCII != 0, strings.IndexFunc(string(v), func(r rune) bool { return r >= utf8.RuneSelf }) >= 0; got != want {
			t.Fatalf("%q: NonASCII %v, want %v", v, got, want)
		}
		if got, want := fl&BadUTF8 != 0, !utf8.Valid(v); got != want {
			t.Fatalf("%q: BadUTF8 %v, want %v", v, got, want)
		}
		if got, want := fl&Escape != 0, strings.IndexByte(string(v), '\\') >= 0; got != want {
			t.Fatalf("%q: Escape %v, want %v", v, got, want)
		}
	})
}
