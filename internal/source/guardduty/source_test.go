package guardduty

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// loadService loads the aws-guardduty service with its defaults, its
// request period shortened to 50 ms.
func loadService(t *testing.T) *config.Service {
	t.Helper()
	// An empty mapping: the service's key alone (null) is rejected as
	// missing, as the binary does.
	svc := svcconfig.Load(t, "aws-guardduty", "        {}\n", "")
	svc.RequestPeriod = 50 * time.Millisecond
	return svc
}

type harness struct {
	t      *testing.T
	gd     *awstest.GuardDuty
	store  state.Store
	leases lease.Holder // nil: lease.Solo
	log    syncbuf.Buffer
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, gd: awstest.NewGuardDuty(t), store: state.NewMemory()}
}

func (h *harness) source(svc *config.Service) *Source {
	h.t.Helper()
	client := guardduty.New(guardduty.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(h.gd.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "s", ""),
	})
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Store:     h.store,
			Leases:    h.leases,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
		},
		Client: client,
		Settle: time.Millisecond,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return src
}

// start runs src behind a real pipeline into rec until the returned stop.
func (h *harness) start(src *Source, rec *pipetest.Recorder) (stop func()) {
	out := pipetest.Emitter(h.t, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, out) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	}
}

// finding is what the tests read back from a payload.
type finding struct {
	ID        string `json:"Id"`
	UpdatedAt string `json:"UpdatedAt"`
	Service   struct {
		Count       int    `json:"Count"`
		DetectorID  string `json:"DetectorId"`
		ServiceName string `json:"ServiceName"`
	} `json:"Service"`
	Pulling string `json:"@devo_pulling_id"`
}

func parse(t *testing.T, payload string) finding {
	t.Helper()
	var f finding
	if err := json.Unmarshal([]byte(payload), &f); err != nil || f.ID == "" || f.Pulling == "" {
		t.Fatalf("payload %q: %v", payload, err)
	}
	return f
}

// load puts n findings into detector: groups of 7 share an updatedAt
// millisecond, and 60 more share one (wider than a page of 50).
func load(h *harness, detector string, n int, base time.Time) []string {
	var ids []string
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i/7) * 1500 * time.Millisecond)
		if i >= n-60 {
			at = base.Add(time.Hour)
		}
		id := fmt.Sprintf("%s-f%03d", detector[:4], i)
		ids = append(ids, id)
		h.gd.PutFindings(detector, awstest.Finding{
			ID: id, Type: "Recon:EC2/PortProbeUnprotectedPort", Severity: 5,
			CreatedAt: base.Add(-time.Hour), UpdatedAt: at,
			Resource: map[string]any{"resourceType": "Instance"},
			Service:  map[string]any{"count": 1},
		})
	}
	return ids
}

func counts(t *testing.T, rec *pipetest.Recorder) map[string][]finding {
	m := map[string][]finding{}
	for _, p := range rec.Payloads() {
		f := parse(t, p)
		m[f.ID] = append(m[f.ID], f)
	}
	return m
}

