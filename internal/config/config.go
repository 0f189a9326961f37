// Package config loads the collector's configuration file (YAML or JSON in
// Devo's shape), applies the defaults of spec/config.md, and validates it
// against the product's error catalogue, reporting every problem in one pass.
//
// Validation never touches the network; reaching AWS and the outputs is the
// job of an explicit check elsewhere.
package config

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// Config is a loaded configuration with every default applied.
type Config struct {
	Path     string   // absolute path of the file
	Dir      string   // <base>: the parent of the file's directory when that is named "config", else the file's directory
	Warnings []string // unknown keys and ignored settings, each naming its key path

	Globals Globals
	Outputs []*Output // sorted by name; a single console output when none is configured
	Inputs  []*Input  // the "aws" input

	problems Errors // found while decoding (wrong types); Validate adds them
}

// Globals are the collector-wide settings (spec config.md §3).
type Globals struct {
	ID, Name       string
	PersistenceDir string // absolute
	Debug          bool   // debug || debug_status
	LogFormat      string // extension log_format: "text" (default) | "json"

	QueueMaxMessages int
	QueueMaxBytes    int64 // queue_max_size_in_mb in bytes
	// InFlightMaxBytes (extension in_flight_max_size_in_mb) bounds the
	// memory of events between their source and their last fate, across
	// all outputs; 0 = unbounded.
	InFlightMaxBytes int64
	// MemoryLimitBytes (extension memory_limit_in_mb) is the Go runtime's
	// soft memory limit; 0 = InFlightMaxBytes + 32 MiB (none when the
	// in-flight bound is off, or when GOMEMLIMIT is set).
	MemoryLimitBytes     int64
	QueueMaxElapsed      time.Duration
	QueueWrapMaxMessages int
	QueueGenerateMetrics bool
	SenderStatsPeriod    time.Duration
	GzipThreshold        float64 // negative: always gzip; above 1: never
	CompressionLevel     int
	CompressionBuffer    int

	GenerateCollectorDetails bool
	InternalGlobalMessages   bool
	MetricsListen            string // extension metrics_listen, e.g. "127.0.0.1:9464"; "" = off

	// Coordination (globals.coordination) shares the API streams of one
	// configuration between several collectors; nil for a collector alone.
	Coordination *Coordination
}

// CoordinationDynamoDB is the only globals.coordination type.
const CoordinationDynamoDB = "dynamodb"

// DefaultLeaseDuration is lease_duration_in_sec when not given.
const DefaultLeaseDuration = 20 * time.Second

// Coordination is globals.coordination: where the shared leases and
// checkpoints live (see docs/coordination.md).
type Coordination struct {
	Type          string // CoordinationDynamoDB
	Table         string // config.table, created on first use
	Region        string // config.region
	EndpointURL   string // config.endpoint_url; "" = AWS's endpoint
	LeaseDuration time.Duration
}

// Output types.
const (
	OutputDevo         = "devo_platform"
	OutputRelay        = "relay"
	OutputInHouseRelay = "in_house_relay"
	OutputSyslog       = "syslog"
	OutputSidecar      = "sidecar"
	OutputConsole      = "console"
	OutputStdout       = "stdout"
)

// Output is one destination (spec config.md §4). Durations given in seconds
// in the file are converted; certificate paths are absolute.
type Output struct {
	Name, Type string
	Address    string
	Port       int
	Transport  string // "SSL" | "TCP"
	Chain      string
	Cert, Key  string

	ConcurrentConnections, ConnectingRetries, SendingRetries int

	ConnectingInitialWait, ConnectingMaxWait time.Duration
	SendingTimeout                           time.Duration
	SendingInitialWait, SendingMaxWait       time.Duration

	CheckHostname bool
	Hostname      string // the HOST field on the wire; the OS host name by default

	HandshakeProbeTimeout, AckSettle, InactivityTimeout, MaxConnectionAge time.Duration

	SpoolMaxBytes int64 // extension spool_max_size_in_mb, default 1024 MiB
	// WriteAhead: extension write_ahead, default true. Events that ask for
	// it (those of FIFO SQS messages) are journaled on disk and count as
	// delivered then; the output sends them from the journal. false makes
	// them wait for ack_settle like any other event, which holds a FIFO
	// message group to about one message per ack_settle.
	WriteAhead bool

	Destination, Format string // console/stdout: destination; format "devo_line" (default) | "json"
}

// Input is the "aws" input (spec config.md §5).
type Input struct {
	Name              string // the key under inputs: "aws"
	ID                string
	Enabled           bool
	RequestsPerSecond float64
	Credentials       Credentials
	Regions           []string
	Environment       string
	EndpointURL       string
	Endpoints         map[string]string // per AWS API: sqs, s3, sts, cloudtrail, cloudwatch, logs, guardduty
	S3ForcePathStyle  bool
	Services          []*Service // sorted by name
}

