package devo

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// Options configure one network output. The caller maps the output's config
// keys onto it (config.md §4); start from DefaultOptions, which holds every
// default, because some zero values are meaningful (GzipThreshold 0 means
// "compress as soon as the queue has any fill", GzipLevel 0 means "store").
// Zero durations and counts are replaced by their defaults in New.
type Options struct {
	Name string // output name, for logs and errors

	Address string // host name or IP; a DNS name is also sent as SNI
	Port    int

	TLS           bool   // false: plain TCP (relay/syslog "type: TCP")
	Chain         string // PEM CA bundle that verifies the server (required with TLS)
	Cert, Key     string // client certificate and key (optional for the syslog family)
	CheckHostname bool   // also match the server certificate against Address

	Hostname string      // HOST field; sanitised with wire.Host
	Format   wire.Format // wire.DevoLine for devo_platform/relay, wire.RFC3164 otherwise

	Connections int // concurrent connections, each taking from the same queue [1]

	ConnectTimeout    time.Duration // dial and TLS handshake [30s]
	SendingTimeout    time.Duration // per write, and for the receiver to acknowledge its bytes [5s]
	InactivityTimeout time.Duration // reconnect before writing after this idle time [30s]
	MaxConnectionAge  time.Duration // reconnect before writing after this age [1h]
	// AckSettle: a write is delivered once the receiver's TCP has
	// acknowledged its last byte and the connection is still alive this
	// long after that acknowledgement was seen (without a readable
	// acknowledgement, outside Linux: this long after the write) [100ms].
	AckSettle time.Duration
	// ProbeTimeout caps the start-up probe: a new connection is healthy
	// once nothing was read for max(250 ms, 4 × its connect and handshake
	// time), and at most this long [2s].
	ProbeTimeout time.Duration

	ConnectRetries        int           // attempts that follow the exponential schedule, then the cap [5]
	ConnectBackoffInitial time.Duration // [2s]
	ConnectBackoffMax     time.Duration // [60s]
	SendRetries           int           // [5]
	SendBackoffInitial    time.Duration // [2s]
	SendBackoffMax        time.Duration // [60s]

	// GzipThreshold selects compressed mode (devo-output.md §6): negative is
	// always, above 1 never, otherwise when the mean of the last 1000 queue
	// fill samples reaches it.
	GzipThreshold     float64
	GzipLevel         int           // 0–9
	GzipBuffer        int           // flush a member when the buffer grows larger than this [51200]
	GzipFlushInterval time.Duration // flush a partial member after this [10s]

	// QueueMaxMessages and QueueMaxBytes, when positive, replace the
	// queue's own bounds (pipeline.Queue.Bounds) in the fill ratio that
	// drives gzip mode and spooling while down. Leave them 0 normally.
	QueueMaxMessages int
	QueueMaxBytes    int64

	BufferSize int // plain-mode write buffer [64 KiB]
	BatchSize  int // events taken from the queue at once [512]

	// Spool, when set, holds events the output cannot send (see Spool).
	Spool Spool
	// Journal, when set, is the write-ahead journal: events with WriteAhead
	// are appended to it when taken from the queue, reported Delivered once
	// it returns, and sent from it in order. Without it they are sent like
	// any other event.
	Journal Journal
	// SpoolAfter is how long the output must be down with a full queue
	// before events go to the spool [5s].
	SpoolAfter time.Duration

	Logger *slog.Logger // [slog.Default()]
}

