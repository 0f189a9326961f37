// Package selflog delivers the collector's own log records to the outputs,
// as the reference collector's internal senders do (devo-output.md §13):
// each record becomes an event tagged devo.collectors.out.local.<level>
// whose payload is the §13 JSON object.
//
// Handler wraps the process's normal slog handler and passes every record
// on to it unchanged; records at or above the delivery level are also
// encoded and kept in a small ring buffer. Logging never waits for the
// outputs: when the ring is full the oldest record is dropped and counted.
// Run moves records from the ring to the outputs without ever waiting on a
// full queue, so internal messages never hold up or displace data events;
// records that find the outputs full stay in the ring and are retried.
//
// Level names follow Python's logging, which the reference uses: debug,
// info, warning, error, and critical for levels at slog.LevelError+4 and
// above.
package selflog

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// TagPrefix starts the tag of every internal message sent to the
// customer's own domain.
const TagPrefix = "devo.collectors.out.local."

// Defaults of Options.
const (
	DefaultBuffer        = 1024
	DefaultRetryInterval = 250 * time.Millisecond
)

// timeLayout is §13's %Y-%m-%dT%H:%M:%S.%fZ: microseconds, always UTC.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// localKey marks a context whose log records stay local.
type localKey struct{}

// Local is the context for log calls whose records go to the process's own
// log only, never to the outputs, whatever the level: an output's per-write
// DEBUG line, were it delivered, would cause the next write, whose line
// would cause the next, without end.
var Local = context.WithValue(context.Background(), localKey{}, true)

// Options configure a Handler.
type Options struct {
	// CollectorName, CollectorVersion and CollectorImage identify the
	// running collector in every payload.
	CollectorName, CollectorVersion, CollectorImage string
	// Level is the lowest level delivered to the outputs. The zero value is
	// slog.LevelInfo.
	Level slog.Level
	// Debug also delivers DEBUG records (globals.debug).
	Debug bool
	// Buffer is how many records wait for the outputs at most
	// [DefaultBuffer].
	Buffer int
	// RetryInterval is how long Run waits before offering a record again
	// after the outputs had no room [DefaultRetryInterval].
	RetryInterval time.Duration
}

// Stats are a Handler's counters.
type Stats struct {
	Buffered int64 // records waiting for the outputs
	Dropped  int64 // records dropped because the buffer was full
	Emitted  int64 // records handed to every output
}

// Handler is an slog.Handler that tees records to the outputs. Handlers
// derived with WithAttrs and WithGroup share the buffer and counters.
type Handler struct {
	next slog.Handler
	core *core

	// Accumulated by WithAttrs/WithGroup.
	prefix  string // open groups, "a.b." (attributes inside go to msg only)
	text    []byte // " key=value" pairs of the logger's attributes
	input   string
	service string
	unit    string
}

// core is what every derived Handler shares.
type core struct {
	o   Options
	min slog.Level

	mu   sync.Mutex
	ring []*pipeline.Event
	head int
	n    int
	held int // 1 while Run holds a record it took out of the ring

	wake    chan struct{}
	dropped atomic.Int64
	emitted atomic.Int64
}

// New returns a Handler that passes every record to next and delivers
// those at or above the delivery level once Run runs. Records logged before
// Run starts wait in the buffer.
func New(next slog.Handler, o Options) *Handler {
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	lowest := o.Level
	if o.Debug {
		lowest = slog.LevelDebug
	}
	return &Handler{next: next, core: &core{
		o:    o,
		min:  lowest,
		ring: make([]*pipeline.Event, o.Buffer),
		wake: make(chan struct{}, 1),
	}}
}

// Stats returns the counters.
func (h *Handler) Stats() Stats {
	c := h.core
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Buffered: int64(c.n + c.held), Dropped: c.dropped.Load(), Emitted: c.emitted.Load()}
}

// Enabled reports whether the next handler or the outputs want level l.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.core.min || h.next.Enabled(ctx, l)
}