// CredMode is the authentication mode a credentials block maps to (§6).
type CredMode int

// The authentication modes.
const (
	CredDefaultChain CredMode = iota // empty block: the SDK's default chain
	CredKeys                         // access_key + access_secret
	CredKeysRole                     // the keys assume base_assume_role
	CredCrossAccount                 // own identity → base_assume_role → target_assume_role
)

func (m CredMode) String() string {
	switch m {
	case CredDefaultChain:
		return "default chain"
	case CredKeys:
		return "access key"
	case CredKeysRole:
		return "assume role (same account)"
	case CredCrossAccount:
		return "assume role (cross-account)"
	}
	return fmt.Sprintf("CredMode(%d)", int(m))
}

// Credentials authenticate the input. Its String, GoString and LogValue
// never print AccessSecret.
type Credentials struct {
	AccessKey, AccessSecret          string
	BaseAssumeRole, TargetAssumeRole string
	ExternalID                       string
	Mode                             CredMode
}

func (c Credentials) String() string {
	s := "mode=" + c.Mode.String()
	if c.AccessKey != "" {
		s += " access_key=" + maskKey(c.AccessKey)
	}
	if c.AccessSecret != "" {
		s += " access_secret=REDACTED"
	}
	if c.BaseAssumeRole != "" {
		s += " base_assume_role=" + c.BaseAssumeRole
	}
	if c.TargetAssumeRole != "" {
		s += " target_assume_role=" + c.TargetAssumeRole
	}
	if c.ExternalID != "" {
		s += " assume_role_external_id=REDACTED"
	}
	return s
}

// GoString keeps %#v from printing the secret.
func (c Credentials) GoString() string { return "config.Credentials{" + c.String() + "}" }

// LogValue keeps slog from printing the secret.
func (c Credentials) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("mode", c.Mode.String())}
	if c.AccessKey != "" {
		attrs = append(attrs, slog.String("access_key", maskKey(c.AccessKey)))
	}
	if c.BaseAssumeRole != "" {
		attrs = append(attrs, slog.String("base_assume_role", c.BaseAssumeRole))
	}
	if c.TargetAssumeRole != "" {
		attrs = append(attrs, slog.String("target_assume_role", c.TargetAssumeRole))
	}
	return slog.GroupValue(attrs...)
}

// maskKey keeps the last four characters of an access key id, enough to
// tell keys apart in logs.
func maskKey(k string) string {
	if len(k) <= 4 {
		return "****"
	}
	return "****" + k[len(k)-4:]
}

// Pattern maps an S3 object key to an event type (tags.md §4.3).
type Pattern = tag.Pattern

// Service is one entry of inputs.aws.services with defaults applied.
//
// The settings every kind has are fields of Service; the settings of a kind
// or family are its own typed struct, embedded so that a source reads them
// as svc.QueueName or svc.TimeSlot. The struct of a kind that does not run
// the service stays zero.
type Service struct {
	Name   string
	Custom bool // a key that is not a predefined service
	Kind   ServiceKind
	Types  []string // effective types, e.g. [audits_api] or [flowlogs cloudfrontlogs]

	Tag         string // the user's override, "" if none
	TagTemplate string // effective template: the override, or the built-in base (+".{environment}" when the input sets one)

	DefaultEventType string         // the event type when nothing is derived
	EventTypeField   string         // record field the event type is derived from (tags.md §4)
	EventTypeRegex   *regexp.Regexp // its capture group 1 is the event type
	AutoEventType    bool           // effective: derive the event type per event (always true for cisco-umbrella)

	StartTime     string        // as written; "" when absent or when the kind takes none
	RequestPeriod time.Duration // request_period_in_seconds, default 60 s

	Regions   []string          // effective: the service's override or the input's
	Endpoints map[string]string // effective per-API endpoints (service map over input map over endpoint_url)

	SQSSettings        // kinds that read an SQS queue (ServiceKind.SQS)
	CloudTrailSettings // audit-events-all, both types
	S3Settings         // non-cloudwatch-logs and cisco-umbrella
	LogsSettings       // custom logs
	MetricsSettings    // metrics-all, ec2, custom metrics

	bad map[string]bool // keys whose type was already reported while decoding
}

// Deriver returns the event-type derivation of the service (tags.md §4.1–4.2).
func (s *Service) Deriver() *tag.Deriver {
	return &tag.Deriver{Field: s.EventTypeField, Re: s.EventTypeRegex, Default: s.DefaultEventType}
}
