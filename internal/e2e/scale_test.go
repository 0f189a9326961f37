package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/coord"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/dynalite"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// The world of the scale test: three regions of CloudTrail LookupEvents,
// two GuardDuty detectors and six log groups (eleven API streams, each a
// lease), and one S3+SQS queue of VPC Flow Logs files.
var (
	scaleRegions   = []string{"us-east-1", "us-west-2", "eu-west-1"}
	scaleDetectors = []string{"det0aaaa", "det1bbbb"}
	scaleGroups    = []string{"/g/0", "/g/1", "/g/2", "/g/3", "/g/4", "/g/5"}
)

const (
	scaleLease   = 4 * time.Second // lease_duration_in_sec
	scaleVisible = 20              // the queue's sqs_visibility_timeout, seconds
	scaleBucket  = "scale-flow"
	scaleQueue   = "scale-flow"
	scaleLines   = 40 // lines per VPC Flow Logs file
	// scaleSettle is how much older than now a live finding's updatedAt is:
	// past the source's 30 s settle delay, so that it is read at once.
	scaleSettle = 35 * time.Second
)

// scaleKeyOf is the checkpoint key, which names the lease, of a stream as
// the test names it ("ct/<region>", "gd/<detector>", "cwl/<group>").
func scaleKeyOf(stream string) state.Key {
	kind, name, _ := strings.Cut(stream, "/")
	switch kind {
	case "ct":
		return state.Key{Input: "aws", Service: "audit-events-all", Region: name, Sub: "trail"}
	case "gd":
		return state.Key{Input: "aws", Service: "aws-guardduty", Region: "us-east-1", Sub: "detector/" + name}
	default:
		return state.Key{Input: "aws", Service: "cwl_1", Region: "us-east-1", Sub: name}
	}
}

// scaleLeaseOf is a stream's lease as /metrics and the lease lines show it.
func scaleLeaseOf(stream string) string { return scaleKeyOf(stream).String() }

func scaleStreams() []string {
	var out []string
	for _, r := range scaleRegions {
		out = append(out, "ct/"+r)
	}
	for _, d := range scaleDetectors {
		out = append(out, "gd/"+d)
	}
	for _, g := range scaleGroups {
		out = append(out, "cwl/"+g)
	}
	return out
}

// scaleWorld holds the fakes and every event the test expects at rsyslog.
type scaleWorld struct {
	t    *testing.T
	e    *env
	ct   *awstest.CloudTrail
	gd   *awstest.GuardDuty
	logs *awstest.Logs

	queueURL string

	mu    sync.Mutex
	want  map[string]string // event id → its stream ("s3" for the queue)
	n     int
	files int
}

func (w *scaleWorld) expect(id, stream string) {
	w.mu.Lock()
	w.want[id] = stream
	w.mu.Unlock()
}

func (w *scaleWorld) next() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	return w.n
}

func (w *scaleWorld) addCT(region string, at time.Time) {
	id := fmt.Sprintf("ct-%s-%06d", region, w.next())
	rec := fmt.Sprintf(`{"eventVersion":"1.09","eventTime":%q,"eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":%q,"eventID":%q,"eventType":"AwsApiCall","recipientAccountId":%q}`,
		at.UTC().Format(time.RFC3339), region, id, trailAccount)
	w.ct.AddEvents(awstest.LookupEvent{EventID: id, EventName: "GetObject", EventSource: "s3.amazonaws.com", EventTime: at, CloudTrailEvent: rec})
	w.expect(id, "ct/"+region)
}

func (w *scaleWorld) addFinding(det string, updated time.Time) {
	id := fmt.Sprintf("gd-%s-%06d", det, w.next())
	w.gd.PutFindings(det, gdFinding(id, updated.Add(-time.Hour), updated, 1))
	w.expect(id, "gd/"+det)
}

func (w *scaleWorld) addLog(group string, at time.Time) {
	id := fmt.Sprintf("cwl-%s-%06d", strings.ReplaceAll(strings.Trim(group, "/"), "/", "_"), w.next())
	w.logs.AddEvents(group, awstest.LogEvent{Stream: "s", Timestamp: at, EventID: id, Message: "msg " + id})
	w.expect(id, "cwl/"+group)
}

