package awstest

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// Logs is a fake CloudWatch Logs endpoint speaking AWS JSON 1.1, serving
// DescribeLogGroups, DescribeLogStreams and FilterLogEvents. Load data with
// AddGroup, AddStream and AddEvents; point a cloudwatchlogs.Client at URL.
type Logs struct {
	fake
	region     string
	groups     map[string]*logGroup
	emptyPages int
	nextID     int
}

// LogStream describes a stream to create with AddStream.
type LogStream struct {
	Name         string
	CreationTime time.Time
	// HideLastEventTimestamp leaves lastEventTimestamp out of
	// DescribeLogStreams, as AWS does while it has not yet updated it.
	HideLastEventTimestamp bool
}

// LogEvent is one log event. Timestamps have millisecond precision on the
// wire.
type LogEvent struct {
	Stream    string
	Timestamp time.Time
	Message   string
	// IngestionTime is when AWS ingests the event; FilterLogEvents does not
	// return it before then (by the fake's clock, SetClock). Zero:
	// Timestamp plus one second. A later value makes a late event.
	IngestionTime time.Time
	EventID       string // empty: generated
}

type logGroup struct {
	name    string
	created time.Time
	streams map[string]*logStream
	events  []LogEvent
}

type logStream struct {
	LogStream
	first, last time.Time
	ingested    time.Time
}

// CloudWatch Logs limits, as documented.
const (
	logsDescribeLimit = 50
	logsFilterLimit   = 10000
	logsPageBytes     = 1 << 20
	// logsEventOverhead is what AWS adds to each message when it counts
	// bytes (the PutLogEvents rule); the fake uses it for the 1 MB page.
	logsEventOverhead = 26
	logsMaxStreams    = 100
)

// NewLogs starts a CloudWatch Logs fake for region "us-east-1"; the test's
// cleanup stops it.
func NewLogs(t testing.TB) *Logs {
	t.Helper()
	l := &Logs{region: "us-east-1", groups: map[string]*logGroup{}}
	l.start(t, jsonProtocol{contentType: "application/x-amz-json-1.1"}, http.HandlerFunc(l.handle))
	return l
}

// AddGroup creates log groups (idempotent).
func (l *Logs) AddGroup(names ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		l.group(n)
	}
}

func (l *Logs) group(name string) *logGroup {
	g := l.groups[name]
	if g == nil {
		g = &logGroup{name: name, created: l.now(), streams: map[string]*logStream{}}
		l.groups[name] = g
	}
	return g
}

// DeleteGroup deletes a log group and its events; later calls naming it
// fail with ResourceNotFoundException, as in AWS.
func (l *Logs) DeleteGroup(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.groups, name)
}

// AddStream creates a stream in group (creating the group too).
func (l *Logs) AddStream(group string, s LogStream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stream(l.group(group), s)
}

func (l *Logs) stream(g *logGroup, s LogStream) *logStream {
	st := g.streams[s.Name]
	if st == nil {
		if s.CreationTime.IsZero() {
			s.CreationTime = l.now()
		}
		st = &logStream{LogStream: s}
		g.streams[s.Name] = st
	}
	return st
}

// AddEvents appends events to group, creating the group and the events'
// streams as needed.
func (l *Logs) AddEvents(group string, evs ...LogEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.group(group)
	for _, ev := range evs {
		if ev.IngestionTime.IsZero() {
			ev.IngestionTime = ev.Timestamp.Add(time.Second)
		}
		if ev.EventID == "" {
			l.nextID++
			ev.EventID = fmt.Sprintf("%056d", l.nextID)
		}
		st := l.stream(g, LogStream{Name: ev.Stream})
		if st.first.IsZero() || ev.Timestamp.Before(st.first) {
			st.first = ev.Timestamp
		}
		if ev.Timestamp.After(st.last) {
			st.last = ev.Timestamp
		}
		if ev.IngestionTime.After(st.ingested) {
			st.ingested = ev.IngestionTime
		}
		g.events = append(g.events, ev)
	}
}

// SetEmptyPages makes every FilterLogEvents listing begin with n empty
// pages that still carry a nextToken, which AWS does while it searches.
func (l *Logs) SetEmptyPages(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emptyPages = n
}

