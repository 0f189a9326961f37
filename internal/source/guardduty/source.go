// Package guardduty is the aws-guardduty service: GuardDuty findings read
// through the API (ListDetectors, ListFindings, GetFindings). Each unit
// (input, service, region) walks every detector of its region; each
// detector has its own cursor — the newest delivered updatedAt plus the IDs
// at exactly that millisecond — saved only once the findings before it were
// delivered. A finding GuardDuty updates later (new count, eventLastSeen,
// updatedAt) is sent again with its new content.
//
// Each detector is a stream with a lease named by its cursor's key: every
// collector lists the detectors, but only the holder of a detector's lease
// walks it (lease.Holder; a collector alone holds every lease).
//
// The pull engine (internal/pullengine) walks windows fixed before they are
// pulled; a GuardDuty page ends where its findings end, so this source runs
// its own cycle with a page ledger (cursor.go) and shares the engine's call
// counting and the product's cycle lines.
package guardduty

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	gdtypes "github.com/aws/aws-sdk-go-v2/service/guardduty/types"
	"github.com/aws/smithy-go"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// GuardDuty facts (spec/aws-formats.md §10).
const (
	// PageSize is the most IDs one ListFindings page returns and one
	// GetFindings call accepts.
	PageSize = 50
	// History is how long GuardDuty keeps findings.
	History = 90 * 24 * time.Hour
	// DefaultStartAge is how far back the first run reads when start_time
	// is absent.
	DefaultStartAge = 24 * time.Hour
	// DefaultSettle is how old an update must be before it is read: a
	// walk only asks for updatedAt ≤ now − DefaultSettle, so a finding
	// indexed a little after its updatedAt, or updated while a walk pages,
	// is read by a later walk instead of being stepped over by the cursor.
	DefaultSettle = 30 * time.Second
	// historyMargin keeps the start a little inside the 90 days.
	historyMargin = 10 * time.Minute
)

// Client is the part of the GuardDuty client the source uses.
type Client interface {
	ListDetectors(ctx context.Context, in *guardduty.ListDetectorsInput, optFns ...func(*guardduty.Options)) (*guardduty.ListDetectorsOutput, error)
	GetDetector(ctx context.Context, in *guardduty.GetDetectorInput, optFns ...func(*guardduty.Options)) (*guardduty.GetDetectorOutput, error)
	ListFindings(ctx context.Context, in *guardduty.ListFindingsInput, optFns ...func(*guardduty.Options)) (*guardduty.ListFindingsOutput, error)
	GetFindings(ctx context.Context, in *guardduty.GetFindingsInput, optFns ...func(*guardduty.Options)) (*guardduty.GetFindingsOutput, error)
}

// Options build a Source. Common's Service, AccountID and Store, and
// Client are required. Common.Leases walks each detector while this
// collector holds its lease, named by the detector's cursor key;
// ListDetectors runs in every collector, only the walks are leased.
type Options struct {
	apisource.Common
	// Client is the region's GuardDuty client; the session paces it with
	// requests_per_second.
	Client Client
	// Settle overrides DefaultSettle when > 0.
	Settle time.Duration
}

// Source is one aws-guardduty unit. It implements pipeline.Source.
type Source struct {
	o      Options
	svc    *config.Service
	log    *slog.Logger
	now    func() time.Time
	settle time.Duration
	origin time.Time // start_time parsed, zero when absent
	leases lease.Holder
	// wake is signalled when a detector's lease is taken, so that the
	// cycle walks it without waiting for the rest of the period.
	wake chan struct{}

	// Set by the first Run that resolves the account.
	tags *tag.Cache
	// dets are the detectors seen, by ID; they keep their said-once flags
	// across cycles and Runs.
	dets map[string]*detector
	// unlisted is set while ListDetectors fails, so that it is said once.
	unlisted bool
}