// addFile puts one VPC Flow Logs file of scaleLines lines in the bucket and
// announces it on the queue; every line's interface id is unique.
func (w *scaleWorld) addFile() {
	w.mu.Lock()
	f := w.files
	w.files++
	w.mu.Unlock()
	var b strings.Builder
	b.WriteString(vpcV2HeaderLine + "\n")
	for l := range scaleLines {
		id := fmt.Sprintf("eni-s%dx%d", f, l)
		fmt.Fprintf(&b, "2 %s %s 10.1.2.3 172.31.8.19 443 %d 6 18 9432 1717161240 1717161300 ACCEPT OK\n", samples.Account, id, 40000+l)
		w.expect(id, "s3")
	}
	key := fmt.Sprintf("AWSLogs/%[1]s/vpcflowlogs/us-east-1/2024/05/31/%[1]s_vpcflowlogs_us-east-1_fl-0a1b2c3d4e5f60712_20240531T1315Z_s%04[2]d.log.gz", samples.Account, f)
	body := samples.Gzip(b.String())
	if _, err := w.e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(scaleBucket), Key: aws.String(key), Body: strings.NewReader(string(body))}); err != nil {
		w.t.Error(err)
		return
	}
	w.e.send(w.queueURL, samples.S3Notification(scaleBucket, key, len(body)), "")
}

const vpcV2HeaderLine = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"

var eniID = regexp.MustCompile(`eni-s\d+x\d+`)

// received counts the data events at rsyslog by id.
func (w *scaleWorld) received(msgs []rsyslog.Message) map[string]int {
	got := map[string]int{}
	for _, m := range dataMessages(msgs) {
		p := m.Payload()
		switch {
		case strings.HasPrefix(m.Tag, "cloud.aws.vpc."):
			if id := eniID.FindString(p); id != "" {
				got[id]++
			}
		default:
			var rec struct {
				EventID string `json:"eventID"`
				LogID   string `json:"eventId"`
				Finding string `json:"Id"`
			}
			if err := json.Unmarshal([]byte(p), &rec); err != nil {
				w.t.Errorf("payload %.200q: %v", p, err)
				continue
			}
			for _, id := range []string{rec.EventID, rec.LogID, rec.Finding} {
				if id != "" {
					got[id]++
					break
				}
			}
		}
	}
	return got
}

// pull is one request for a stream's data, at a fake.
type pull struct {
	stream, key string
	at          time.Time
	in          any
}