// Handle passes r to the next handler if it is enabled for r's level, and
// queues r for the outputs if r is at or above the delivery level and ctx
// is not derived from Local. It returns the next handler's error.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if h.next.Enabled(ctx, r.Level) {
		err = h.next.Handle(ctx, r)
	}
	if r.Level >= h.core.min && ctx.Value(localKey{}) == nil {
		h.core.push(h.event(r))
	}
	return err
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	h2 := *h
	h2.next = h.next.WithAttrs(as)
	h2.text = append([]byte(nil), h.text...)
	for _, a := range as {
		h2.text = h2.addAttr(h2.text, h.prefix, a, &h2.input, &h2.service, &h2.unit)
	}
	return &h2
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.next = h.next.WithGroup(name)
	h2.prefix = h.prefix + name + "."
	return &h2
}

// event encodes r as an internal message.
func (h *Handler) event(r slog.Record) *pipeline.Event {
	input, service, unit := h.input, h.service, h.unit
	msg := make([]byte, 0, len(r.Message)+len(h.text)+64)
	msg = append(msg, r.Message...)
	msg = append(msg, h.text...)
	r.Attrs(func(a slog.Attr) bool {
		msg = h.addAttr(msg, h.prefix, a, &input, &service, &unit)
		return true
	})
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	t = t.UTC()
	level := LevelName(r.Level)
	o := &h.core.o

	p := make([]byte, 0, len(msg)+256)
	p = append(p, `{"msg":`...)
	p = wire.AppendJSONString(p, msg)
	p = append(p, `,"time":"`...)
	p = t.AppendFormat(p, timeLayout)
	p = append(p, `","level":"`...)
	p = append(p, level...)
	p = append(p, `","collector_name":`...)
	p = wire.AppendJSONString(p, o.CollectorName)
	p = append(p, `,"collector_version":`...)
	p = wire.AppendJSONString(p, o.CollectorVersion)
	p = append(p, `,"collector_image":`...)
	p = wire.AppendJSONString(p, o.CollectorImage)
	for _, f := range [...]struct{ key, val string }{{"input_name", input}, {"service_name", service}, {"module_name", unit}} {
		if f.val != "" {
			p = append(p, `,"`...)
			p = append(p, f.key...)
			p = append(p, `":`...)
			p = wire.AppendJSONString(p, f.val)
		}
	}
	p = append(p, '}')
	return pipeline.NewEvent(nil, TagPrefix+level, t, p)
}

// addAttr appends a as " key=value" to dst, except the ungrouped input,
// service and unit attributes, which fill their payload fields instead.
// Group values are flattened with dotted keys, as slog's text handler
// does.
func (h *Handler) addAttr(dst []byte, prefix string, a slog.Attr, input, service, unit *string) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		g := a.Value.Group()
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range g {
			dst = h.addAttr(dst, prefix, ga, input, service, unit)
		}
		return dst
	}
	if prefix == "" {
		switch a.Key {
		case "input":
			*input = a.Value.String()
			return dst
		case "service":
			*service = a.Value.String()
			return dst
		case "unit":
			*unit = a.Value.String()
			return dst
		}
	}
	dst = append(dst, ' ')
	dst = append(dst, prefix...)
	dst = append(dst, a.Key...)
	dst = append(dst, '=')
	var v string
	switch a.Value.Kind() {
	case slog.KindTime:
		v = a.Value.Time().UTC().Format(time.RFC3339Nano)
	default:
		v = a.Value.String()
	}
	if needsQuote(v) {
		return strconv.AppendQuote(dst, v)
	}
	return append(dst, v...)
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r <= ' ' || r == '=' || r == '"' || r == 0x7f || r == utf8.RuneError {
			return true
		}
	}
	return false
}

// LevelName is the lower-case Python name of l used in tags and payloads:
// debug, info, warning, error or critical.
func LevelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warning"
	case l < slog.LevelError+4:
		return "error"
	}
	return "critical"
}