// detector is one detector's walk.
type detector struct {
	id  string
	key state.Key
	log *slog.Logger
	// Said-once flags: a detector that cannot be read, is no longer
	// listed or is suspended is reported once per episode. Only the
	// cycle's goroutine uses them.
	failing, gone, suspended, noStatus bool
	ctrs                               *stats.Stream

	mu sync.Mutex
	// cur is the current holding of the detector's lease, nil while this
	// collector does not hold it.
	cur *holding
	// gen counts holdings; the ledger of an older one no longer saves, so
	// that a late settlement cannot move the cursor behind a newer one.
	gen uint64
	// cursorErr is set while the cursor cannot be read, so that it is
	// said once.
	cursorErr bool
}

// New checks o and returns a Source.
func New(o Options) (*Source, error) {
	var noClient error
	if o.Client == nil {
		noClient = errors.New("guardduty: nil Client")
	}
	if err := o.Check("guardduty", noClient); err != nil {
		return nil, err
	}
	s := &Source{o: o, svc: o.Service, log: o.Log, now: o.Now, settle: o.Settle, dets: map[string]*detector{},
		leases: o.Leases, wake: make(chan struct{}, 1)}
	if s.settle <= 0 {
		s.settle = DefaultSettle
	}
	var err error
	if s.origin, err = o.Origin(time.RFC3339Nano); err != nil {
		return nil, err
	}
	if err := o.CheckTag(); err != nil {
		return nil, err
	}
	return s, nil
}

// Run pulls every request_period_in_seconds until ctx ends, walking the
// detectors whose leases this collector holds. Findings emitted before ctx
// ended may settle after Run returns; their cursors are still saved.
func (s *Source) Run(ctx context.Context, out pipeline.Emitter) error {
	if s.tags == nil {
		acct, err := s.o.AccountID(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("resolve the account id: %w", err)
		}
		v := tag.Values{AccountID: acct, RegionID: s.o.Region, Environment: s.o.Environment, ServiceName: s.svc.Name}
		s.tags = tag.NewCache(tag.MustCompile(s.svc.TagTemplate), v)
	}
	period := s.svc.RequestPeriod
	if period <= 0 {
		period = pullengine.DefaultPeriod
	}
	stats.LogStartingCollection(s.log, period)
	// The detectors' lease holdings run beside the cycle until Run ends.
	ctx, cancel := context.WithCancel(ctx)
	h := &holders{s: s, ctx: ctx, period: period, on: map[string]bool{}}
	defer func() {
		cancel()
		h.wg.Wait()
	}()
	for {
		c := stats.NewCycle(s.log, s.o.Stats, s.now())
		// The product's GuardDuty puller logs no start line; this one says
		// what every other service's says, naming what is read.
		c.LogStarting("GuardDuty findings", "")
		s.cycle(ctx, out, c, h)
		if ctx.Err() != nil {
			return nil
		}
		c.LogTotals()
		wait := c.LogCompleted(period)
		if !s.idle(ctx, wait) {
			return nil
		}
	}
}

// cycle walks once every detector of the region whose lease this
// collector holds.
func (s *Source) cycle(ctx context.Context, out pipeline.Emitter, c *stats.Cycle, h *holders) {
	ids, err := s.listDetectors(ctx, c)
	if err != nil {
		if ctx.Err() == nil && !s.unlisted {
			s.unlisted = true
			s.log.Warn("detectors not listed, the region is skipped until they are", "err", err)
		}
		return
	}
	if s.unlisted {
		s.unlisted = false
		s.log.Info("detectors listed again")
	}
	if len(ids) == 0 && len(s.dets) == 0 {
		s.log.Debug("no detector in the region")
	}
	for id, d := range s.dets {
		if !slices.Contains(ids, id) && !d.gone {
			d.gone = true
			s.log.Warn("detector no longer listed, its findings are not pulled", "detector", id)
		}
	}
	for _, id := range ids {
		if d := s.detector(id); d.gone {
			d.gone = false
			s.log.Info("detector listed again", "detector", id)
		}
	}
	h.start(ids)
	upper := s.now().Add(-s.settle)
	for _, id := range ids {
		d := s.dets[id]
		hd := d.holding()
		if hd == nil {
			continue // another collector walks it
		}
		err := s.walkHeld(out, c, d, hd, upper)
		if ctx.Err() != nil {
			return
		}
		if hd.ctx.Err() != nil {
			continue // the lease was lost mid-walk: its new holder goes on
		}
		if err != nil {
			if !d.failing {
				d.failing = true
				s.log.Warn("detector not read, the other detectors go on", "detector", id, "err", err)
			}
			continue
		}
		if d.failing {
			d.failing = false
			s.log.Info("detector read again", "detector", id)
		}
	}
}

