// Package s3sqs is the source of the services that read S3 objects announced
// on an SQS queue: audit-events-all with types [audits_s3] (CloudTrail log
// files), non-cloudwatch-logs (VPC Flow Logs and CloudFront standard logs)
// and cisco-umbrella (Umbrella CSV exports).
//
// The shared SQS engine receives the messages, keeps them invisible while
// they are worked on and gives each one its fate; this package is the
// engine's Handler. For every message it parses the notification
// (format/s3notify), streams each announced object from S3 (gzip detected by
// its magic bytes, never held whole in memory, capped after decompression),
// reads it with the matching format reader and emits one tagged event per
// record or line into the message's batch. A message is deleted only when
// every event of every object it names has been delivered.
//
// Fates, per object (docs/services/*.md repeat them for operators):
//   - zero-byte object, skipped key (CloudTrail digest, Config check,
//     Parquet), file of no known format, no Records array: no events, the
//     message is deleted; the file is counted as discarded (or empty);
//   - object gone (NoSuchKey): counted, nothing emitted, deleted;
//   - S3 refuses or fails (AccessDenied, throttling, network): an ERROR line
//     naming bucket and key, the message returns to the queue;
//   - corrupt gzip, truncated or invalid JSON, a file that ends inside a
//     quoted field, a decompressed size above the cap: the events read before
//     the error were emitted, the batch is failed and the message is marked
//     poison, so it is retried and finally removed (or left to the queue's
//     dead-letter queue) after max_receive_count receives.
package s3sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqssource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// S3Client is the part of the S3 API the source uses, with the SDK's
// signature: *s3.Client satisfies it, tests fake it.
type S3Client interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ S3Client = (*s3.Client)(nil)

// DefaultMaxObjectBytes is the post-decompression cap per object when
// Options.MaxObjectBytes is 0. The largest legitimate files are VPC Flow Logs
// (up to 75 MB of gzip, about 1 GiB of text at the usual 10–15× ratio);
// 2 GiB leaves room for them and stops a gzip bomb after a bounded amount of
// work. Memory does not depend on it: objects are streamed.
const DefaultMaxObjectBytes = 2 << 30

// Options build a Source. Service, SQS, S3 and AccountID are required.
type Options struct {
	Service   *config.Service
	Region    string // the queue's region, and the tag's {region_id}
	InputName string

	SQS sqsengine.Client
	// S3 returns the client for a bucket's region (the record's awsRegion,
	// else Region).
	S3 func(region string) S3Client
	// AccountID returns the effective session's account for {account_id};
	// it is called once per Run until it succeeds.
	AccountID   func(ctx context.Context) (string, error)
	Environment string

	// Log is the unit's logger, already scoped with input, service and
	// region by the app; nil discards.
	Log   *slog.Logger
	Stats *stats.Unit // may be nil

	// MaxObjectBytes caps the decompressed size of one object
	// [DefaultMaxObjectBytes]. An object above it is poison.
	MaxObjectBytes int64
	// Workers is the number of messages handled at once [10].
	Workers int
	// MaxInFlight bounds messages received and not yet settled [10 × Workers].
	MaxInFlight int
	// CycleInterval is how often the pull-cycle line is logged, and the
	// lifetime of one @devo_pulling_id [60s].
	CycleInterval time.Duration
	// Tune, when set, may adjust the engine's configuration after the
	// service's settings were applied (tests shorten backoffs with it).
	Tune func(*sqsengine.Config)
}

