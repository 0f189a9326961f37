// Package cwlogs is the custom CloudWatch Logs service (any service key that
// is not predefined, types [logs]) on the pull engine. Each unit (input,
// service, region) follows one or more log groups — one name, the groups
// under a prefix ("name*"), or every group ("/") — and each group is one
// engine stream with its own checkpoint: the end of the last window whose
// events were all delivered, plus the eventIds of its last minutes.
//
// Late ingestion: CloudWatch Logs makes an event visible only once it is
// ingested, which may be well after its timestamp. Windows therefore end
// Safety before now, and each window reads Overlap before its start again;
// the events of the overlap that were already handed on are recognised by
// their eventId (pullengine.Pull.Seen), so a late event is delivered
// exactly once as long as it is ingested within Overlap of its timestamp.
package cwlogs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	cwltypes "github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Defaults and CloudWatch Logs facts (spec/aws-formats.md §12).
const (
	// DefaultOverlap is how far before each window's start it is read
	// again, for events ingested late.
	DefaultOverlap = 5 * time.Minute
	// DefaultSafety is how far before now windows end.
	DefaultSafety = 60 * time.Second
	// DefaultGroupRefresh is how often "/" and prefixes list the groups
	// again, to pick up new ones.
	DefaultGroupRefresh = 5 * time.Minute
	// DefaultStartAge is how far back a group's first run reads when
	// start_time is absent (spec/config.md §10).
	DefaultStartAge = 24 * time.Hour
	// MaxWindow bounds one window (one batch, one checkpoint step) during a
	// backfill.
	MaxWindow = time.Hour
	// lastEventLag is how long AWS may take to update a stream's
	// lastEventTimestamp ("typically less than an hour"): the optimized
	// first retrieval trusts it only for windows ending that long before
	// the first cycle.
	lastEventLag = time.Hour
	// streamBatch is the most logStreamNames one FilterLogEvents takes.
	streamBatch = 100
	// describeLimit is the largest page of DescribeLogGroups and
	// DescribeLogStreams.
	describeLimit = 50
	// LimiterAPI names the shared limiter of every CloudWatch Logs call of
	// an account and region (pullengine.SharedLimiter).
	LimiterAPI = "CloudWatch Logs"

	optimizedLine = "Optimized first retrieval approach for high number of log streams with medium size"
)

// Client is the part of the CloudWatch Logs client the source uses.
type Client interface {
	DescribeLogGroups(ctx context.Context, in *cloudwatchlogs.DescribeLogGroupsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogGroupsOutput, error)
	DescribeLogStreams(ctx context.Context, in *cloudwatchlogs.DescribeLogStreamsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.DescribeLogStreamsOutput, error)
	FilterLogEvents(ctx context.Context, in *cloudwatchlogs.FilterLogEventsInput, optFns ...func(*cloudwatchlogs.Options)) (*cloudwatchlogs.FilterLogEventsOutput, error)
}

// Options build a Source. Common's Service, AccountID and Store, and
// NewClient are required. Common.Leases runs each group's stream while
// this collector holds its lease, named by the group's checkpoint key; the
// groups are listed in every collector, only the pulling is leased.
type Options struct {
	apisource.Common
	// NewClient returns the region's CloudWatch Logs client with apiOption
	// added to its APIOptions: the shared limiter and the call counters of
	// one operation. It is called once per operation.
	NewClient func(apiOption func(*cloudwatchlogs.Options)) Client
	// RequestsPerSecond is the input's requests_per_second: every
	// CloudWatch Logs request of the account and region, all groups and
	// services together, keeps to it. Below 1 it means one request every
	// 1/RequestsPerSecond seconds; a fraction above 1 is rounded down.
	RequestsPerSecond float64

	// Overlap, Safety and GroupRefresh override the defaults when > 0.
	Overlap, Safety, GroupRefresh time.Duration

	Tune func(*pullengine.Config) // tests shorten backoffs with it
}