// listDetectors returns the region's detector IDs, every page.
func (s *Source) listDetectors(ctx context.Context, c *stats.Cycle) ([]string, error) {
	var ids []string
	var token *string
	for {
		outp, err := s.o.Client.ListDetectors(ctx, &guardduty.ListDetectorsInput{MaxResults: aws.Int32(PageSize), NextToken: token}, s.counted("ListDetectors"))
		if err != nil {
			return nil, err
		}
		c.AddResponses(1)
		ids = append(ids, outp.DetectorIds...)
		if token = outp.NextToken; aws.ToString(token) == "" {
			return ids, nil
		}
	}
}

// detector returns the detector id, made on first sight.
func (s *Source) detector(id string) *detector {
	if d, ok := s.dets[id]; ok {
		return d
	}
	d := &detector{id: id, key: state.Key{Input: s.o.InputName, Service: s.svc.Name, Region: s.o.Region, Sub: "detector/" + id}, log: s.log.With("detector", id)}
	if s.o.Registry != nil {
		d.ctrs = s.o.Registry.Stream(s.o.InputName, s.svc.Name, s.o.Region, "detector/"+id)
	}
	s.dets[id] = d
	return d
}

// ledger loads the detector's cursor, as a holding of its lease begins, and
// returns the ledger that walks from it. A detector without a cursor starts
// at start_time (or now − 24 h), saved at once so that a restart before
// anything is delivered starts there too. The ledger saves only while no
// newer holding has begun.
func (s *Source) ledger(d *detector) (*ledger, error) {
	log := d.log
	now := s.now()
	cur, ok, err := LoadCursor(s.o.Store, d.key)
	if err != nil {
		return nil, err
	}
	if ok && cur.Origin != s.svc.StartTime {
		log.Info("start_time changed, cursor discarded", "cursor", msTime(cur.UpdatedAt), "was", cur.Origin, "now", s.svc.StartTime)
		ok = false
	}
	if ok {
		log.Info("resuming from cursor", "cursor", msTime(cur.UpdatedAt), "ids_at_cursor", len(cur.IDs), "saved", cur.Saved.UTC().Format(time.RFC3339))
	} else {
		start := s.origin
		if start.IsZero() {
			start = now.Add(-DefaultStartAge).Truncate(time.Second)
		}
		cur = Cursor{Origin: s.svc.StartTime, UpdatedAt: start.UnixMilli()}
	}
	if floor := now.Add(-History + historyMargin).Truncate(time.Second); cur.UpdatedAt < floor.UnixMilli() {
		log.Warn("start is older than GuardDuty keeps findings, starting at the oldest available instant", "start", msTime(cur.UpdatedAt), "oldest", floor.UTC().Format(time.RFC3339))
		cur = Cursor{Origin: s.svc.StartTime, UpdatedAt: floor.UnixMilli()}
		ok = false
	}
	d.mu.Lock()
	d.gen++
	gen := d.gen
	d.mu.Unlock()
	notHeldSaid := false // under the ledger's lock, like every save
	save := func(c Cursor) {
		d.mu.Lock()
		stale := d.gen != gen
		d.mu.Unlock()
		if stale {
			return
		}
		c.Saved = s.now()
		if err := saveCursor(s.o.Store, d.key, c); err != nil {
			if errors.Is(err, lease.ErrNotHeld) {
				// Another collector walks the detector now, from the
				// last cursor saved here.
				if !notHeldSaid {
					notHeldSaid = true
					log.Info("lease lost, checkpoint left to the new owner", "key", d.key.String())
				}
				return
			}
			// The next page's save tries again; until then a restart
			// re-reads a little more, which duplicates, never loses.
			log.Error("cursor not saved", "key", d.key.String(), "err", err)
			return
		}
		if d.ctrs != nil {
			d.ctrs.Checkpoint.Store(c.UpdatedAt / 1000)
		}
	}
	if !ok {
		save(cur)
	}
	return newLedger(cur, save), nil
}

