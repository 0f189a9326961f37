package stats

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PullingID renders t as the product's @devo_pulling_id: Unix epoch seconds
// with exactly six decimals, for example "1655983326.290848".
func PullingID(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}

// isoLayout is Python's datetime.isoformat() of an aware UTC time with
// microseconds, as the product prints cycle start times.
const isoLayout = "2006-01-02T15:04:05.000000-07:00"

// Logger scopes base with the unit's attributes (input, service, region).
// Sources log through it, and the pull-cycle lines carry the attributes.
func (u *Unit) Logger(base *slog.Logger) *slog.Logger {
	return base.With("input", u.Input, "service", u.Service, "region", u.Region)
}

// RenderStartingCollection renders "Starting data collection every 60 seconds".
func RenderStartingCollection(period time.Duration) string {
	return fmt.Sprintf("Starting data collection every %s seconds", seconds(period))
}

// LogStartingCollection logs the line a source prints once before its first
// pull.
func LogStartingCollection(log *slog.Logger, period time.Duration) {
	log.Info(RenderStartingCollection(period))
}

// seconds prints a duration as the product does in "every N seconds": an
// integer when whole, else Python's float.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10)
	}
	return pyFloat(d.Seconds())
}

// CycleCounts are the numbers of one pull cycle.
type CycleCounts struct {
	Responses      int64    // AWS responses (API pages, SQS receives)
	Received       int64    // source records or messages read
	Generated      int64    // events handed to the pipeline
	Dropped        int64    // records filtered out or unparseable
	OtherRegion    int64    // records skipped as belonging to another region
	Duplicated     int64    // records skipped as already sent
	DiscardedFiles int64    // S3 objects skipped (filters, unknown format)
	EventTypes     []string // detected event types, in the order first seen

	// ByMessage makes avg_time_per_source_message the mean of HandleTime
	// over Handled messages (0 when none was handled) instead of the
	// product's elapsed time per response. SQS services set it (see
	// Cycle.SetHandled): their receives are long polls, and an idle queue
	// would otherwise report the poll wait (~20 s) as the time a message
	// takes.
	ByMessage  bool
	Handled    int64         // source messages handled in the cycle
	HandleTime time.Duration // time spent handling them, summed
}

// Cycle accumulates one pull cycle of a source and logs the product's
// per-cycle lines. The Add methods also feed the unit's counters, so a
// source counts once. Safe for concurrent use by a source's workers.
type Cycle struct {
	// ID is the cycle's @devo_pulling_id, the same value the events carry.
	ID string
	// Start is when the cycle began.
	Start time.Time

	log  *slog.Logger
	unit *Unit
	now  func() time.Time

	mu    sync.Mutex
	c     CycleCounts
	types map[string]bool
}

// NewCycle starts a cycle at start. log is the unit's logger (see
// Unit.Logger), so every line carries input, service and region; u may be
// nil, in which case only the cycle counts.
func NewCycle(log *slog.Logger, u *Unit, start time.Time) *Cycle {
	return &Cycle{
		ID:    PullingID(start),
		Start: start,
		log:   log.With("pulling_id", PullingID(start)),
		unit:  u,
		now:   time.Now,
		types: make(map[string]bool),
	}
}

// AddResponses counts AWS responses (pages, receives).
func (c *Cycle) AddResponses(n int64) { c.add(&c.c.Responses, n) }

// AddReceived counts records read; it also feeds Unit.Received.
func (c *Cycle) AddReceived(n int64) {
	c.add(&c.c.Received, n)
	if c.unit != nil {
		c.unit.Received.Add(n)
	}
}

// AddGenerated counts events emitted; it also feeds Unit.Generated.
func (c *Cycle) AddGenerated(n int64) {
	c.add(&c.c.Generated, n)
	if c.unit != nil {
		c.unit.Generated.Add(n)
	}
}

// AddDropped counts records filtered out; it also feeds Unit.Dropped.
func (c *Cycle) AddDropped(n int64) {
	c.add(&c.c.Dropped, n)
	if c.unit != nil {
		c.unit.Dropped.Add(n)
	}
}

// AddDuplicated counts records skipped as already sent; it also feeds
// Unit.Duplicated.
func (c *Cycle) AddDuplicated(n int64) {
	c.add(&c.c.Duplicated, n)
	if c.unit != nil {
		c.unit.Duplicated.Add(n)
	}
}

// AddOtherRegion counts records skipped because they belong to another
// region (CloudTrail's multi-region trails). Also counted as dropped in the
// unit's counters, since they are not sent.
func (c *Cycle) AddOtherRegion(n int64) {
	c.add(&c.c.OtherRegion, n)
	if c.unit != nil {
		c.unit.Dropped.Add(n)
	}
}