// Source is one custom logs unit. It implements pipeline.Source.
type Source struct {
	o   Options
	svc *config.Service
	log *slog.Logger
	now func() time.Time

	origin                        time.Time // start_time parsed, zero when absent
	leases                        lease.Holder
	overlap, safety, groupRefresh time.Duration

	// Set by the first successful build; reused by later Runs.
	built    bool
	filter   Client
	streams  Client
	groupsC  Client
	tags     *tag.Cache
	groups   map[string]*group // by name
	groupsMu sync.Mutex
	// describePage is the page size of the Describe calls; tests shrink it.
	describePage int32
}

// New checks o and returns a Source.
func New(o Options) (*Source, error) {
	var noClient error
	if o.NewClient == nil {
		noClient = errors.New("cwlogs: nil NewClient")
	}
	if err := o.Check("cwlogs", noClient); err != nil {
		return nil, err
	}
	if o.Service.LogGroup == "" {
		return nil, errors.New("cwlogs: empty log_group")
	}
	s := &Source{o: o, svc: o.Service, log: o.Log, now: o.Now, leases: o.Leases, groups: map[string]*group{},
		describePage: describeLimit, overlap: DefaultOverlap, safety: DefaultSafety, groupRefresh: DefaultGroupRefresh}
	if o.Overlap > 0 {
		s.overlap = o.Overlap
	}
	if o.Safety > 0 {
		s.safety = o.Safety
	}
	if o.GroupRefresh > 0 {
		s.groupRefresh = o.GroupRefresh
	}
	origin, err := o.Origin(time.RFC3339Nano)
	if err != nil {
		return nil, err
	}
	s.origin = origin.Truncate(time.Millisecond)
	if err := o.CheckTag(); err != nil {
		return nil, err
	}
	return s, nil
}

// Quota turns requests_per_second into the limiter's n requests per period.
func Quota(rps float64) (n int, per time.Duration) {
	switch {
	case rps <= 0:
		return 1, time.Second
	case rps < 1:
		return 1, time.Duration(float64(time.Second) / rps)
	default:
		return int(rps), time.Second
	}
}

// build resolves the account and makes the clients and the tag cache.
func (s *Source) build(ctx context.Context) error {
	acct, err := s.o.AccountID(ctx)
	if err != nil {
		return fmt.Errorf("resolve the account id: %w", err)
	}
	n, per := Quota(s.o.RequestsPerSecond)
	lim := pullengine.SharedLimiter(acct, s.o.Region, LimiterAPI, n, per)
	client := func(op string) Client {
		var calls *stats.API
		if s.o.Registry != nil {
			calls = s.o.Registry.API(s.o.InputName, s.svc.Name, s.o.Region, "CloudWatch Logs", op)
		}
		mw := pullengine.APIOption(lim, calls)
		return s.o.NewClient(func(o *cloudwatchlogs.Options) { o.APIOptions = append(o.APIOptions, mw) })
	}
	s.filter, s.streams, s.groupsC = client("FilterLogEvents"), client("DescribeLogStreams"), client("DescribeLogGroups")
	v := tag.Values{AccountID: acct, RegionID: s.o.Region, Environment: s.o.Environment, ServiceName: s.svc.Name}
	s.tags = tag.NewCache(tag.MustCompile(s.svc.TagTemplate), v)
	s.built = true
	return nil
}