// Two detectors with ties (including a tie wider than a page): every
// finding once; then 10 per detector updated: each once more with its new
// content; then a new Source on the same store (a restart) sends nothing
// again, and a detector removed meanwhile gives one WARN while the other
// goes on.
func TestFindingsOnceUpdatesAgainAcrossRestart(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	dets := []string{"aaaa1111", "bbbb2222"}
	var all []string
	for _, d := range dets {
		all = append(all, load(h, d, 230, base)...)
	}
	rec := pipetest.NewRecorder()
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 20*time.Second, "460 findings", func() bool { return rec.Total() >= 460 })
	time.Sleep(200 * time.Millisecond) // a few more cycles: nothing new must come
	got := counts(t, rec)
	for _, id := range all {
		if len(got[id]) != 1 {
			t.Errorf("finding %s delivered %d times, want 1", id, len(got[id]))
		}
	}
	if rec.Total() != 460 {
		t.Errorf("%d events, want 460", rec.Total())
	}
	for tg := range rec.Tags() {
		if tg != "cloud.aws.guardduty.findings.123456789012.us-east-1.1" {
			t.Errorf("tag %q", tg)
		}
	}

	// GuardDuty updates 10 findings of each detector (some at the same
	// millisecond as each other), while the source runs. updatedAt is the
	// time of the update, as in GuardDuty: a walk that listed before it
	// stops short of it (settle delay), the next one reads it.
	later := time.Now().Truncate(time.Millisecond)
	var updated []string
	for _, d := range dets {
		var fs []awstest.Finding
		for i := 0; i < 10; i++ {
			id := fmt.Sprintf("%s-f%03d", d[:4], i*20)
			updated = append(updated, id)
			fs = append(fs, awstest.Finding{
				ID: id, Type: "Recon:EC2/PortProbeUnprotectedPort", Severity: 5,
				CreatedAt: base.Add(-time.Hour), UpdatedAt: later.Add(time.Duration(i/3) * time.Millisecond),
				Resource: map[string]any{"resourceType": "Instance"},
				Service:  map[string]any{"count": 7},
			})
		}
		h.gd.PutFindings(d, fs...)
	}
	pipetest.WaitFor(t, 20*time.Second, "the 20 updates", func() bool { return rec.Total() >= 480 })
	time.Sleep(200 * time.Millisecond)
	stop()
	got = counts(t, rec)
	for _, id := range updated {
		fs := got[id]
		if len(fs) != 2 || fs[1].Service.Count != 7 || fs[0].Service.Count != 1 {
			t.Errorf("updated finding %s: %+v, want the old then the new version", id, fs)
		}
	}
	if rec.Total() != 480 {
		t.Errorf("%d events, want 480", rec.Total())
	}

	// A restart on the same store: nothing is sent again. One detector is
	// deleted meanwhile, the other gets 5 new findings.
	h.gd.RemoveDetector(dets[0])
	for i := 0; i < 5; i++ {
		h.gd.PutFindings(dets[1], awstest.Finding{ID: fmt.Sprintf("new-%d", i), Type: "T", Severity: 2,
			CreatedAt: later, UpdatedAt: later.Add(time.Second)})
	}
	rec2 := pipetest.NewRecorder()
	stop = h.start(h.source(svc), rec2)
	pipetest.WaitFor(t, 20*time.Second, "5 new findings", func() bool { return rec2.Total() >= 5 })
	time.Sleep(300 * time.Millisecond)
	stop()
	if rec2.Total() != 5 {
		t.Errorf("after the restart %d events, want the 5 new: %v", rec2.Total(), rec2.Payloads())
	}
	if !strings.Contains(h.log.String(), "resuming from cursor") {
		t.Error("the restart did not resume from the saved cursors")
	}
}

// A detector that disappears, or is suspended, is reported once; the other
// detector goes on.
func TestDetectorGoneOrSuspendedWarnsOnce(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	base := time.Now().Add(-2 * time.Hour) // load puts these 10 at base + 1 h
	load(h, "aaaa1111", 10, base)
	load(h, "bbbb2222", 10, base)
	h.gd.AddDetector("cccc3333")
	h.gd.SuspendDetector("cccc3333", true)
	rec := pipetest.NewRecorder()
	src := h.source(svc)
	stop := h.start(src, rec)
	pipetest.WaitFor(t, 10*time.Second, "20 findings", func() bool { return rec.Total() >= 20 })
	h.gd.RemoveDetector("aaaa1111")
	time.Sleep(300 * time.Millisecond)
	h.gd.PutFindings("bbbb2222", awstest.Finding{ID: "late", Type: "T", CreatedAt: base, UpdatedAt: time.Now().Add(-time.Second)})
	pipetest.WaitFor(t, 10*time.Second, "the other detector's new finding", func() bool { return rec.Total() >= 21 })
	time.Sleep(300 * time.Millisecond)
	stop()
	log := h.log.String()
	if n := strings.Count(log, "detector no longer listed"); n != 1 {
		t.Errorf("%d 'no longer listed' lines, want 1\n%s", n, log)
	}
	if n := strings.Count(log, "detector suspended"); n != 1 {
		t.Errorf("%d 'suspended' lines, want 1\n%s", n, log)
	}
	if n := strings.Count(log, "Total event received: "); n < 3 {
		t.Errorf("%d cycle total lines, want several", n)
	}
	// Every cycle starts with its line, and ends with its totals.
	if starts, totals := strings.Count(log, `msg="Starting a new pulling from \"GuardDuty findings\" at \"`), strings.Count(log, "Total event received: "); starts != totals && starts != totals+1 {
		t.Errorf("%d start lines for %d cycle totals\n%s", starts, totals, log)
	}
	if !strings.Contains(log, `msg="Total event received: 20, and sent: 20"`) {
		t.Errorf("no first-cycle totals line\n%s", log)
	}
}