// SetHandled records that n source messages were handled in the cycle,
// taking d in total, and makes avg_time_per_source_message their mean
// (see CycleCounts.ByMessage).
func (c *Cycle) SetHandled(n int64, d time.Duration) {
	c.mu.Lock()
	c.c.ByMessage, c.c.Handled, c.c.HandleTime = true, n, d
	c.mu.Unlock()
}

// AddDiscardedFiles counts S3 objects skipped.
func (c *Cycle) AddDiscardedFiles(n int64) { c.add(&c.c.DiscardedFiles, n) }

// EventType records a detected event type; repeats are ignored.
func (c *Cycle) EventType(t string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.types[t] {
		c.types[t] = true
		c.c.EventTypes = append(c.c.EventTypes, t)
	}
}

// Counts returns a copy of the cycle's numbers.
func (c *Cycle) Counts() CycleCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.c
	out.EventTypes = append([]string(nil), c.c.EventTypes...)
	return out
}

// Elapsed is the time since the cycle started.
func (c *Cycle) Elapsed() time.Duration { return c.now().Sub(c.Start) }

func (c *Cycle) add(field *int64, n int64) {
	c.mu.Lock()
	*field += n
	c.mu.Unlock()
}

// RenderStarting renders the cycle's first line. kind is the product's noun
// for what is read ("queue", "source", "namespaces") or empty, e.g.
// `Starting a new pulling from "cloudwatch-test.fifo" queue at "2022-09-23T08:11:50.440225+00:00"`.
func RenderStarting(from, kind string, start time.Time) string {
	if kind != "" {
		kind += " "
	}
	return fmt.Sprintf("Starting a new pulling from \"%s\" %sat \"%s\"", from, kind, start.UTC().Format(isoLayout))
}

// LogStarting logs the cycle's first line (see RenderStarting).
func (c *Cycle) LogStarting(from, kind string) { c.log.Info(RenderStarting(from, kind, c.Start)) }

// avgMs is avg_time_per_source_message: the product divides the cycle's
// elapsed time by the number of responses.
func avgMs(elapsed time.Duration, responses int64) string {
	ms := float64(elapsed) / float64(time.Millisecond)
	if responses > 0 {
		ms /= float64(responses)
	}
	return fmt.Sprintf("%.3f ms", ms)
}

// avgOf is avg_time_per_source_message of n: per handled message when
// n.ByMessage, else the product's elapsed time per response.
func avgOf(n CycleCounts, elapsed time.Duration) string {
	if !n.ByMessage {
		return avgMs(elapsed, n.Responses)
	}
	if n.Handled == 0 {
		return avgMs(0, 0)
	}
	return avgMs(n.HandleTime, n.Handled)
}

// RenderEventsReceived renders the SQS events line (its average as avgOf
// says), e.g.
// `Received 198 response(s), received 1973 message(s), generated 1973 message(s), detected_event_types: ["ssm", "s3"], avg_time_per_source_message: 335.170 ms`.
func RenderEventsReceived(n CycleCounts, elapsed time.Duration) string {
	quoted := make([]string, len(n.EventTypes))
	for i, t := range n.EventTypes {
		quoted[i] = `"` + t + `"`
	}
	return fmt.Sprintf("Received %d response(s), received %d message(s), generated %d message(s), detected_event_types: [%s], avg_time_per_source_message: %s",
		n.Responses, n.Received, n.Generated, strings.Join(quoted, ", "), avgOf(n, elapsed))
}

// LogEventsReceived logs the SQS events line (see RenderEventsReceived).
func (c *Cycle) LogEventsReceived() { c.log.Info(RenderEventsReceived(c.Counts(), c.Elapsed())) }

// RenderS3Received renders the S3+SQS line (its average as avgOf says),
// e.g.
// "Received 2 response(s), messages (fromSQS/generated): 0/0, discarded files: 0, avg_time_per_source_message: 169.711 ms".
func RenderS3Received(n CycleCounts, elapsed time.Duration) string {
	return fmt.Sprintf("Received %d response(s), messages (fromSQS/generated): %d/%d, discarded files: %d, avg_time_per_source_message: %s",
		n.Responses, n.Received, n.Generated, n.DiscardedFiles, avgOf(n, elapsed))
}

// LogS3Received logs the S3+SQS line (see RenderS3Received).
func (c *Cycle) LogS3Received() { c.log.Info(RenderS3Received(c.Counts(), c.Elapsed())) }

// RenderAuditReceived renders the CloudTrail API line, e.g.
// `Received 4 response(s), messages (total/dropped/other_region/duplicated/generated): 186/8/0/1/177, tag template used: "cloud.aws.cloudtrail.{event_type}.123456789012.us-west-8.1.prod-1", avg_time_per_source_message: 678.952 ms`.
func RenderAuditReceived(n CycleCounts, tagTemplate string, elapsed time.Duration) string {
	return fmt.Sprintf("Received %d response(s), messages (total/dropped/other_region/duplicated/generated): %d/%d/%d/%d/%d, tag template used: \"%s\", avg_time_per_source_message: %s",
		n.Responses, n.Received, n.Dropped, n.OtherRegion, n.Duplicated, n.Generated, tagTemplate, avgMs(elapsed, n.Responses))
}

