package eventbridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
)

func describe(body []byte) []byte {
	var b bytes.Buffer
	env, err := Parse(body)
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
		return b.Bytes()
	}
	fmt.Fprintf(&b, "version=%q id=%q detail-type=%q source=%q account=%q time=%q region=%q findings-type=%v\n",
		env.Version, env.ID, env.DetailType, env.Source, env.Account, env.Time, env.Region, IsFindings(env.DetailType))
	parts, err := Split(env)
	if err != nil {
		fmt.Fprintf(&b, "split error: %v\n", err)
		return b.Bytes()
	}
	for i, p := range parts {
		fmt.Fprintf(&b, "part %d payload:\n%s\n", i, p.Payload)
		if p.Finding != nil {
			fmt.Fprintf(&b, "part %d finding:\n%s\n", i, p.Finding)
		}
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, in := range golden.Inputs(t) {
		body, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, in, describe(body))
	}
}

func TestSplitKeepsEnvelope(t *testing.T) {
	body, err := os.ReadFile("testdata/securityhub_two_findings.in")
	if err != nil {
		t.Fatal(err)
	}
	env, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Split(env)
	if err != nil || len(parts) != 2 {
		t.Fatalf("%d parts, %v", len(parts), err)
	}
	var orig map[string]any
	json.Unmarshal(body, &orig)
	origFindings := orig["detail"].(map[string]any)["findings"].([]any)
	for i, p := range parts {
		var got map[string]any
		if err := json.Unmarshal(p.Payload, &got); err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		fs := got["detail"].(map[string]any)["findings"].([]any)
		if len(fs) != 1 || fs[0].(map[string]any)["Id"] != origFindings[i].(map[string]any)["Id"] {
			t.Errorf("part %d holds %v", i, fs)
		}
		for _, k := range []string{"id", "account", "region", "time", "detail-type"} {
			if got[k] != orig[k] {
				t.Errorf("part %d: %s = %v, want %v", i, k, got[k], orig[k])
			}
		}
		if got["detail"].(map[string]any)["actionName"] != "send-to-devo" {
			t.Errorf("part %d lost detail members", i)
		}
		var f map[string]any
		if err := json.Unmarshal(p.Finding, &f); err != nil || f["Id"] != origFindings[i].(map[string]any)["Id"] {
			t.Errorf("part %d finding %s", i, p.Finding)
		}
	}
}

func TestSplitEdges(t *testing.T) {
	env := func(detail string) string {
		return `{"version":"0","id":"i","detail-type":"Security Hub Findings - Imported","source":"aws.securityhub","account":"1","time":"t","region":"r","detail":` + detail + `}`
	}
	for _, c := range []struct {
		name, body string
		parts      int
		first      string
	}{
		{"no findings key", env(`{"a":1}`), 1, env(`{"a":1}`)},
		{"empty findings emitted whole", env(`{"findings":[]}`), 1, env(`{"findings":[]}`)},
		{"findings not an array", env(`{"findings":{"x":1}}`), 1, env(`{"findings":{"x":1}}`)},
		{"whitespace inside array", env(`{"findings":[ {"Id":"a"} , {"Id":"b"} ]}`), 2, env(`{"findings":[{"Id":"a"}]}`)},
		{"nested findings key ignored", env(`{"x":{"findings":[1,2]}}`), 1, env(`{"x":{"findings":[1,2]}}`)},
		{"scalar findings split too", env(`{"findings":[1,"two"]}`), 2, env(`{"findings":[1]}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := Parse([]byte(c.body))
			if err != nil {
				t.Fatal(err)
			}
			parts, err := Split(e)
			if err != nil || len(parts) != c.parts {
				t.Fatalf("%d parts, %v; want %d", len(parts), err, c.parts)
			}
			if string(parts[0].Payload) != c.first {
				t.Errorf("first payload %s\nwant          %s", parts[0].Payload, c.first)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct {
		body   string
		want   error
		detail string
	}{
		{``, ErrNotJSON, "empty"},
		{`{"version":"0"`, ErrNotJSON, "truncated"},
		{`{"version":"0"} trailing`, ErrNotJSON, "after"},
		{`hello`, ErrNotJSON, ""},
		{`[1,2]`, ErrNotEnvelope, "not an object"},
		{`"text"`, ErrNotEnvelope, "not an object"},
		{`{}`, ErrNotEnvelope, "missing version, id, detail-type, source, account, time, region, detail"},
		{`{"version":0,"id":"i","detail-type":"d","source":"s","account":"a","time":"t","region":"r","detail":{}}`, ErrNotEnvelope, "version is not a string"},
		{`{"version":"0","id":"i","detail-type":"d","source":"s","account":"a","time":"t","region":"r","detail":[]}`, ErrNotEnvelope, "detail is not an object"},
	} {
		_, err := Parse([]byte(c.body))
		var e *Error
		if !errors.Is(err, c.want) || !errors.As(err, &e) || !strings.Contains(e.Detail, c.detail) {
			t.Errorf("Parse(%q) = %v; want %v mentioning %q", c.body, err, c.want, c.detail)
		}
	}
}

func FuzzParseSplit(f *testing.F) {
	for _, name := range []string{"ec2_state_change.in", "securityhub_two_findings.in", "securityhub_v2_ocsf.in", "insight_results.in"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := Parse(body)
		if err != nil {
			if errors.Is(err, ErrNotJSON) == json.Valid(body) {
				t.Fatalf("ErrNotJSON=%v but json.Valid=%v for %q", errors.Is(err, ErrNotJSON), json.Valid(body), body)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		parts, err := Split(env)
		if err != nil {
			t.Fatalf("split of a valid envelope failed: %v", err)
		}
		for _, p := range parts {
			if !json.Valid(p.Payload) {
				t.Fatalf("payload %q is not valid JSON", p.Payload)
			}
			if p.Finding != nil && !json.Valid(p.Finding) {
				t.Fatalf("finding %q is not valid JSON", p.Finding)
			}
		}
	})
}