// The payload uses the model's PascalCase member names, omits absent ones
// and keeps map keys and time strings as sent.
func TestPayloadPascalCase(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	h.gd.PutFindings("aaaa1111", awstest.Finding{ID: "f1", Type: "Backdoor:EC2/C&CActivity.B!DNS", Severity: 8, Title: "t",
		CreatedAt: at, UpdatedAt: at,
		Resource: map[string]any{"resourceType": "Instance", "instanceDetails": map[string]any{"instanceId": "i-1",
			"tags": []any{map[string]any{"key": "Name", "value": "web"}}}},
		Service: map[string]any{"count": 4, "action": map[string]any{"actionType": "DNS_REQUEST",
			"dnsRequestAction": map[string]any{"domain": "c2.example", "blocked": false}}}})
	rec := pipetest.NewRecorder()
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 10*time.Second, "1 finding", func() bool { return rec.Total() >= 1 })
	stop()
	p := rec.Payloads()[0]
	for _, want := range []string{`"AccountId":"123456789012"`, `"Id":"f1"`, `"Severity":8,`, `"Type":"Backdoor:EC2/C&CActivity.B!DNS"`,
		`"UpdatedAt":"` + at.UTC().Format(timeLayout) + `"`, `"InstanceDetails":{`, `"Tags":[{"Key":"Name","Value":"web"}]`,
		`"Action":{"ActionType":"DNS_REQUEST","DnsRequestAction":{"Blocked":false,"Domain":"c2.example"}}`, `"@devo_pulling_id":"`} {
		if !strings.Contains(p, want) {
			t.Errorf("payload lacks %s:\n%s", want, p)
		}
	}
	if strings.Contains(p, "null") || strings.Contains(p, `"accountId"`) {
		t.Errorf("payload has absent members or wire names:\n%s", p)
	}
}