// LogAuditReceived logs the CloudTrail API line (see RenderAuditReceived).
func (c *Cycle) LogAuditReceived(tagTemplate string) {
	c.log.Info(RenderAuditReceived(c.Counts(), tagTemplate, c.Elapsed()))
}

// RenderMetricsReceived renders the CloudWatch metrics line, e.g.
// `Received 3 response(s), generated 17 message(s), tag used: "cloud.aws.cloudwatch.metrics.936082584952.us-east-2.1", avg_time_per_source_message: 393.845 ms`.
func RenderMetricsReceived(n CycleCounts, tag string, elapsed time.Duration) string {
	return fmt.Sprintf("Received %d response(s), generated %d message(s), tag used: \"%s\", avg_time_per_source_message: %s",
		n.Responses, n.Generated, tag, avgMs(elapsed, n.Responses))
}

// LogMetricsReceived logs the CloudWatch metrics line (see RenderMetricsReceived).
func (c *Cycle) LogMetricsReceived(tag string) {
	c.log.Info(RenderMetricsReceived(c.Counts(), tag, c.Elapsed()))
}

// RenderTotals renders the GuardDuty line "Total event received: 584, and sent: 584".
func RenderTotals(n CycleCounts) string {
	return fmt.Sprintf("Total event received: %d, and sent: %d", n.Received, n.Generated)
}

// LogTotals logs the GuardDuty line (see RenderTotals).
func (c *Cycle) LogTotals() { c.log.Info(RenderTotals(c.Counts())) }

// RenderStatistics renders the end-of-cycle statistics line, e.g.
// "Statistics for this pull cycle (@devo_pulling_id=1655983326.290848): Number of requests performed: 2; Number of events received: 52; Number of duplicated events filtered out: 0; Number of events generated and sent: 52 (from 52 unflattened events); Average of events per second: 92.99414315733."
func RenderStatistics(id string, n CycleCounts, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(n.Generated) / s
	}
	return fmt.Sprintf("Statistics for this pull cycle (@devo_pulling_id=%s): Number of requests performed: %d; Number of events received: %d; Number of duplicated events filtered out: %d; Number of events generated and sent: %d (from %d unflattened events); Average of events per second: %s.",
		id, n.Responses, n.Received, n.Duplicated, n.Generated, n.Received, pyFloat(rate))
}

// LogStatistics logs the statistics line (see RenderStatistics).
func (c *Cycle) LogStatistics() { c.log.Info(RenderStatistics(c.ID, c.Counts(), c.Elapsed())) }

// RenderCompleted renders the end of a cycle that took elapsed out of
// period. When there is time left it is
// "Data collection completed. Elapsed time: 0.438 seconds. Waiting for 59.562 second(s) until the next one";
// when the cycle overran it is
// "Elapsed time: 931.842 seconds. Last retrieval took too much time, no wait will be applied in this loop".
// It returns the line and the wait before the next cycle.
func RenderCompleted(elapsed, period time.Duration) (string, time.Duration) {
	wait := period - elapsed
	if wait <= 0 {
		return fmt.Sprintf("Elapsed time: %.3f seconds. Last retrieval took too much time, no wait will be applied in this loop",
			elapsed.Seconds()), 0
	}
	return fmt.Sprintf("Data collection completed. Elapsed time: %.3f seconds. Waiting for %.3f second(s) until the next one",
		elapsed.Seconds(), wait.Seconds()), wait
}

// LogCompleted logs the end of the cycle (see RenderCompleted) and returns
// how long the source should wait, in a select with its context, before the
// next cycle.
func (c *Cycle) LogCompleted(period time.Duration) time.Duration {
	line, wait := RenderCompleted(c.Elapsed(), period)
	c.log.Info(line)
	return wait
}

// RenderOffset renders the metrics puller's alignment line,
// "Applied an offset to wait, retrieval_offset: -36.266007 seconds".
func RenderOffset(offset time.Duration) string {
	return fmt.Sprintf("Applied an offset to wait, retrieval_offset: %.6f seconds", offset.Seconds())
}

// LogCompletedWithOffset is LogCompleted for pullers that align cycles to
// period boundaries: it logs the offset, then the end of the cycle with
// period+offset as the time budget, and returns the wait.
func (c *Cycle) LogCompletedWithOffset(period, offset time.Duration) time.Duration {
	c.log.Info(RenderOffset(offset))
	return c.LogCompleted(period + offset)
}

// pyFloat formats v as Python's repr of a float does for ordinary values:
// the shortest text that reads back as v, always with a decimal point.
func pyFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}