// DescribeLogGroupsRequest is a decoded DescribeLogGroups request.
type DescribeLogGroupsRequest struct {
	LogGroupNamePrefix string `json:"logGroupNamePrefix,omitempty"`
	Limit              *int32 `json:"limit,omitempty"`
	NextToken          string `json:"nextToken,omitempty"`
}

// DescribeLogStreamsRequest is a decoded DescribeLogStreams request.
type DescribeLogStreamsRequest struct {
	LogGroupName        string `json:"logGroupName,omitempty"`
	LogStreamNamePrefix string `json:"logStreamNamePrefix,omitempty"`
	OrderBy             string `json:"orderBy,omitempty"`
	Descending          bool   `json:"descending,omitempty"`
	Limit               *int32 `json:"limit,omitempty"`
	NextToken           string `json:"nextToken,omitempty"`
}

// FilterLogEventsRequest is a decoded FilterLogEvents request; times are
// epoch milliseconds, as on the wire.
type FilterLogEventsRequest struct {
	LogGroupName        string   `json:"logGroupName,omitempty"`
	LogStreamNames      []string `json:"logStreamNames,omitempty"`
	LogStreamNamePrefix string   `json:"logStreamNamePrefix,omitempty"`
	StartTime           *int64   `json:"startTime,omitempty"`
	EndTime             *int64   `json:"endTime,omitempty"`
	FilterPattern       string   `json:"filterPattern,omitempty"`
	Limit               *int32   `json:"limit,omitempty"`
	NextToken           string   `json:"nextToken,omitempty"`
}

func (l *Logs) handle(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "Logs_20140328.")
	switch {
	case !ok || r.Method != http.MethodPost:
	case op == "DescribeLogGroups":
		in := &DescribeLogGroupsRequest{}
		l.serve(w, r, op, in, func() (any, *apiError) { return l.describeLogGroups(in) })
		return
	case op == "DescribeLogStreams":
		in := &DescribeLogStreamsRequest{}
		l.serve(w, r, op, in, func() (any, *apiError) { return l.describeLogStreams(in) })
		return
	case op == "FilterLogEvents":
		in := &FilterLogEventsRequest{}
		l.serve(w, r, op, in, func() (any, *apiError) { return l.filterLogEvents(in) })
		return
	}
	l.serve(w, r, op, nil, func() (any, *apiError) {
		return nil, newAPIError(http.StatusBadRequest, "UnknownOperationException", "operation %q is not implemented by the fake", target)
	})
}

func invalidParameter(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "InvalidParameterException", format, args...)
}

func missingGroup() *apiError {
	return newAPIError(http.StatusBadRequest, "ResourceNotFoundException", "The specified log group does not exist.")
}

var errLogsToken = invalidParameter("The specified nextToken is invalid.")

type logGroupWire struct {
	LogGroupName string `json:"logGroupName"`
	CreationTime int64  `json:"creationTime"`
	Arn          string `json:"arn"`
	LogGroupArn  string `json:"logGroupArn"`
	StoredBytes  int64  `json:"storedBytes"`
	LogGroupCls  string `json:"logGroupClass"`
}

func (l *Logs) describeLogGroups(in *DescribeLogGroupsRequest) (any, *apiError) {
	if !intIn(in.Limit, 1, logsDescribeLimit) {
		return nil, invalidParameter("limit must be between 1 and %d", logsDescribeLimit)
	}
	key := *in
	key.NextToken = ""
	list := func() []*logGroup {
		var out []*logGroup
		for _, g := range l.groups {
			if strings.HasPrefix(g.name, in.LogGroupNamePrefix) {
				out = append(out, g)
			}
		}
		slices.SortFunc(out, func(a, b *logGroup) int { return strings.Compare(a.name, b.name) })
		return out
	}
	page, next, ok := paginate(&l.fake, "DescribeLogGroups", requestKey(key), in.NextToken, list,
		upTo[*logGroup](orDefault(in.Limit, logsDescribeLimit)), 0)
	if !ok {
		return nil, errLogsToken
	}
	groups := []logGroupWire{}
	for _, g := range page {
		var stored int64
		for _, ev := range g.events {
			stored += int64(len(ev.Message))
		}
		arn := fmt.Sprintf("arn:aws:logs:%s:123456789012:log-group:%s", l.region, g.name)
		groups = append(groups, logGroupWire{
			LogGroupName: g.name, CreationTime: epochMillis(g.created),
			Arn: arn + ":*", LogGroupArn: arn, StoredBytes: stored, LogGroupCls: "STANDARD",
		})
	}
	return struct {
		LogGroups []logGroupWire `json:"logGroups"`
		NextToken string         `json:"nextToken,omitempty"`
	}{groups, next}, nil
}