// DefaultOptions returns the documented defaults for a Devo line output.
func DefaultOptions() Options {
	return Options{
		TLS:                   true,
		Format:                wire.DevoLine,
		Connections:           1,
		ConnectTimeout:        30 * time.Second,
		SendingTimeout:        5 * time.Second,
		InactivityTimeout:     30 * time.Second,
		MaxConnectionAge:      time.Hour,
		AckSettle:             100 * time.Millisecond,
		ProbeTimeout:          2 * time.Second,
		ConnectRetries:        5,
		ConnectBackoffInitial: 2 * time.Second,
		ConnectBackoffMax:     60 * time.Second,
		SendRetries:           5,
		SendBackoffInitial:    2 * time.Second,
		SendBackoffMax:        60 * time.Second,
		GzipThreshold:         1.1,
		GzipLevel:             6,
		GzipBuffer:            51200,
		GzipFlushInterval:     10 * time.Second,
		BufferSize:            64 << 10,
		BatchSize:             512,
		SpoolAfter:            5 * time.Second,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt(&o.Connections, d.Connections)
	setDur(&o.ConnectTimeout, d.ConnectTimeout)
	setDur(&o.SendingTimeout, d.SendingTimeout)
	setDur(&o.InactivityTimeout, d.InactivityTimeout)
	setDur(&o.MaxConnectionAge, d.MaxConnectionAge)
	setDur(&o.AckSettle, d.AckSettle)
	setDur(&o.ProbeTimeout, d.ProbeTimeout)
	setInt(&o.ConnectRetries, d.ConnectRetries)
	setDur(&o.ConnectBackoffInitial, d.ConnectBackoffInitial)
	setDur(&o.ConnectBackoffMax, d.ConnectBackoffMax)
	setInt(&o.SendRetries, d.SendRetries)
	setDur(&o.SendBackoffInitial, d.SendBackoffInitial)
	setDur(&o.SendBackoffMax, d.SendBackoffMax)
	setInt(&o.GzipBuffer, d.GzipBuffer)
	setDur(&o.GzipFlushInterval, d.GzipFlushInterval)
	setInt(&o.BufferSize, d.BufferSize)
	setInt(&o.BatchSize, d.BatchSize)
	setDur(&o.SpoolAfter, d.SpoolAfter)
	if o.GzipLevel < 0 || o.GzipLevel > 9 {
		o.GzipLevel = d.GzipLevel
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Spool is the durable store for events the output cannot send
// (internal/spool satisfies it).
type Spool interface {
	// Append stores evs durably: when it returns nil they are fsync'd, and
	// the output reports them Delivered. It may be called while Replay runs.
	Append(evs []*pipeline.Event) error
	// ReplayWindow hands the stored events to send, oldest first, in
	// chunks, with up to window chunks (and about maxBytes) in flight. send
	// returns a wait function for the chunk's fate. Chunks are removed in
	// order as they are delivered; the first failure stops the replay and
	// keeps that chunk and the rest. It returns the failure or its own error.
	ReplayWindow(ctx context.Context, window int, maxBytes int64, send func([]*pipeline.Event) (wait func() error)) error
	// Len is the number of stored events.
	Len() int64
}

// Journal is the write-ahead journal (internal/spool satisfies it).
type Journal interface {
	// Append stores evs durably, as Spool.Append.
	Append(evs []*pipeline.Event) error
	// Follow sends the stored events, oldest first, with a window of chunks
	// in flight, and keeps sending what is appended (checking whenever more
	// yields) until ctx ends; see Spool.ReplayWindow for send.
	Follow(ctx context.Context, window int, maxBytes int64, more <-chan struct{}, send func([]*pipeline.Event) (wait func() error)) error
	// Len is the number of stored events.
	Len() int64
}

// AuthError is the server rejecting the client certificate: a certificate
// alert during the handshake or inside the start-up probe (devo-output.md
// §15.3). At process start it is fatal.
type AuthError struct {
	Address   string
	Port      int
	Alert     string // the TLS alert as Go reports it
	Cert, Key string // the files, empty when no client certificate is set
}

func (e *AuthError) Error() string {
	files := "no client certificate configured"
	if e.Cert != "" {
		files = fmt.Sprintf("client certificate %q, key %q", e.Cert, e.Key)
	}
	return fmt.Sprintf("OutputConnectionError(1): Client certificate rejected by \"%s:%d\": %s (%s)",
		e.Address, e.Port, e.Alert, files)
}
