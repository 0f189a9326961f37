package stats

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// logBuffer collects JSON log records; safe to write from a logging
// goroutine while the test reads.
type logBuffer struct{ syncbuf.Buffer }

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records decodes every record logged so far.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decode log record: %v", err)
		}
		out = append(out, m)
	}
	return out
}

// messages returns the msg of every record logged so far.
func (b *logBuffer) messages(t *testing.T) []string {
	var out []string
	for _, r := range b.records(t) {
		out = append(out, r["msg"].(string))
	}
	return out
}