type logStreamWire struct {
	LogStreamName       string `json:"logStreamName"`
	CreationTime        int64  `json:"creationTime"`
	FirstEventTimestamp int64  `json:"firstEventTimestamp,omitempty"`
	LastEventTimestamp  int64  `json:"lastEventTimestamp,omitempty"`
	LastIngestionTime   int64  `json:"lastIngestionTime,omitempty"`
	Arn                 string `json:"arn"`
	StoredBytes         int64  `json:"storedBytes"`
}

func (l *Logs) describeLogStreams(in *DescribeLogStreamsRequest) (any, *apiError) {
	if !intIn(in.Limit, 1, logsDescribeLimit) {
		return nil, invalidParameter("limit must be between 1 and %d", logsDescribeLimit)
	}
	switch in.OrderBy {
	case "", "LogStreamName", "LastEventTime":
	default:
		return nil, invalidParameter("orderBy must be LogStreamName or LastEventTime")
	}
	if in.OrderBy == "LastEventTime" && in.LogStreamNamePrefix != "" {
		return nil, invalidParameter("Cannot order by LastEventTime with a logStreamNamePrefix.")
	}
	g := l.groups[in.LogGroupName]
	if g == nil {
		return nil, missingGroup()
	}
	key := *in
	key.NextToken = ""
	list := func() []*logStream {
		var out []*logStream
		for _, s := range g.streams {
			if strings.HasPrefix(s.Name, in.LogStreamNamePrefix) {
				out = append(out, s)
			}
		}
		slices.SortFunc(out, func(a, b *logStream) int {
			if in.OrderBy == "LastEventTime" {
				if c := a.last.Compare(b.last); c != 0 {
					return c
				}
			}
			return strings.Compare(a.Name, b.Name)
		})
		if in.Descending {
			slices.Reverse(out)
		}
		return out
	}
	page, next, ok := paginate(&l.fake, "DescribeLogStreams", requestKey(key), in.NextToken, list,
		upTo[*logStream](orDefault(in.Limit, logsDescribeLimit)), 0)
	if !ok {
		return nil, errLogsToken
	}
	streams := []logStreamWire{}
	for _, s := range page {
		w := logStreamWire{
			LogStreamName: s.Name,
			CreationTime:  epochMillis(s.CreationTime),
			Arn:           fmt.Sprintf("arn:aws:logs:%s:123456789012:log-group:%s:log-stream:%s", l.region, g.name, s.Name),
		}
		if !s.first.IsZero() {
			w.FirstEventTimestamp = epochMillis(s.first)
			w.LastIngestionTime = epochMillis(s.ingested)
			if !s.HideLastEventTimestamp {
				w.LastEventTimestamp = epochMillis(s.last)
			}
		}
		streams = append(streams, w)
	}
	return struct {
		LogStreams []logStreamWire `json:"logStreams"`
		NextToken  string          `json:"nextToken,omitempty"`
	}{streams, next}, nil
}

type logEventWire struct {
	LogStreamName string `json:"logStreamName"`
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
	EventID       string `json:"eventId"`
}

