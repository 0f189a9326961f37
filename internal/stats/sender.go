package stats

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// DefaultSenderStatsPeriod is sender_stats_period_in_sec's default.
const DefaultSenderStatsPeriod = 300 * time.Second

// SenderKind names a sender group in the statistics line.
type SenderKind string

// The sender groups: Standard carries pulled events, Internal the
// collector's own messages (devo.collectors.out.*).
const (
	Standard SenderKind = "Standard"
	Internal SenderKind = "Internal"
)

// group is the product's name for the sender group, used as a log attribute.
func (k SenderKind) group() string {
	if k == Internal {
		return "internal_senders"
	}
	return "standard_senders"
}

// sinceLayout is how the product prints the start of a statistics window:
// Python's str() of an aware UTC datetime.
const sinceLayout = "2006-01-02 15:04:05.000000-07:00"

// SenderSnapshot is what an output reports about its senders at one moment.
// Counters are cumulative since the output started.
type SenderSnapshot struct {
	Senders   int           // senders (connections) currently available
	QueueSize int64         // events waiting in the output's internal queue
	Sent      int64         // messages sent since start
	Busy      time.Duration // time spent sending them
}

// SenderReport is one sender statistics window.
type SenderReport struct {
	Kind       SenderKind
	Senders    int
	QueueSize  int64
	Total      int64         // messages sent since start
	SinceCount int64         // messages sent since Since
	Since      time.Time     // start of the window (the previous report)
	Elapsed    time.Duration // time spent sending SinceCount messages
}

// NewSenderReport builds the window between two snapshots; prev is the
// snapshot taken at since (zero for the first window).
func NewSenderReport(kind SenderKind, prev, cur SenderSnapshot, since time.Time) SenderReport {
	return SenderReport{
		Kind:       kind,
		Senders:    cur.Senders,
		QueueSize:  cur.QueueSize,
		Total:      cur.Sent,
		SinceCount: cur.Sent - prev.Sent,
		Since:      since,
		Elapsed:    cur.Busy - prev.Busy,
	}
}

// Lines renders the product's two sender statistics lines, for example
// "Number of available senders: 1, sender manager internal queue size: 0" and
// `Standard - Total number of messages sent: 44, messages sent since "2022-06-28 10:39:22.511671+00:00": 44 (elapsed 0.007 seconds)`.
func (r SenderReport) Lines() (senders, totals string) {
	senders = fmt.Sprintf("Number of available senders: %d, sender manager internal queue size: %d",
		r.Senders, r.QueueSize)
	totals = fmt.Sprintf("%s - Total number of messages sent: %d, messages sent since \"%s\": %d (elapsed %.3f seconds)",
		r.Kind, r.Total, r.Since.UTC().Format(sinceLayout), r.SinceCount, r.Elapsed.Seconds())
	return senders, totals
}

// LogSenderStats logs the sender statistics lines of one output's sender
// group every period (DefaultSenderStatsPeriod when period <= 0) until ctx
// ends, and once more then so the last window is not lost. snapshot must be
// safe to call from this goroutine. log should carry the output's name.
func LogSenderStats(ctx context.Context, log *slog.Logger, period time.Duration, kind SenderKind, snapshot func() SenderSnapshot) {
	logSenderStats(ctx, log, period, kind, snapshot, time.Now)
}

func logSenderStats(ctx context.Context, log *slog.Logger, period time.Duration, kind SenderKind, snapshot func() SenderSnapshot, now func() time.Time) {
	if period <= 0 {
		period = DefaultSenderStatsPeriod
	}
	log = log.With("sender_group", kind.group())
	since := now()
	// The first window counts from zero: the product's first line reports
	// everything sent since start.
	var prev SenderSnapshot
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		stop := false
		select {
		case <-ctx.Done():
			stop = true
		case <-t.C:
		}
		cur, at := snapshot(), now()
		senders, totals := NewSenderReport(kind, prev, cur, since).Lines()
		log.Info(senders)
		log.Info(totals)
		if stop {
			return
		}
		prev, since = cur, at
	}
}