// Counters are the source's running totals, beyond the unit's
// received/generated/dropped. Read them with Load at any time.
type Counters struct {
	Messages       atomic.Int64 // messages handled
	TestEvents     atomic.Int64 // s3:TestEvent messages (deleted)
	Ignored        atomic.Int64 // notification records that are not ObjectCreated
	BadMessages    atomic.Int64 // bodies that are not JSON or not a notification (poison)
	Objects        atomic.Int64 // objects announced as created
	EmptyObjects   atomic.Int64 // zero-byte objects (announced or read)
	MissingObjects atomic.Int64 // NoSuchKey: the object was gone
	Skipped        atomic.Int64 // keys skipped unread (digests, Config checks, Parquet)
	Discarded      atomic.Int64 // files read and found to be of no known format
	ReadErrors     atomic.Int64 // GetObject or transport failures (message returned)
	Corrupt        atomic.Int64 // corrupt gzip or invalid/truncated content (poison)
	TooLarge       atomic.Int64 // objects above MaxObjectBytes once decompressed (poison)
	Events         atomic.Int64 // events emitted
	Dropped        atomic.Int64 // records dropped (drop_event_names, over-long lines)
}

// Source reads one service's queue in one region: the shared SQS skeleton
// (sqssource.Unit) with this package's handler. It implements
// pipeline.Source; Run may be called again after it returns.
type Source struct {
	*sqssource.Unit
	o    Options
	svc  *config.Service
	kind config.ServiceKind
	log  *slog.Logger

	counters Counters

	warnMu sync.Mutex
	warned map[string]struct{}
}

// maxWarned bounds the memory of "warn once" keys (flow-log IDs).
const maxWarned = 4096

// New validates the options and builds the source. It does not touch the
// network.
func New(o Options) (pipeline.Source, error) {
	return newSource(o)
}

func newSource(o Options) (*Source, error) {
	var errs []error
	if o.Service == nil {
		return nil, errors.New("s3sqs: nil service")
	}
	svc := o.Service
	switch svc.Kind {
	case config.CloudTrailS3, config.S3Logs, config.Umbrella:
	default:
		errs = append(errs, fmt.Errorf("s3sqs: service %s is a %s service, not an S3+SQS one", svc.Name, svc.Kind))
	}
	if o.S3 == nil {
		errs = append(errs, errors.New("s3sqs: nil S3 client factory"))
	}
	if err := checkTemplates(svc); err != nil {
		errs = append(errs, err)
	}
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Source{o: o, svc: svc, kind: svc.Kind, log: o.Log, warned: map[string]struct{}{}}
	u, err := sqssource.New(sqssource.Options{
		Service: svc, Region: o.Region, InputName: o.InputName, SQS: o.SQS,
		AccountID: o.AccountID, Environment: o.Environment, Log: o.Log, Stats: o.Stats,
		Workers: o.Workers, MaxInFlight: o.MaxInFlight, CycleInterval: o.CycleInterval, Tune: o.Tune,
	}, sqssource.S3Lines, s)
	if err != nil {
		errs = append(errs, fmt.Errorf("s3sqs: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	s.Unit = u
	return s, nil
}

// checkTemplates compiles the templates the service will expand, so a bad
// one fails at construction and not on the first object.
func checkTemplates(svc *config.Service) error {
	if svc.Kind == config.S3Logs {
		if len(svc.TypeTagTemplates) == 0 {
			return fmt.Errorf("s3sqs: service %s has no per-type tag templates", svc.Name)
		}
		for typ, t := range svc.TypeTagTemplates {
			if _, err := tag.Compile(t); err != nil {
				return fmt.Errorf("s3sqs: service %s type %s: %w", svc.Name, typ, err)
			}
		}
		return nil
	}
	if _, err := tag.Compile(svc.TagTemplate); err != nil {
		return fmt.Errorf("s3sqs: service %s: %w", svc.Name, err)
	}
	return nil
}

// Counters returns the source's running totals.
func (s *Source) Counters() *Counters { return &s.counters }

// warnOnce reports whether key has not been warned about yet, and remembers
// it (up to maxWarned keys; past that every key warns, which is still
// bounded by the number of objects).
func (s *Source) warnOnce(key string) bool {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if _, ok := s.warned[key]; ok {
		return false
	}
	if len(s.warned) < maxWarned {
		s.warned[key] = struct{}{}
	}
	return true
}