// pulls are the data requests of every stream (not discovery: ListDetectors
// and DescribeLogGroups run in every collector), in arrival order.
func (w *scaleWorld) pulls() []pull {
	var out []pull
	for _, c := range w.ct.Calls() {
		if c.Op == "LookupEvents" {
			out = append(out, pull{"ct/" + c.Region, c.AccessKeyID, c.At, c.Input})
		}
	}
	for _, c := range w.gd.Calls() {
		switch in := c.Input.(type) {
		case *awstest.ListFindingsRequest:
			out = append(out, pull{"gd/" + in.DetectorID, c.AccessKeyID, c.At, c.Input})
		case *awstest.GetFindingsRequest:
			out = append(out, pull{"gd/" + in.DetectorID, c.AccessKeyID, c.At, c.Input})
		}
	}
	for _, c := range w.logs.Calls() {
		switch in := c.Input.(type) {
		case *awstest.FilterLogEventsRequest:
			out = append(out, pull{"cwl/" + in.LogGroupName, c.AccessKeyID, c.At, c.Input})
		case *awstest.DescribeLogStreamsRequest:
			out = append(out, pull{"cwl/" + in.LogGroupName, c.AccessKeyID, c.At, c.Input})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// from is where a pull starts reading: LookupEvents' StartTime, a
// FilterLogEvents startTime, a ListFindings updatedAt ≥; zero otherwise.
func (p pull) from() time.Time {
	switch in := p.in.(type) {
	case *awstest.LookupEventsRequest:
		if in.StartTime != nil {
			return *in.StartTime
		}
	case *awstest.FilterLogEventsRequest:
		if in.StartTime != nil {
			return time.UnixMilli(*in.StartTime)
		}
	case *awstest.ListFindingsRequest:
		if in.FindingCriteria != nil {
			if c, ok := in.FindingCriteria.Criterion["updatedAt"]; ok && c.GreaterThanOrEqual != nil {
				return time.UnixMilli(*c.GreaterThanOrEqual)
			}
		}
	}
	return time.Time{}
}

// scaleProc is one of the three collectors.
type scaleProc struct {
	name, key, metrics string
	p                  *proc
}

// leaseMetrics reads a collector's /metrics: the leases it holds, its
// owner name, and its successful SQS deletes.
// Before the collector listens, it reports nothing.
func (c *scaleProc) leaseMetrics(t *testing.T) (held []string, owner string, deletes int) {
	t.Helper()
	resp, err := http.Get("http://" + c.metrics + "/metrics")
	if err != nil {
		return nil, "", 0
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics of %s: %s", c.name, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "devo_collector_lease_held{"):
			owner = label(line, "owner")
			held = append(held, label(line, "lease"))
		case strings.HasPrefix(line, "devo_collector_leases_held{"):
			owner = label(line, "owner")
		case strings.HasPrefix(line, "devo_collector_aws_api_calls_total{") && label(line, "api") == "sqs" &&
			strings.HasPrefix(label(line, "operation"), "DeleteMessage") && label(line, "outcome") == "ok":
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			deletes += int(n)
		}
	}
	sort.Strings(held)
	return held, owner, deletes
}

// label is the value of name="…" in a Prometheus text line.
func label(line, name string) string {
	i := strings.Index(line, name+`="`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(name)+2:]
	j := strings.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return rest[:j]
}

// logTimes returns the times of the collector's log lines holding all of
// substrs (slog text: time=… first).
func logTimes(p *proc, substrs ...string) []time.Time {
	var out []time.Time
	for _, l := range strings.Split(p.log(), "\n") {
		ok := true
		for _, s := range substrs {
			if !strings.Contains(l, s) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, v); err == nil {
			out = append(out, at)
		}
	}
	return out
}

// span is one holding of a lease by a collector, from its lease lines;
// to is zero while it lasts.
type span struct{ from, to time.Time }

func (s span) String() string {
	to := "…"
	if !s.to.IsZero() {
		to = s.to.Format("15:04:05.000")
	}
	return s.from.Format("15:04:05.000") + "–" + to
}

var (
	logTime = regexp.MustCompile(`^time=(\S+) `)
	logMsg  = regexp.MustCompile(` msg="?([^"=]+?)"? [a-z_]+=`)
	logKey  = regexp.MustCompile(` key=(\S+)`)
)

// holdings reads a collector's lease lines: a holding starts at "lease
// taken" and ends when the lease is lost, handed over or released.
func holdings(p *proc) map[string][]span {
	out := map[string][]span{}
	for _, l := range strings.Split(p.log(), "\n") {
		tm, msg, key := logTime.FindStringSubmatch(l), logMsg.FindStringSubmatch(l), logKey.FindStringSubmatch(l)
		if tm == nil || msg == nil || key == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, tm[1])
		if err != nil {
			continue
		}
		k := key[1]
		ss := out[k]
		switch msg[1] {
		case "lease taken":
			out[k] = append(ss, span{from: at})
		case "lease lost", "lease handover requested", "lease released":
			if n := len(ss); n > 0 && ss[n-1].to.IsZero() {
				ss[n-1].to = at
			}
		}
	}
	return out
}

// within reports whether t lies in one of spans, or up to slack after its
// end (a request already on the wire when the stream stopped).
func within(spans []span, t time.Time, slack time.Duration) bool {
	for _, s := range spans {
		if !t.Before(s.from) && (s.to.IsZero() || !t.After(s.to.Add(slack))) {
			return true
		}
	}
	return false
}

// overlap finds two collectors holding lease l at once before until.
func overlap(spans map[string]map[string][]span, l string, until time.Time) (a, b string, found bool) {
	for na, sa := range spans {
		for nb, sb := range spans {
			if na >= nb {
				continue
			}
			for _, x := range sa[l] {
				for _, y := range sb[l] {
					xe, ye := x.to, y.to
					if xe.IsZero() {
						xe = until
					}
					if ye.IsZero() {
						ye = until
					}
					if x.from.Before(until) && y.from.Before(until) && x.from.Before(ye) && y.from.Before(xe) {
						return na, nb, true
					}
				}
			}
		}
	}
	return "", "", false
}

// handoverRefused reports whether lease lines show a collector's
// checkpoint write refused between a handover's request and its release,
// while that collector still owned the lease.
func handoverRefused(lines string) bool {
	for _, owner := range []string{"c1: ", "c2: ", "c3: "} {
		state := 0
		for _, l := range strings.Split(lines, "\n") {
			if !strings.HasPrefix(l, owner) {
				continue
			}
			switch {
			case strings.Contains(l, `msg="lease handover requested"`):
				state = 1
			case state == 1 && strings.Contains(l, `msg="lease lost, checkpoint left to the new owner"`):
				state = 2
			case state == 2 && strings.Contains(l, `msg="lease handed over"`):
				return true
			}
		}
	}
	return false
}

// leaseLines are the lease lines of every collector about lease l, for a
// failure message.
func leaseLines(cs []*scaleProc, l string) string {
	var b strings.Builder
	for _, c := range cs {
		for _, line := range strings.Split(c.p.log(), "\n") {
			if strings.Contains(line, "msg=\"lease") && strings.Contains(line, "key="+l) {
				fmt.Fprintf(&b, "%s: %s\n", c.name, line)
			}
		}
	}
	return b.String()
}

// checkpointTime reads a checkpoint value, of the pull engine (end) or of
// a GuardDuty cursor (updated_at_ms), as a time.
func checkpointTime(v []byte) time.Time {
	var cp struct {
		End       time.Time `json:"end"`
		UpdatedAt int64     `json:"updated_at_ms"`
	}
	_ = json.Unmarshal(v, &cp)
	if cp.UpdatedAt != 0 {
		return time.UnixMilli(cp.UpdatedAt)
	}
	return cp.End
}

// Issue 17's "done when", through the binary: three collectors on ONE
// config file (per instance through ${ENV}: persistence, metrics address,
// and the access key, which tells their requests apart at the fakes) share
// eleven API streams through leases in dynalite, and the S3+SQS queue as
// competing consumers, all into rsyslog through the Devo output, while
// events keep coming:
//   - the streams split across the three (each holds ≥ 1), no stream is
//     pulled by two of them, nothing is delivered twice;
//   - kill -9 of one: its leases are taken within 2 × lease_duration and
//     its streams resume from its checkpoints;
//   - SIGSTOP of another past its lease, then SIGCONT: its checkpoints in
//     the table never move back, and it pulls none of its former streams
//     until it takes a lease again;
//   - every event arrives; duplicates only in the streams of the killed and
//     the paused collector, and the queue's redeliveries.
//
// E2E_SCALE_SOLO=1 runs the same world without globals.coordination, to
// show that the checks fail when nothing shares the streams out.
func TestScaleThreeCollectorsShareOneConfig(t *testing.T) {
	solo := os.Getenv("E2E_SCALE_SOLO") != ""
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	db := dynalite.Start(t)
	t.Cleanup(func() {
		if t.Failed() {
			out := db.Output()
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("dynalite output (last part):\n%s", out)
		}
	})
	w := &scaleWorld{t: t, e: e, ct: awstest.NewCloudTrail(t), gd: awstest.NewGuardDuty(t), logs: awstest.NewLogs(t), want: map[string]string{}}
	e.emu.MustCreateBucket(t, scaleBucket)
	w.queueURL = e.queue(scaleQueue, map[string]string{"VisibilityTimeout": fmt.Sprint(scaleVisible)})

	// The backlog: two hours of CloudTrail and logs, findings of the last
	// two hours, and ten files.
	now := time.Now().UTC()
	start := now.Add(-2 * time.Hour).Truncate(time.Minute)
	w.gd.AddDetector(scaleDetectors...)
	w.logs.AddGroup(scaleGroups...)
	for i := range 40 {
		at := start.Add(time.Duration(i) * 3 * time.Minute)
		for _, r := range scaleRegions {
			w.addCT(r, at)
		}
		for _, g := range scaleGroups {
			w.addLog(g, at.Add(time.Second))
		}
		if i%2 == 0 {
			for _, d := range scaleDetectors {
				w.addFinding(d, at.Add(2*time.Second))
			}
		}
	}
	for range 10 {
		w.addFile()
	}
	backlog := map[string]bool{}
	for id, s := range w.want {
		if s != "s3" {
			backlog[id] = true
		}
	}

	coordination := fmt.Sprintf(`  coordination:
    type: dynamodb
    config:
      table: scale-e2e
      region: us-east-1
      endpoint_url: %q
      lease_duration_in_sec: %d
`, db.URL, int(scaleLease/time.Second))
	if solo {
		coordination = ""
	}
	cfg := fmt.Sprintf(`globals:
  name: e2e
  persistence: {type: filesystem, config: {directory_name: "${E2E_STATE}"}}
  metrics_listen: "${E2E_METRICS}"
%s
%s
inputs:
  aws:
    id: "42"
    requests_per_second: 1000
    regions: [%s]
    endpoint_url: %q
    credentials: {access_key: "${E2E_KEY}", access_secret: e2e-secret}
    services:
      audit-events-all:
        types: [audits_api]
        start_time: %q
        time_slot_in_hours: 1
        gap_until_now_in_minutes: 0
        request_period_in_seconds: 1
        endpoints: {cloudtrail: %q}
      aws-guardduty:
        regions: [us-east-1]
        start_time: %q
        request_period_in_seconds: 1
        endpoints: {guardduty: %q}
      cwl_1:
        types: [logs]
        regions: [us-east-1]
        log_group: "/"
        start_time: %q
        request_period_in_seconds: 1
        endpoints: {logs: %q}
      non-cloudwatch-logs: {types: [flowlogs], regions: [us-east-1], sqs_queue_name: %s, sqs_wait_time_seconds: 1, sqs_visibility_timeout: %d}
`, coordination, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      ack_settle: 200ms\n"),
		strings.Join(scaleRegions, ", "), e.emu.URL,
		start.Format(time.RFC3339), w.ct.URL, start.Format(time.RFC3339), w.gd.URL,
		start.Format(time.RFC3339), w.logs.URL, scaleQueue, scaleVisible)
	cfgPath := filepath.Join(e.dir, "config", "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	procs := make([]*scaleProc, 3)
	for i := range procs {
		c := &scaleProc{name: fmt.Sprintf("c%d", i+1), key: fmt.Sprintf("E2ESCALEKEY%d", i+1), metrics: freeAddr(t)}
		c.p = e.startBinEnv(collectorBin, cfgPath, []string{
			"E2E_STATE=" + filepath.Join(e.dir, "state-"+c.name),
			"E2E_METRICS=" + c.metrics,
			"E2E_KEY=" + c.key,
			"COLLECTOR_LOGS_OVERLAP_SECONDS=5",
			"COLLECTOR_LOGS_SAFETY_SECONDS=1",
			"COLLECTOR_LOGS_GROUP_REFRESH_SECONDS=2",
		})
		procs[i] = c
	}
	byKey := map[string]*scaleProc{}
	for _, c := range procs {
		byKey[c.key] = c
	}
	began := time.Now()

	// Live events all along: every half second one per region, log group
	// and detector, and a file.
	feedCtx, stopFeed := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-feedCtx.Done():
				return
			case <-tick.C:
			}
			at := time.Now().UTC().Add(2 * time.Second) // ahead of every window already pulled
			for _, r := range scaleRegions {
				w.addCT(r, at)
			}
			for _, g := range scaleGroups {
				w.addLog(g, at)
			}
			for _, d := range scaleDetectors {
				w.addFinding(d, time.Now().Add(-scaleSettle).Truncate(time.Millisecond))
			}
			w.addFile()
		}
	}()
	defer func() { stopFeed(); <-fed }()

	// 1. The split: every stream held by exactly one collector, each
	// collector holding at least one, the same for 3 s.
	type view struct {
		held  map[string][]string // collector → leases
		owner map[string]string   // collector → owner name
	}
	read := func(cs []*scaleProc) view {
		v := view{held: map[string][]string{}, owner: map[string]string{}}
		for _, c := range cs {
			h, o, _ := c.leaseMetrics(t)
			v.held[c.name], v.owner[c.name] = h, o
		}
		return v
	}
	split := func(v view, cs []*scaleProc) bool {
		seen := map[string]int{}
		for _, c := range cs {
			if len(v.held[c.name]) == 0 {
				return false
			}
			for _, l := range v.held[c.name] {
				seen[l]++
			}
		}
		for _, s := range scaleStreams() {
			if seen[scaleLeaseOf(s)] != 1 {
				return false
			}
		}
		return len(seen) == len(scaleStreams())
	}
	// stable waits until the leases are split among cs and stay so for
	// 3 s, and returns the split and when it began.
	stable := func(cs []*scaleProc, limit time.Duration) (view, time.Time) {
		t.Helper()
		deadline := time.Now().Add(limit)
		var last view
		var since time.Time
		for time.Now().Before(deadline) {
			v := read(cs)
			switch {
			case !split(v, cs):
				since = time.Time{}
			case since.IsZero() || fmt.Sprint(v.held) != fmt.Sprint(last.held):
				since = time.Now()
			case time.Since(since) >= 3*time.Second:
				return v, since
			}
			last = v
			time.Sleep(250 * time.Millisecond)
		}
		var pulled []string
		for _, s := range scaleStreams() {
			keys := map[string]bool{}
			for _, p := range w.pulls() {
				if p.stream == s && p.at.After(time.Now().Add(-3*time.Second)) {
					keys[byKey[p.key].name] = true
				}
			}
			pulled = append(pulled, fmt.Sprintf("%s by %v", s, keys))
		}
		t.Fatalf("the streams were not split among %d collectors within %v: leases %v\nlast 3 s of pulls: %s", len(cs), limit, last.held, strings.Join(pulled, "; "))
		return view{}, time.Time{}
	}
	v1, steady := view{}, began
	if solo {
		// Nothing to wait for: no collector shares anything out. The
		// checks below show what that does.
		time.Sleep(5 * time.Second)
	} else {
		v1, steady = stable(procs, 60*time.Second)
		t.Logf("split after %v: %v", steady.Sub(began).Round(100*time.Millisecond), v1.held)
	}

	eventually(t, 60*time.Second, "the backlog at rsyslog", func() bool {
		got := w.received(rs.Messages())
		for id := range backlog {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // more pulls of the split

	// While all three run, each stream was pulled by one collector at a
	// time: the owners of a stream's successive requests never go back to
	// an earlier one (a handover while the split settles is one change);
	// in the steady split, only by its lease's holder; and nothing was
	// delivered twice.
	holderOf := map[string]string{}
	for name, ls := range v1.held {
		for _, l := range ls {
			holderOf[l] = name
		}
	}
	killAt := time.Now()
	if !solo {
		// Every pull was made while its collector held the stream's lease
		// (by its own lease lines), and no two collectors held a lease at
		// once: so no stream was pulled by two at once.
		spans := map[string]map[string][]span{}
		for _, c := range procs {
			spans[c.name] = holdings(c.p)
		}
		for _, s := range scaleStreams() {
			l := scaleLeaseOf(s)
			for _, p := range w.pulls() {
				name := byKey[p.key].name
				if p.stream == s && p.at.Before(killAt) && !within(spans[name][l], p.at, 500*time.Millisecond) {
					t.Errorf("%s pulled by %s at %v outside its holdings of the lease %v\n%s", s, name, p.at.Format(time.StampMilli), spans[name][l], leaseLines(procs, l))
					break
				}
			}
			if a, b, ok := overlap(spans, l, killAt); ok {
				t.Errorf("lease %s held by %s and %s at once\n%s", l, a, b, leaseLines(procs, l))
			}
		}
	}
	for _, s := range scaleStreams() {
		var seq []string
		for _, p := range w.pulls() {
			if p.stream != s || p.at.After(killAt) {
				continue
			}
			name := byKey[p.key].name
			if len(seq) == 0 || seq[len(seq)-1] != name {
				seq = append(seq, name)
			}
			if h, ok := holderOf[scaleLeaseOf(s)]; ok && p.at.After(steady) && name != h {
				t.Errorf("%s pulled by %s at %v while %s held its lease", s, name, p.at.Format(time.StampMilli), holderOf[scaleLeaseOf(s)])
				break
			}
		}
		if len(seq) == 0 {
			t.Errorf("%s never pulled", s)
		}
		if solo && len(seq) > 3 {
			t.Errorf("%s pulled by %v in turn: several collectors pulled it at once", s, seq)
		}
	}
	dups := func(got map[string]int, filter func(stream string) bool) (n int, ex []string) {
		w.mu.Lock()
		defer w.mu.Unlock()
		for id, k := range got {
			if k > 1 && filter(w.want[id]) {
				n += k - 1
				if len(ex) < 5 {
					ex = append(ex, id)
				}
			}
		}
		return n, ex
	}
	if n, ex := dups(w.received(rs.Messages()), func(string) bool { return true }); n > 0 {
		// Say which streams, who pulled them from where, and their lease
		// lines.
		var b strings.Builder
		seen := map[string]bool{}
		for _, id := range ex {
			w.mu.Lock()
			st := w.want[id]
			w.mu.Unlock()
			if seen[st] || st == "s3" {
				continue
			}
			seen[st] = true
			fmt.Fprintf(&b, "%s:\n", st)
			for _, p := range w.pulls() {
				if p.stream == st {
					fmt.Fprintf(&b, "  %s %s from %s\n", p.at.Format("15:04:05.000"), byKey[p.key].name, p.from().Format("15:04:05.000"))
				}
			}
			lines := leaseLines(procs, scaleLeaseOf(st))
			b.WriteString(lines)
			if handoverRefused(lines) {
				b.WriteString("  → the old owner's checkpoint writes were refused while it drained a handover (after \"lease handover requested\", before \"lease handed over\"): the new owner re-read what it had delivered\n")
			}
		}
		t.Errorf("%d events delivered twice while all three ran, e.g. %v\n%s", n, ex, b.String())
	}
	if t.Failed() {
		t.FailNow()
	}
	// The queue: every collector consumes from it, files keep coming.
	deletes := map[string]int{}
	eventually(t, 30*time.Second, "every collector deleting SQS messages", func() bool {
		for _, c := range procs {
			_, _, deletes[c.name] = c.leaseMetrics(t)
		}
		return deletes["c1"] > 0 && deletes["c2"] > 0 && deletes["c3"] > 0
	})
	t.Logf("SQS messages deleted while all three ran: %v", deletes)
	// Discovery runs in every collector; only the pulling is leased.
	for _, c := range procs {
		lists := 0
		for _, call := range w.gd.Calls() {
			if call.Op == "ListDetectors" && call.AccessKeyID == c.key {
				lists++
			}
		}
		groups := 0
		for _, call := range w.logs.Calls() {
			if call.Op == "DescribeLogGroups" && call.AccessKeyID == c.key {
				groups++
			}
		}
		if lists == 0 || groups == 0 {
			t.Errorf("%s listed the detectors %d times and the log groups %d times: discovery must run in every collector", c.name, lists, groups)
		}
	}

	// 2. kill -9 of the collector with the most leases.
	victim := procs[0]
	for _, c := range procs {
		if len(v1.held[c.name]) > len(v1.held[victim.name]) {
			victim = c
		}
	}
	survivors := slices.DeleteFunc(slices.Clone(procs), func(c *scaleProc) bool { return c == victim })
	var victimStreams []string
	for _, s := range scaleStreams() {
		if holderOf[scaleLeaseOf(s)] == victim.name {
			victimStreams = append(victimStreams, s)
		}
	}
	killAt = time.Now()
	if err := victim.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.p.wait(10 * time.Second)
	lastBefore := map[string]time.Time{} // the victim's last read position per stream
	for _, p := range w.pulls() {
		if p.key == victim.key && !p.from().IsZero() {
			lastBefore[p.stream] = p.from()
		}
	}
	eventually(t, 3*scaleLease+5*time.Second, "every stream of the killed collector pulled by another", func() bool {
		for _, s := range victimStreams {
			found := false
			for _, p := range w.pulls() {
				if p.stream == s && p.key != victim.key && p.at.After(killAt) {
					found = true
					break
				}
			}
			if !found {
				return false
			}
		}
		return true
	})
	var worstTake, worstResume time.Duration
	for _, s := range victimStreams {
		for _, c := range survivors {
			for _, at := range logTimes(c.p, "lease taken", "key="+scaleLeaseOf(s)+" ") {
				if at.After(killAt) {
					worstTake = max(worstTake, at.Sub(killAt))
				}
			}
		}
		if lastBefore[s].IsZero() {
			t.Errorf("%s: no read position of the killed collector to compare the resumption with", s)
		}
		for _, p := range w.pulls() {
			if p.stream != s || p.key == victim.key || !p.at.After(killAt) {
				continue
			}
			worstResume = max(worstResume, p.at.Sub(killAt))
			// It resumes from the checkpoint: no further back than where
			// the killed collector was reading (less the logs' overlap),
			// never from start_time.
			if f := p.from(); !f.IsZero() && f.Before(lastBefore[s].Add(-6*time.Second)) {
				t.Errorf("%s resumed at %v, before the killed collector's last read from %v", s, f.Format(time.StampMilli), lastBefore[s].Format(time.StampMilli))
			}
			break
		}
	}
	if worstTake == 0 && len(victimStreams) > 0 {
		t.Errorf("no survivor logged taking the killed collector's leases")
	}
	if worstTake > 2*scaleLease {
		t.Errorf("the killed collector's leases were taken after %v, more than 2 × %v", worstTake, scaleLease)
	}
	t.Logf("kill -9 of %s (%d streams %v): leases taken within %v, pulling resumed within %v",
		victim.name, len(victimStreams), victimStreams, worstTake.Round(10*time.Millisecond), worstResume.Round(10*time.Millisecond))

	// 3. SIGSTOP of a survivor past its lease, then SIGCONT.
	v2, _ := stable(survivors, 30*time.Second)
	paused, other := survivors[0], survivors[1]
	var pausedStreams []string
	for _, s := range scaleStreams() {
		if slices.Contains(v2.held[paused.name], scaleLeaseOf(s)) {
			pausedStreams = append(pausedStreams, s)
		}
	}
	obs, err := coord.Open(context.Background(), coord.Config{Table: "scale-e2e", Region: "us-east-1", Endpoint: db.URL,
		LeaseDuration: scaleLease, Owner: "e2e-observer", AWS: db.Config()})
	if err != nil && !solo {
		t.Fatal(err)
	}
	if obs != nil {
		defer obs.Close()
	}
	checkpoints := func() map[string]time.Time {
		out := map[string]time.Time{}
		if obs == nil {
			return out
		}
		for _, s := range pausedStreams {
			if v, ok, err := obs.Store().Get(scaleKeyOf(s)); err == nil && ok {
				out[scaleLeaseOf(s)] = checkpointTime(v)
			}
		}
		return out
	}
	stopAt := time.Now()
	if err := paused.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*scaleLease+5*time.Second, "the paused collector's leases taken", func() bool {
		h, _, _ := other.leaseMetrics(t)
		return len(h) == len(scaleStreams())
	})
	time.Sleep(time.Second) // the new owner moves the checkpoints on
	before := checkpoints()
	if len(before) != len(pausedStreams) {
		t.Errorf("read %d checkpoints of the paused collector's %d streams from the table", len(before), len(pausedStreams))
	}
	contAt := time.Now()
	if err := paused.p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// For a few seconds after it resumes, its checkpoints never go back.
	for time.Since(contAt) < 4*time.Second {
		now := checkpoints()
		for k, was := range before {
			if now[k].Before(was) {
				t.Errorf("checkpoint %s moved back from %v to %v after the paused collector resumed", k, was.Format(time.StampMilli), now[k].Format(time.StampMilli))
			}
		}
		before = now
		time.Sleep(200 * time.Millisecond)
	}
	// It stops pulling its former streams: after a renewal period (when
	// it finds its leases gone) no request of it for one of them, until it
	// takes that lease again.
	grace := scaleLease/3 + time.Second
	stale := 0
	for _, s := range pausedStreams {
		retaken := time.Time{}
		for _, at := range logTimes(paused.p, "lease taken", "key="+scaleLeaseOf(s)+" ") {
			if at.After(contAt) && (retaken.IsZero() || at.Before(retaken)) {
				retaken = at
			}
		}
		for _, p := range w.pulls() {
			if p.stream == s && p.key == paused.key && p.at.After(contAt.Add(grace)) && (retaken.IsZero() || p.at.Before(retaken)) {
				t.Errorf("%s pulled by the resumed %s at %v (resumed %v, lease retaken %v)", s, paused.name, p.at.Format(time.StampMilli), contAt.Format(time.StampMilli), retaken)
				break
			}
			if p.stream == s && p.key == paused.key && p.at.After(contAt) && p.at.Before(contAt.Add(grace)) {
				stale++
			}
		}
	}
	lostLines := len(logTimes(paused.p, "lease lost"))
	refused := len(logTimes(paused.p, "lease lost, checkpoint left to the new owner"))
	t.Logf("SIGSTOP of %s (%d streams) for %v: %d requests in the %v after SIGCONT before it stopped, %d 'lease lost' lines, %d checkpoint writes refused",
		paused.name, len(pausedStreams), contAt.Sub(stopAt).Round(100*time.Millisecond), stale, grace, lostLines, refused)

	// 4. Every event arrives.
	stopFeed()
	<-fed
	var got map[string]int
	eventually(t, 90*time.Second, "every event at rsyslog", func() bool {
		got = w.received(rs.Messages())
		w.mu.Lock()
		defer w.mu.Unlock()
		for id := range w.want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	w.mu.Lock()
	total := len(w.want)
	w.mu.Unlock()
	allowed := map[string]bool{"s3": true}
	for _, s := range append(slices.Clone(victimStreams), pausedStreams...) {
		allowed[s] = true
	}
	if n, ex := dups(got, func(s string) bool { return !allowed[s] }); n > 0 {
		t.Errorf("%d duplicates in streams neither killed nor paused, e.g. %v", n, ex)
	}
	apiDups, _ := dups(got, func(s string) bool { return s != "s3" })
	s3Dups, _ := dups(got, func(s string) bool { return s == "s3" })
	for _, c := range survivors {
		_, _, d := c.leaseMetrics(t)
		deletes[c.name] = d
	}
	t.Logf("%d events, all delivered; duplicates: %d of the API streams (killed/paused collectors' unsettled windows), %d of the queue (redelivery); SQS deletes %v; %v in all",
		total, apiDups, s3Dups, deletes, time.Since(began).Round(time.Second))
	for _, c := range survivors {
		terminate(t, c.p)
	}
}