// Run follows the configured groups until ctx ends: it lists them (again
// every GroupRefresh for "/" and prefixes) and runs one engine per group,
// while this collector holds the group's lease.
// A group whose engine stops with an error is started again at the next
// listing; a listing that fails on the first try ends the Run.
func (s *Source) Run(ctx context.Context, out pipeline.Emitter) error {
	if !s.built {
		if err := s.build(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	running := map[string]bool{}
	var mu sync.Mutex

	first := true
	for {
		names, err := s.listGroups(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && first:
			return fmt.Errorf("list the log groups: %w", err)
		case err != nil:
			s.log.Warn("log groups not listed, keeping the known ones", "log_group", s.svc.LogGroup, "err", err)
		}
		first = false
		var added []string
		for _, name := range names {
			mu.Lock()
			on := running[name]
			running[name] = true
			mu.Unlock()
			if on {
				continue
			}
			g, err := s.group(name)
			if err != nil {
				return err
			}
			added = append(added, name)
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.leases.Run(ctx, g.key, func(lctx context.Context) error {
					if err := g.begin(); err != nil {
						return err
					}
					err := g.engine.Run(lctx, out)
					if ctx.Err() == nil && lctx.Err() != nil {
						g.engine.Retire() // the lease was lost: the checkpoint is the new owner's
					}
					return err
				})
				if ctx.Err() != nil {
					return
				}
				// Access denied, a group deleted: this group waits for the
				// next listing; the others go on.
				s.log.Error("log group pull stopped, it is started again at the next listing", "log_group", name, "err", err)
				mu.Lock()
				delete(running, name)
				mu.Unlock()
			}()
		}
		if len(added) > 0 {
			mu.Lock()
			total := len(running)
			mu.Unlock()
			s.log.Info("following log groups", "added", len(added), "total", total, "first", added[0])
		}
		// A named group is not listed again, but a stopped engine is
		// started again after the same period.
		if !ctxtime.Sleep(ctx, s.groupRefresh) {
			return nil
		}
	}
}

// discovers reports whether log_group is "/" or a prefix.
func (s *Source) discovers() bool {
	lg := s.svc.LogGroup
	return lg == "/" || strings.HasSuffix(lg, "*")
}

// listGroups returns the names of the groups to follow: the one named, or
// those DescribeLogGroups lists for "/" (every group) or a prefix.
func (s *Source) listGroups(ctx context.Context) ([]string, error) {
	if !s.discovers() {
		return []string{s.svc.LogGroup}, nil
	}
	in := &cloudwatchlogs.DescribeLogGroupsInput{Limit: aws.Int32(s.describePage)}
	if lg := s.svc.LogGroup; lg != "/" {
		in.LogGroupNamePrefix = aws.String(strings.TrimSuffix(lg, "*"))
	}
	var names []string
	for {
		page, err := s.groupsC.DescribeLogGroups(ctx, in)
		if err != nil {
			return names, err
		}
		for _, g := range page.LogGroups {
			if n := aws.ToString(g.LogGroupName); n != "" {
				names = append(names, n)
			}
		}
		if aws.ToString(page.NextToken) == "" {
			break
		}
		in.NextToken = page.NextToken
	}
	sort.Strings(names)
	return names, nil
}

// group returns the engine of the named group, making it on first use.
func (s *Source) group(name string) (*group, error) {
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if g := s.groups[name]; g != nil {
		return g, nil
	}
	key := state.Key{Input: s.o.InputName, Service: s.svc.Name, Region: s.o.Region, Sub: name}
	now := s.now()
	start := s.origin
	if start.IsZero() {
		start = now.Add(-DefaultStartAge).Truncate(time.Second)
	}
	g := &group{s: s, name: name, key: key, start: start}
	var ctrs *stats.Stream
	if s.o.Registry != nil {
		ctrs = s.o.Registry.Stream(s.o.InputName, s.svc.Name, s.o.Region, name)
	}
	c := pullengine.Config{
		Key:       key,
		Store:     s.o.Store,
		Stream:    g,
		Origin:    s.svc.StartTime,
		Start:     func(time.Time) time.Time { return start },
		Period:    s.svc.RequestPeriod,
		EdgeSpan:  s.overlap + time.Second,
		Log:       s.log,
		Unit:      s.o.Stats,
		Counters:  ctrs,
		Now:       s.now,
		StreamTag: name,
	}
	if s.o.Tune != nil {
		s.o.Tune(&c)
	}
	eng, err := pullengine.New(c)
	if err != nil {
		return nil, err
	}
	g.engine = eng
	s.groups[name] = g
	return g, nil
}

// group is one log group: a stream of the engine.
type group struct {
	s      *Source
	name   string
	key    state.Key // the checkpoint's, which names the lease
	engine *pullengine.Engine
	start  time.Time // where the walk began without a checkpoint; reads never go before it

	// The optimized first retrieval (use_first_optimized_retrieval, no
	// checkpoint when the pulling began): windows ending before
	// optimizedUntil read only the streams active since start, listed once.
	firstRun       bool
	cycles         int
	optimizedUntil time.Time
	selected       [][]string // batches of ≤ 100 names; nil until listed
	listed         bool
}

// begin prepares a holding of the group's lease, before its engine runs:
// the optimized first retrieval applies only when no collector has saved a
// checkpoint for the group yet (one may have while another held the lease).
func (g *group) begin() error {
	_, hasCheckpoint, err := pullengine.LoadCheckpoint(g.s.o.Store, g.key)
	if err != nil {
		return err
	}
	g.firstRun = !hasCheckpoint && g.s.svc.UseFirstOptimizedRetrieval
	g.cycles, g.optimizedUntil, g.selected, g.listed = 0, time.Time{}, nil, false
	return nil
}

// Windows cuts [from, now − safety] into windows of at most MaxWindow, on
// millisecond bounds (FilterLogEvents' precision).
func (g *group) Windows(from, now time.Time) []pullengine.Window {
	end := now.Add(-g.s.safety).Truncate(time.Millisecond)
	var out []pullengine.Window
	for from.Before(end) {
		to := from.Add(MaxWindow)
		if to.After(end) {
			to = end
		}
		out = append(out, pullengine.Window{Start: from, End: to})
		from = to
	}
	return out
}

func (g *group) CycleStarted(c *stats.Cycle, from, now time.Time, windows int) {
	c.LogStarting(g.name, "")
	g.cycles++
	if g.firstRun && g.cycles == 1 {
		g.optimizedUntil = now.Add(-lastEventLag)
		g.s.log.Info(optimizedLine)
	}
}

func (g *group) WindowPulled(*stats.Cycle, int) {}

func (g *group) CycleEnded(c *stats.Cycle) {
	n := c.Counts()
	g.s.log.Info("log group cycle done", "log_group", g.name, "responses", n.Responses,
		"received", n.Received, "duplicated", n.Duplicated, "generated", n.Generated)
}

// Pull reads one window, from Overlap before its start (never before the
// group's start), in pages until FilterLogEvents gives no nextToken.
func (g *group) Pull(ctx context.Context, p *pullengine.Pull) error {
	from := p.Window.Start.Add(-g.s.overlap)
	if from.Before(g.start) {
		from = g.start
	}
	if from.After(p.Window.End) {
		// start_time is still in the future: nothing to read yet (AWS
		// refuses a startTime after the endTime).
		return nil
	}
	if g.firstRun && !p.Window.End.After(g.optimizedUntil) {
		if !g.listed {
			sel, err := g.activeStreams(ctx, p)
			if err != nil {
				return err
			}
			g.selected, g.listed = sel, true
		}
		for _, batch := range g.selected {
			if err := g.filter(ctx, p, from, batch); err != nil {
				return err
			}
		}
		return nil
	}
	return g.filter(ctx, p, from, nil)
}

// activeStreams lists the group's streams by last event time, newest first,
// down to the first one whose last event is older than the group's start.
// A stream without lastEventTimestamp (AWS updates it lazily) is kept.
// Where AWS sorts such streams is not documented; one it sorts after the
// stopping point is missed here, but its events are recent (AWS fills the
// value in within about an hour), and the windows of the last hour read
// the whole group (lastEventLag).
func (g *group) activeStreams(ctx context.Context, p *pullengine.Pull) ([][]string, error) {
	in := &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName: aws.String(g.name),
		OrderBy:      cwltypes.OrderByLastEventTime,
		Descending:   aws.Bool(true),
		Limit:        aws.Int32(g.s.describePage),
	}
	var names []string
	startMs := g.start.UnixMilli()
	for {
		var page *cloudwatchlogs.DescribeLogStreamsOutput
		err := p.Call(ctx, "DescribeLogStreams", func(ctx context.Context) error {
			var err error
			page, err = g.s.streams.DescribeLogStreams(ctx, in)
			return err
		})
		if err != nil {
			return nil, err
		}
		done := false
		for _, st := range page.LogStreams {
			if st.LastEventTimestamp != nil && *st.LastEventTimestamp < startMs {
				done = true
				break
			}
			names = append(names, aws.ToString(st.LogStreamName))
		}
		if done || aws.ToString(page.NextToken) == "" {
			break
		}
		in.NextToken = page.NextToken
	}
	var out [][]string
	for len(names) > 0 {
		n := min(streamBatch, len(names))
		out = append(out, names[:n:n])
		names = names[n:]
	}
	g.s.log.Info("log streams selected for the first retrieval", "log_group", g.name, "streams", countNames(out), "batches", len(out))
	return out, nil
}

