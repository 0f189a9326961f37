// Package console is the `console` and `stdout` output (devo-output.md §11):
// each event is written to a writer (stdout in production) either as the
// exact Devo wire line (format devo_line, the default) or as one JSON object
// per line with the keys timestamp, tag and content (format json).
//
// Lines are gathered in a buffer that is written when it passes
// flushBytes or whenever the queue has nothing more to give, so a quiet
// pipeline shows each event at once and a busy one writes in large blocks.
// An event is settled Delivered once the write that carries its line has
// returned without error.
package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// The line formats of the `format` key.
const (
	FormatDevoLine = "devo_line"
	FormatJSON     = "json"
)

const (
	// takeMax is how many events one queue Get takes.
	takeMax = 512
	// flushBytes is the buffer size that forces a write while the queue
	// still has events.
	flushBytes = 64 << 10
	// timestampLayout is the JSON timestamp of §11, always in UTC.
	timestampLayout = "2006-01-02 15:04:05.000"
)

// Options configure a console sink.
type Options struct {
	// Format is FormatDevoLine (also when empty) or FormatJSON.
	Format string
	// Hostname is the HOST field of Devo lines; empty means the OS host
	// name.
	Hostname string
	// Log receives the one error line written when the writer fails.
	// Nil discards it.
	Log *slog.Logger
}

// Sink writes events to w. It implements pipeline.Sink.
type Sink struct {
	w    io.Writer
	json bool
	enc  wire.Encoder
	log  *slog.Logger
	now  func() time.Time
}

var _ pipeline.Sink = (*Sink)(nil)

// New returns a sink writing to w, or an error naming the allowed values if
// o.Format is unknown.
func New(w io.Writer, o Options) (*Sink, error) {
	s := &Sink{w: w, log: o.Log, now: time.Now}
	switch o.Format {
	case "", FormatDevoLine:
	case FormatJSON:
		s.json = true
	default:
		return nil, fmt.Errorf("console format %q: allowed values are %q and %q", o.Format, FormatDevoLine, FormatJSON)
	}
	host := o.Hostname
	if host == "" {
		host, _ = os.Hostname() // on error "" becomes "localhost"
	}
	s.enc = wire.NewEncoder(wire.DevoLine, host)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Run implements pipeline.Sink. It never returns an error: a console output
// never stops the collector. If the writer fails, the events of that write
// are settled Failed (their sources keep the data) and one error is logged;
// later writes are still attempted.
func (s *Sink) Run(ctx context.Context, in *pipeline.Queue) error {
	var (
		take    []*pipeline.Event
		pending []*pipeline.Event
		buf     []byte
		failed  bool
	)
	flush := func() {
		if len(pending) == 0 {
			return
		}
		_, err := s.w.Write(buf)
		fate := pipeline.Delivered
		if err != nil {
			fate = pipeline.Failed
			if !failed {
				failed = true
				s.log.Error("console output write failed, events settled as failed", "err", err, "events", len(pending))
			}
		}
		for _, ev := range pending {
			in.Settle(ev, fate)
		}
		clear(pending)
		pending = pending[:0]
		buf = buf[:0]
	}
	defer flush()
	for {
		take = in.TryGet(take, takeMax)
		if len(take) == 0 {
			// The queue is empty: show what we have before waiting.
			flush()
			var err error
			take, err = in.Get(ctx, take, takeMax)
			if err != nil {
				return nil // closed and empty, or cancelled: nothing is held after flush
			}
		}
		for _, ev := range take {
			buf = s.appendLine(buf, ev)
			pending = append(pending, ev)
			if len(buf) >= flushBytes {
				flush()
			}
		}
		clear(take)
	}
}

// appendLine appends the line of ev in the sink's format.
func (s *Sink) appendLine(dst []byte, ev *pipeline.Event) []byte {
	if !s.json {
		if ev.Clean {
			return s.enc.AppendTrusted(dst, time.Time{}, ev.Tag, ev.Payload)
		}
		return s.enc.Append(dst, time.Time{}, ev.Tag, ev.Payload)
	}
	t := ev.Time
	if t.IsZero() {
		t = s.now()
	}
	dst = append(dst, `{"timestamp":"`...)
	dst = t.UTC().AppendFormat(dst, timestampLayout)
	dst = append(dst, `","tag":`...)
	dst = wire.AppendJSONString(dst, ev.Tag)
	dst = append(dst, `,"content":`...)
	dst = wire.AppendJSONString(dst, ev.Payload)
	return append(dst, '}', '\n')
}