// push adds ev to the ring, dropping the oldest record if it is full.
func (c *core) push(ev *pipeline.Event) {
	c.mu.Lock()
	size := len(c.ring)
	if c.n == size {
		c.ring[c.head] = nil
		c.head = (c.head + 1) % size
		c.n--
		c.dropped.Add(1)
	}
	c.ring[(c.head+c.n)%size] = ev
	c.n++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest record, or nil.
func (c *core) pop() *pipeline.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return nil
	}
	ev := c.ring[c.head]
	c.ring[c.head] = nil
	c.head = (c.head + 1) % len(c.ring)
	c.n--
	c.held = 1
	return ev
}

// delivered records that the held record reached every output.
func (c *core) delivered() {
	c.mu.Lock()
	c.held = 0
	c.emitted.Add(1)
	c.mu.Unlock()
}

// TryEmitter is an emitter that can hand an event to the outputs without
// waiting. TryEmit reports whether every output has the event; when it
// returns false it is called again with the same event later, and must not
// queue it twice at any output. Outputs implements it.
type TryEmitter interface {
	TryEmit(ev *pipeline.Event) bool
}

// Run hands buffered records to the outputs through emitter until ctx
// ends, oldest first. It never waits on a full queue: if emitter is a
// TryEmitter it uses TryEmit; otherwise it calls Emit with a context that
// has already ended, which queues only where there is room now. With
// several outputs that fallback may give a record twice to an output that
// had room while another was full; Outputs avoids that. A record that
// found no room is offered again every RetryInterval, ahead of newer ones.
// Records still buffered when ctx ends are not delivered.
func (h *Handler) Run(ctx context.Context, emitter pipeline.Emitter) {
	c := h.core
	try := tryFunc(emitter)
	var cur *pipeline.Event
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if cur == nil {
			cur = c.pop()
		}
		if cur == nil {
			select {
			case <-c.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		if try(cur) {
			cur = nil
			c.delivered()
			continue
		}
		if retry == nil {
			retry = time.NewTimer(c.o.RetryInterval)
		} else {
			retry.Reset(c.o.RetryInterval)
		}
		select {
		case <-retry.C:
		case <-ctx.Done():
			return
		}
	}
}

var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func tryFunc(e pipeline.Emitter) func(*pipeline.Event) bool {
	if t, ok := e.(TryEmitter); ok {
		return t.TryEmit
	}
	return func(ev *pipeline.Event) bool { return e.Emit(ended, ev) == nil }
}

// Outputs is an Emitter over the outputs' queues for internal messages:
// TryEmit queues an event at each output that has room and remembers which
// still lack it, so a full output never makes another one receive the same
// record twice. It is meant for one goroutine (Run) and for events that
// belong to no batch, as internal messages do: unlike the pipeline's Emit it
// registers no pending fates.
type Outputs struct {
	queues []*pipeline.Queue
	cur    *pipeline.Event
	has    []bool
}

// NewOutputs returns an Outputs over the queues of outs.
func NewOutputs(outs []*pipeline.Output) *Outputs {
	o := &Outputs{has: make([]bool, len(outs))}
	for _, out := range outs {
		o.queues = append(o.queues, out.Queue)
	}
	return o
}

// Emit implements pipeline.Emitter: it waits while a queue is full, like
// the pipeline's.
func (o *Outputs) Emit(ctx context.Context, ev *pipeline.Event) error {
	o.track(ev)
	for i, q := range o.queues {
		if o.has[i] {
			continue
		}
		if err := q.Put(ctx, ev); err != nil && err != pipeline.ErrClosed {
			return err
		}
		o.has[i] = true
	}
	o.cur = nil
	return nil
}

// TryEmit implements TryEmitter. A closed queue counts as having the event:
// it will never take it, and the record must not wait for it forever.
func (o *Outputs) TryEmit(ev *pipeline.Event) bool {
	return o.Emit(ended, ev) == nil
}

func (o *Outputs) track(ev *pipeline.Event) {
	if o.cur != ev {
		o.cur = ev
		clear(o.has)
	}
}