// checkStatus says once when a detector is suspended (it then produces no
// new findings; the ones it has are still read). GetDetector needs its own
// permission; without it the status is not checked.
func (s *Source) checkStatus(ctx context.Context, c *stats.Cycle, d *detector) {
	if d.noStatus {
		return
	}
	outp, err := s.o.Client.GetDetector(ctx, &guardduty.GetDetectorInput{DetectorId: aws.String(d.id)}, s.counted("GetDetector"))
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "AccessDeniedException" {
			d.noStatus = true
			s.log.Info("detector status not readable (guardduty:GetDetector not allowed), suspension is not reported", "detector", d.id)
		}
		return
	}
	c.AddResponses(1)
	switch suspended := outp.Status == gdtypes.DetectorStatusDisabled; {
	case suspended && !d.suspended:
		d.suspended = true
		s.log.Warn("detector suspended, it produces no new findings", "detector", d.id)
	case !suspended && d.suspended:
		d.suspended = false
		s.log.Info("detector enabled again", "detector", d.id)
	}
}

// walk reads the detector's findings updated from its cursor up to upper,
// page by page. Every page is a fresh query from the position the walk
// reached, so a finding updated meanwhile cannot shift a later page past
// unread findings; a next token is followed only when a page brought
// nothing new (more findings share the cursor's millisecond than a page
// holds).
func (s *Source) walk(ctx context.Context, out pipeline.Emitter, c *stats.Cycle, d *detector, led *ledger, upper time.Time) error {
	// Everything emitted before has settled: start from what was
	// delivered, so a page that failed is read again.
	pos, failed, err := led.reset(ctx)
	if err != nil {
		return err
	}
	if failed {
		s.log.Info("findings not delivered, reading them again", "detector", d.id, "cursor", msTime(pos.UpdatedAt))
	}
	upperMs := upper.UnixMilli()
	var token *string
	for pos.UpdatedAt <= upperMs {
		in := &guardduty.ListFindingsInput{
			DetectorId: aws.String(d.id),
			FindingCriteria: &gdtypes.FindingCriteria{Criterion: map[string]gdtypes.Condition{
				"updatedAt": {GreaterThanOrEqual: aws.Int64(pos.UpdatedAt), LessThanOrEqual: aws.Int64(upperMs)},
			}},
			SortCriteria: &gdtypes.SortCriteria{AttributeName: aws.String("updatedAt"), OrderBy: gdtypes.OrderByAsc},
			MaxResults:   aws.Int32(PageSize),
			NextToken:    token,
		}
		lf, err := s.o.Client.ListFindings(ctx, in, s.counted("ListFindings"))
		if err != nil {
			return fmt.Errorf("ListFindings: %w", err)
		}
		c.AddResponses(1)
		if len(lf.FindingIds) == 0 {
			if token = lf.NextToken; aws.ToString(token) == "" {
				return nil
			}
			continue
		}
		next, emitted, err := s.page(ctx, out, c, d, led, pos, lf.FindingIds, upperMs)
		if err != nil {
			return err
		}
		pos = next
		if emitted == 0 {
			// A page of findings already sent (or updated after this
			// walk's bound): only the token leads past them.
			if token = lf.NextToken; aws.ToString(token) == "" {
				return nil
			}
			continue
		}
		token = nil
		if aws.ToString(lf.NextToken) == "" && len(lf.FindingIds) < PageSize {
			return nil
		}
	}
	return nil
}