func (l *Logs) filterLogEvents(in *FilterLogEventsRequest) (any, *apiError) {
	if !intIn(in.Limit, 1, logsFilterLimit) {
		return nil, invalidParameter("limit must be between 1 and %d", logsFilterLimit)
	}
	if len(in.LogStreamNames) > 0 && in.LogStreamNamePrefix != "" {
		return nil, invalidParameter("logStreamNames and logStreamNamePrefix are mutually exclusive")
	}
	if len(in.LogStreamNames) > logsMaxStreams {
		return nil, invalidParameter("logStreamNames may hold at most %d names", logsMaxStreams)
	}
	if in.StartTime != nil && in.EndTime != nil && *in.StartTime > *in.EndTime {
		return nil, invalidParameter("startTime must not be after endTime")
	}
	match, err := compileFilterPattern(in.FilterPattern)
	if err != nil {
		return nil, err
	}
	g := l.groups[in.LogGroupName]
	if g == nil {
		return nil, missingGroup()
	}
	key := *in
	key.NextToken = ""
	list := func() []LogEvent {
		var out []LogEvent
		now := l.now()
		for _, ev := range g.events {
			ms := epochMillis(ev.Timestamp)
			switch {
			case ev.IngestionTime.After(now): // not ingested yet: invisible, as in AWS
				continue
			case in.StartTime != nil && ms < *in.StartTime,
				in.EndTime != nil && ms > *in.EndTime,
				len(in.LogStreamNames) > 0 && !slices.Contains(in.LogStreamNames, ev.Stream),
				!strings.HasPrefix(ev.Stream, in.LogStreamNamePrefix),
				!match(ev.Message):
				continue
			}
			out = append(out, ev)
		}
		slices.SortStableFunc(out, func(a, b LogEvent) int {
			return cmp.Or(a.Timestamp.Compare(b.Timestamp), strings.Compare(a.Stream, b.Stream))
		})
		return out
	}
	limit := orDefault(in.Limit, logsFilterLimit)
	take := func(rest []LogEvent) int {
		n, size := 0, 0
		for n < len(rest) && n < limit {
			size += len(rest[n].Message) + logsEventOverhead
			if size > logsPageBytes && n > 0 {
				break
			}
			n++
		}
		return n
	}
	page, next, ok := paginate(&l.fake, "FilterLogEvents", requestKey(key), in.NextToken, list, take, l.emptyPages)
	if !ok {
		return nil, errLogsToken
	}
	events := []logEventWire{}
	for _, ev := range page {
		events = append(events, logEventWire{
			LogStreamName: ev.Stream, Timestamp: epochMillis(ev.Timestamp), Message: ev.Message,
			IngestionTime: epochMillis(ev.IngestionTime), EventID: ev.EventID,
		})
	}
	return struct {
		Events    []logEventWire `json:"events"`
		NextToken string         `json:"nextToken,omitempty"`
	}{events, next}, nil
}

// compileFilterPattern supports the unstructured subset of the filter
// pattern syntax: space-separated terms that must all appear, "quoted
// phrases", -term exclusions and ?term alternatives (any may appear).
// Terms are case-sensitive, as in AWS. JSON and space-delimited patterns
// are rejected so a test cannot silently rely on them.
func compileFilterPattern(p string) (func(string) bool, *apiError) {
	p = strings.TrimSpace(p)
	if p == "" {
		return func(string) bool { return true }, nil
	}
	if strings.HasPrefix(p, "{") || strings.HasPrefix(p, "[") {
		return nil, invalidParameter("filter pattern %q: JSON and space-delimited patterns are not supported by the fake", p)
	}
	var all, none, anyOf []string
	for len(p) > 0 {
		if p = strings.TrimLeft(p, " "); p == "" {
			break
		}
		kind := byte(0)
		if p[0] == '?' || p[0] == '-' {
			kind, p = p[0], p[1:]
		}
		var term string
		if strings.HasPrefix(p, `"`) {
			end := strings.Index(p[1:], `"`)
			if end < 0 {
				return nil, invalidParameter("filter pattern: unterminated quote")
			}
			term, p = p[1:end+1], p[end+2:]
		} else {
			term, p, _ = strings.Cut(p, " ")
		}
		switch kind {
		case '?':
			anyOf = append(anyOf, term)
		case '-':
			none = append(none, term)
		default:
			all = append(all, term)
		}
	}
	return func(msg string) bool {
		for _, t := range all {
			if !strings.Contains(msg, t) {
				return false
			}
		}
		for _, t := range none {
			if strings.Contains(msg, t) {
				return false
			}
		}
		if len(anyOf) == 0 {
			return true
		}
		for _, t := range anyOf {
			if strings.Contains(msg, t) {
				return true
			}
		}
		return false
	}, nil
}