func countNames(b [][]string) int {
	n := 0
	for _, x := range b {
		n += len(x)
	}
	return n
}

// filter pages FilterLogEvents over [from, window end], for the named
// streams or the whole group, handing each new event on.
func (g *group) filter(ctx context.Context, p *pullengine.Pull, from time.Time, streams []string) error {
	in := &cloudwatchlogs.FilterLogEventsInput{
		LogGroupName: aws.String(g.name),
		StartTime:    aws.Int64(from.UnixMilli()),
		EndTime:      aws.Int64(p.Window.End.UnixMilli()),
	}
	if len(streams) > 0 {
		in.LogStreamNames = streams
	}
	for {
		var page *cloudwatchlogs.FilterLogEventsOutput
		err := p.Call(ctx, "FilterLogEvents", func(ctx context.Context) error {
			var err error
			page, err = g.s.filter.FilterLogEvents(ctx, in)
			return err
		})
		if err != nil {
			return err
		}
		now := g.s.now()
		for i := range page.Events {
			if err := g.event(ctx, p, &page.Events[i], now); err != nil {
				return err
			}
		}
		// An empty page with a nextToken means AWS is still searching.
		if aws.ToString(page.NextToken) == "" {
			return nil
		}
		in.NextToken = page.NextToken
	}
}