// page reads the findings ids (one GetFindings call, ≤ 50 IDs) and emits,
// oldest update first, those pos has not passed, as one batch whose
// delivery moves the detector's cursor. It returns the position after the
// page and how many findings it emitted.
func (s *Source) page(ctx context.Context, out pipeline.Emitter, c *stats.Cycle, d *detector, led *ledger, pos Cursor, ids []string, upperMs int64) (Cursor, int, error) {
	gf, err := s.o.Client.GetFindings(ctx, &guardduty.GetFindingsInput{DetectorId: aws.String(d.id), FindingIds: ids}, s.counted("GetFindings"))
	if err != nil {
		return pos, 0, fmt.Errorf("GetFindings: %w", err)
	}
	c.AddResponses(1)
	type item struct {
		f  *gdtypes.Finding
		ms int64
		ok bool // updatedAt readable
	}
	items := make([]item, 0, len(gf.Findings))
	for i := range gf.Findings {
		f := &gf.Findings[i]
		c.AddReceived(1)
		t, err := time.Parse(time.RFC3339Nano, aws.ToString(f.UpdatedAt))
		if err != nil {
			// Without updatedAt the cursor cannot place it: sent as it
			// is, without moving the cursor.
			s.log.Warn("finding without a readable updatedAt, sent without moving the cursor", "detector", d.id, "finding", aws.ToString(f.Id), "updated_at", aws.ToString(f.UpdatedAt))
			items = append(items, item{f: f, ms: pos.UpdatedAt})
			continue
		}
		items = append(items, item{f, t.UnixMilli(), true})
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.ms, b.ms) })

	next := pos.clone()
	var pg *page // set before Close, so before the callback can run
	b := pipeline.NewBatch(func(r pipeline.Result) {
		if pg != nil {
			led.settle(pg, r.OK())
		}
	})
	now := s.now()
	tg := s.tags.Tag(s.svc.DefaultEventType)
	emitted := 0
	var emitErr error
	for _, it := range items {
		id := aws.ToString(it.f.Id)
		if it.ok && it.ms > upperMs {
			// Updated after the walk listed it: the next walk reads
			// the new version.
			continue
		}
		if it.ok && (pos.has(id, it.ms) || (it.ms == next.UpdatedAt && slices.Contains(next.IDs, id))) {
			c.AddDuplicated(1)
			continue
		}
		raw, err := appendPascal(make([]byte, 0, 2048), reflect.ValueOf(it.f))
		if err == nil {
			raw, err = jsonpay.Append(make([]byte, 0, len(raw)+40), raw, c.ID)
		}
		if err != nil {
			c.AddDropped(1)
			s.log.Error("finding not rendered, dropped", "detector", d.id, "finding", id, "err", err)
			continue
		}
		ev := pipeline.NewEvent(b, tg, now, raw)
		ev.Clean = true // compact JSON, valid UTF-8
		c.AddGenerated(1)
		if emitErr = out.Emit(ctx, ev); emitErr != nil {
			break
		}
		emitted++
		if it.ok {
			next.advance(id, it.ms)
		}
	}
	if emitted > 0 || emitErr != nil {
		pg = led.add(next)
	}
	if emitErr != nil {
		b.Fail()
	}
	b.Close()
	if emitErr != nil {
		return pos, emitted, emitErr
	}
	return next, emitted, nil
}

// counted returns a per-call option counting the call in the unit's API
// counters (/metrics), as the pull engine does for its sources.
func (s *Source) counted(op string) func(*guardduty.Options) {
	if s.o.Registry == nil {
		return func(*guardduty.Options) {}
	}
	mw := pullengine.APIOption(nil, s.o.Registry.API(s.o.InputName, s.svc.Name, s.o.Region, "GuardDuty", op))
	return func(o *guardduty.Options) { o.APIOptions = append(o.APIOptions, mw) }
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(timeLayout) }
