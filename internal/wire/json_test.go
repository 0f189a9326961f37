package wire

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te back\slash`, "tab\tcr\rlf\nnul\x00bel\x07del\x7f", "ñ€😀", "\u2028\u2029", "<html>&amp;", "bad\xffutf8\xc3", "\xe2\x82"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		// encoding/json replaces each invalid byte; ToValidUTF8 a run.
		wantJSON, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(wantJSON, &wantBack)
		if back != wantBack {
			t.Errorf("%q decodes to %q, encoding/json gives %q (runs replaced: %q)", s, back, wantBack, want)
		}
		if bytes.Contains(got, []byte(`\u003c`)) {
			t.Errorf("%q was HTML-escaped: %s", s, got)
		}
		if string(AppendJSONString(nil, []byte(s))) != string(got) {
			t.Errorf("%q: string and []byte encodings differ", s)
		}
	}
}