// wireEvent is the emitted payload, in the order of the API's event object
// with logGroupName added (spec/aws-formats.md §12).
type wireEvent struct {
	LogStreamName string `json:"logStreamName"`
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
	EventID       string `json:"eventId"`
	LogGroupName  string `json:"logGroupName"`
}

// event emits one log event unless the previous window handed it on.
func (g *group) event(ctx context.Context, p *pullengine.Pull, ev *cwltypes.FilteredLogEvent, now time.Time) error {
	p.Cycle.AddReceived(1)
	ts := time.UnixMilli(aws.ToInt64(ev.Timestamp))
	if id := aws.ToString(ev.EventId); id != "" && p.Seen(id, ts) {
		return nil
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(wireEvent{
		LogStreamName: aws.ToString(ev.LogStreamName), Timestamp: aws.ToInt64(ev.Timestamp),
		Message: aws.ToString(ev.Message), IngestionTime: aws.ToInt64(ev.IngestionTime),
		EventID: aws.ToString(ev.EventId), LogGroupName: g.name,
	}); err != nil {
		p.Cycle.AddDropped(1)
		return nil
	}
	raw := strings.TrimSuffix(b.String(), "\n")
	payload := jsonpay.AppendPlain(make([]byte, 0, len(raw)+40), []byte(raw), p.Cycle.ID)
	e := pipeline.NewEvent(p.Batch(), g.s.tags.Tag(g.s.svc.DefaultEventType), now, payload)
	e.Clean = true // compact JSON, valid UTF-8
	return p.Emit(ctx, e)
}