// Pages settling out of order move the cursor over the delivered prefix
// only; a failed page holds it and reset starts the walk there.
func TestLedgerOrder(t *testing.T) {
	var saved []int64
	l := newLedger(Cursor{UpdatedAt: 1}, func(c Cursor) { saved = append(saved, c.UpdatedAt) })
	p := make([]*page, 5)
	for i := range p {
		p[i] = l.add(Cursor{UpdatedAt: int64(10 * (i + 1)), IDs: []string{fmt.Sprint(i)}})
	}
	l.settle(p[1], true)
	l.settle(p[0], true)
	l.settle(p[3], true)
	l.settle(p[2], false)
	if fmt.Sprint(saved) != "[20]" {
		t.Fatalf("saved %v, want [20]", saved)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := l.reset(ctx); err == nil {
		t.Fatal("reset returned with a page in flight")
	}
	l.settle(p[4], true)
	c, failed, err := l.reset(context.Background())
	if err != nil || !failed || c.UpdatedAt != 20 || fmt.Sprint(c.IDs) != "[1]" {
		t.Fatalf("reset: %+v failed=%v err=%v", c, failed, err)
	}
	if fmt.Sprint(saved) != "[20]" {
		t.Fatalf("saved %v after a failure, want [20]", saved)
	}
}

// hookClient runs hook once, between a ListFindings and a GetFindings for
// IDs that include on, when armed.
type hookClient struct {
	Client
	mu   sync.Mutex
	on   string
	hook func()
}

func (c *hookClient) GetFindings(ctx context.Context, in *guardduty.GetFindingsInput, optFns ...func(*guardduty.Options)) (*guardduty.GetFindingsOutput, error) {
	c.mu.Lock()
	var h func()
	if c.hook != nil && slices.Contains(in.FindingIds, c.on) {
		h, c.hook = c.hook, nil
	}
	c.mu.Unlock()
	if h != nil {
		h()
	}
	return c.Client.GetFindings(ctx, in, optFns...)
}

// A finding updated after its page was listed and before it was read comes
// back from GetFindings newer than listed. It must not move the walk's
// cursor past findings the page did not list yet: 60 updates pending (more
// than a page), the first of them updated again between ListFindings and
// GetFindings; every update arrives, each once.
func TestUpdateBetweenListAndGetIsNotSteppedOver(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	const det = "aaaa1111"
	for i := 0; i < 70; i++ {
		h.gd.PutFindings(det, awstest.Finding{ID: fmt.Sprintf("f%02d", i), Type: "T", CreatedAt: base, UpdatedAt: base.Add(time.Duration(i) * time.Second), Service: map[string]any{"count": 1}})
	}
	src := h.source(svc)
	hc := &hookClient{Client: src.o.Client}
	src.o.Client = hc
	rec := pipetest.NewRecorder()
	stop := h.start(src, rec)
	defer stop()
	pipetest.WaitFor(t, 10*time.Second, "70 findings", func() bool { return rec.Total() >= 70 })

	// 60 updates made a second ago become visible at once; the walk that
	// lists the first 50 reads them back after f00 was updated again.
	t1 := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	var fs []awstest.Finding
	for i := 0; i < 60; i++ {
		fs = append(fs, awstest.Finding{ID: fmt.Sprintf("f%02d", i), Type: "T", CreatedAt: base, UpdatedAt: t1.Add(time.Duration(i) * time.Millisecond), Service: map[string]any{"count": 2}})
	}
	hc.mu.Lock()
	hc.on = "f00"
	hc.hook = func() {
		h.gd.PutFindings(det, awstest.Finding{ID: "f00", Type: "T", CreatedAt: base, UpdatedAt: time.Now().Add(5 * time.Millisecond), Service: map[string]any{"count": 3}})
	}
	hc.mu.Unlock()
	h.gd.PutFindings(det, fs...)
	pipetest.WaitFor(t, 10*time.Second, "the updates", func() bool { return rec.Total() >= 130 })
	time.Sleep(300 * time.Millisecond)
	got := counts(t, rec)
	for i := 1; i < 60; i++ {
		id := fmt.Sprintf("f%02d", i)
		if len(got[id]) != 2 || got[id][1].Service.Count != 2 {
			t.Errorf("%s: %+v, want the first version then the update", id, got[id])
		}
	}
	if f := got["f00"]; len(f) != 2 || f[1].Service.Count != 3 {
		t.Errorf("f00: %+v, want the first version then the last update", f)
	}
	if rec.Total() != 130 {
		t.Errorf("%d events, want 130", rec.Total())
	}
}

// ListDetectors is paged: 55 detectors (two pages of at most 50) are all
// read.
func TestManyDetectorsPaged(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	at := time.Now().Add(-time.Hour)
	for i := 0; i < 55; i++ {
		h.gd.PutFindings(fmt.Sprintf("det%02d", i), awstest.Finding{ID: fmt.Sprintf("f%02d", i), Type: "T", CreatedAt: at, UpdatedAt: at})
	}
	rec := pipetest.NewRecorder()
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 20*time.Second, "55 findings", func() bool { return rec.Total() >= 55 })
	stop()
	if got := counts(t, rec); len(got) != 55 {
		t.Errorf("%d distinct findings, want 55", len(got))
	}
	if n := h.gd.Count("ListDetectors"); n < 2 {
		t.Errorf("%d ListDetectors calls", n)
	}
}

// A start_time older than GuardDuty's 90 days starts at the oldest
// available instant, with one WARN per detector.
func TestStartClampedToHistory(t *testing.T) {
	h := newHarness(t)
	svc := loadService(t)
	svc.StartTime = "2020-01-01T00:00:00Z"
	now := time.Now()
	h.gd.PutFindings("aaaa1111",
		awstest.Finding{ID: "old", Type: "T", CreatedAt: now.Add(-100 * 24 * time.Hour), UpdatedAt: now.Add(-100 * 24 * time.Hour)},
		awstest.Finding{ID: "kept", Type: "T", CreatedAt: now.Add(-80 * 24 * time.Hour), UpdatedAt: now.Add(-80 * 24 * time.Hour)})
	rec := pipetest.NewRecorder()
	stop := h.start(h.source(svc), rec)
	pipetest.WaitFor(t, 10*time.Second, "1 finding", func() bool { return rec.Total() >= 1 })
	time.Sleep(200 * time.Millisecond)
	stop()
	if got := counts(t, rec); len(got) != 1 || len(got["kept"]) != 1 {
		t.Errorf("delivered %v, want only the finding inside 90 days", rec.Payloads())
	}
	if n := strings.Count(h.log.String(), "start is older than GuardDuty keeps findings"); n != 1 {
		t.Errorf("%d clamp WARNs, want 1", n)
	}
}
