package awsapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi/sdkhttp"
)

// API names: the keys of Options.Endpoints (the config's endpoints map).
const (
	APISQS        = "sqs"
	APIS3         = "s3"
	APISTS        = "sts"
	APICloudTrail = "cloudtrail"
	APICloudWatch = "cloudwatch"
	APILogs       = "logs"
	APIGuardDuty  = "guardduty"
)

// Defaults of the Options durations.
const (
	DefaultExpiryWindow   = 5 * time.Minute
	DefaultRenewalBackoff = time.Second
	// roleDuration is asked for every AssumeRole. One hour is the most a
	// chained role may have and what every role allows by default.
	roleDuration = time.Hour
	// defaultSTSRegion serves STS when neither Options nor the environment
	// name a region.
	defaultSTSRegion = "us-east-1"
)

// Options is everything a Session needs, mapped by the caller from the
// input's configuration. Only the fields of the chosen Mode are used.
type Options struct {
	InputID string // names the role session: devo-aws-collector-<InputID>
	Mode    Mode

	AccessKey, AccessSecret string // Keys, KeysRole
	BaseAssumeRole          string // KeysRole, CrossAccount
	TargetAssumeRole        string // CrossAccount
	ExternalID              string // the ExternalId of the last AssumeRole; optional

	// Region serves STS and is the default region of Config("").
	Region string
	// EndpointURL is one base URL for every API; an entry of Endpoints (keys
	// APISQS, APIS3, …) wins over it.
	EndpointURL string
	Endpoints   map[string]string
	// S3ForcePathStyle selects path-style S3 addressing. It is implied by an
	// S3 endpoint override.
	S3ForcePathStyle bool

	// RequestsPerSecond paces the calls of each (region, API) of the
	// low-quota query APIs: CloudWatch Logs, CloudWatch metrics, GuardDuty
	// and CloudTrail (which is further capped at LookupEvents' 2 per
	// second). SQS, S3 and STS calls never wait on it. Zero means
	// DefaultRequestsPerSecond.
	RequestsPerSecond float64
	// OnAPICall, when set, is called once per AWS request sent through
	// Config and the typed clients, every SDK retry included, with the
	// service id ("SQS", "S3", …), the operation ("ReceiveMessage") and the
	// request's error (nil on success). It must be quick and safe for
	// concurrent use.
	OnAPICall func(service, operation string, err error)
	// HTTPClient replaces the SDK's client (which honours HTTP_PROXY,
	// HTTPS_PROXY, NO_PROXY and AWS_CA_BUNDLE). Optional; its own transport
	// settings then apply instead.
	HTTPClient *http.Client
	// RetryMaxAttempts overrides the SDK's attempts per call when > 0.
	RetryMaxAttempts int
	Logger           *slog.Logger

	// ExpiryWindow is how long before expiry temporary credentials are
	// renewed; zero means DefaultExpiryWindow (5 minutes). Tests shorten it.
	ExpiryWindow time.Duration
	// RenewalBackoff is the first wait after a failed renewal, doubled per
	// failure up to a minute; zero means DefaultRenewalBackoff.
	RenewalBackoff time.Duration
}

// Session is one input's access to AWS: one identity, hence one account.
// It is safe for concurrent use; clients built from it share its
// credentials cache and rate limiters.
type Session struct {
	opts   Options
	log    *slog.Logger
	base   aws.Config // Region = the STS region; Credentials = the final identity
	roles  []string   // assumed, in order
	health *healthBoard
	limits *limits

	acct    chan struct{} // a one-slot lock that waits with a context
	account string
}

// NewSession builds the credentials of o.Mode and, for every mode except
// Keys, obtains them once (assuming the roles), so that a wrong key, role or
// external id fails here rather than at the first collection.
func NewSession(ctx context.Context, o Options) (*Session, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	window := o.ExpiryWindow
	if window <= 0 {
		window = DefaultExpiryWindow
	}
	retry := o.RenewalBackoff
	if retry <= 0 {
		retry = DefaultRenewalBackoff
	}
	cacheOpts := func(c *aws.CredentialsCacheOptions) { c.ExpiryWindow = window }

	load := []func(*config.LoadOptions) error{config.WithCredentialsCacheOptions(cacheOpts)}
	if o.Region != "" {
		load = append(load, config.WithRegion(o.Region))
	}
	if o.RetryMaxAttempts > 0 {
		load = append(load, config.WithRetryMaxAttempts(o.RetryMaxAttempts))
	}
	if o.Mode == Keys || o.Mode == KeysRole {
		load = append(load, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.AccessKey, o.AccessSecret, "")))
	}
	if o.Mode == Keys {
		log.Info("Session cannot expire. Using user/profile authentication.")
		log.Info("Creating user session")
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("load aws configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultSTSRegion
	}
	if o.HTTPClient != nil {
		// Set after loading: the loader refuses a plain *http.Client when
		// AWS_CA_BUNDLE is set, and a caller's client owns its TLS settings.
		cfg.HTTPClient = o.HTTPClient
	}
	// Every client: see sdkhttp for the answers it keeps from being lost.
	cfg.HTTPClient = sdkhttp.Wrap(cfg.HTTPClient)

	s := &Session{
		opts:   o,
		log:    log,
		health: &healthBoard{},
		limits: newLimits(o.RequestsPerSecond),
		acct:   make(chan struct{}, 1),
	}
	assume := func(from aws.Config, role, externalID string) aws.CredentialsProvider {
		client := sts.NewFromConfig(from, s.stsEndpoint)
		ar := stscreds.NewAssumeRoleProvider(client, role, func(a *stscreds.AssumeRoleOptions) {
			a.RoleSessionName = sessionName(o.InputID)
			a.Duration = roleDuration
			if externalID != "" {
				a.ExternalID = aws.String(externalID)
			}
		})
		log.Info("assuming role", "role_arn", role, "session_name", sessionName(o.InputID), "external_id_set", externalID != "")
		s.roles = append(s.roles, role)
		return aws.NewCredentialsCache(&roleProvider{
			role: role, next: ar, log: log, health: s.health,
			backoff: backoff{base: retry, max: max(time.Minute, retry)}, now: time.Now,
		}, cacheOpts)
	}

	switch o.Mode {
	case Keys:
	case DefaultChain:
		log.Info("using the default aws credential chain")
		cfg.Credentials = &chainProvider{next: cfg.Credentials, log: log, health: s.health}
	case KeysRole:
		cfg.Credentials = assume(cfg, o.BaseAssumeRole, o.ExternalID)
	case CrossAccount:
		base := cfg.Copy()
		base.Credentials = &chainProvider{next: cfg.Credentials, log: log, health: s.health}
		base.Credentials = assume(base, o.BaseAssumeRole, "")
		cfg.Credentials = assume(base, o.TargetAssumeRole, o.ExternalID)
	}
	s.base = cfg

	if o.Mode != Keys {
		if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
			return nil, fmt.Errorf("obtain %s credentials: %w", o.Mode, err)
		}
	}
	log.Info("New AWS session started.")
	return s, nil
}

func (o Options) check() error {
	var errs []error
	need := func(name, v string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s credentials need %s", o.Mode, name))
		}
	}
	switch o.Mode {
	case DefaultChain:
	case Keys:
		need("access_key", o.AccessKey)
		need("access_secret", o.AccessSecret)
	case KeysRole:
		need("access_key", o.AccessKey)
		need("access_secret", o.AccessSecret)
		need("base_assume_role", o.BaseAssumeRole)
	case CrossAccount:
		need("base_assume_role", o.BaseAssumeRole)
		need("target_assume_role", o.TargetAssumeRole)
	default:
		errs = append(errs, fmt.Errorf("unknown credentials mode %d", int(o.Mode)))
	}
	return errors.Join(errs...)
}

var sessionNameInvalid = regexp.MustCompile(`[^\w+=,.@-]`)

// sessionName is the RoleSessionName: devo-aws-collector-<input id>, with
// characters STS refuses replaced by "_" and cut to STS's 64.
func sessionName(inputID string) string {
	n := "devo-aws-collector-" + sessionNameInvalid.ReplaceAllString(inputID, "_")
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// Mode is the credentials mode the Session was built with.
func (s *Session) Mode() Mode { return s.opts.Mode }

// Health is Degraded while renewing credentials fails (each failure is
// logged at ERROR with the role ARN, and retried with backoff), and Healthy
// again after the next success.
func (s *Session) Health() Health {
	h, _ := s.health.state()
	return h
}

// HealthError is why the Session is degraded, nil when healthy. It names the
// role ARNs; it never holds a secret.
func (s *Session) HealthError() error {
	_, err := s.health.state()
	return err
}

// AccountID is the account of the Session's identity, from one STS
// GetCallerIdentity the first time it is asked; a failure is not cached.
func (s *Session) AccountID(ctx context.Context) (string, error) {
	select {
	case s.acct <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.acct }()
	if s.account != "" {
		return s.account, nil
	}
	out, err := s.STS("").GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("get caller identity: %w", err)
	}
	s.account = aws.ToString(out.Account)
	return s.account, nil
}

// Describe is a one-line account of the Session for validate --check: mode,
// account id, and the roles assumed. It never includes a key or secret.
func (s *Session) Describe(ctx context.Context) (string, error) {
	var b strings.Builder
	b.WriteString(s.opts.Mode.String())
	account, err := s.AccountID(ctx)
	if err != nil {
		account = "unknown"
	}
	fmt.Fprintf(&b, " account=%s", account)
	if len(s.roles) > 0 {
		fmt.Fprintf(&b, " roles=%s", strings.Join(s.roles, ","))
	}
	return b.String(), err
}

// Config is an SDK configuration for region ("" means Options.Region): the
// Session's credentials, HTTP client and retry settings, with the rate
// limiter on every operation of the limited APIs (see RequestsPerSecond). Endpoint overrides are per client; use the
// typed constructors below, which apply them.
func (s *Session) Config(region string) aws.Config {
	cfg := s.base.Copy()
	if region != "" {
		cfg.Region = region
	}
	cfg.APIOptions = append(slices.Clip(s.base.APIOptions), s.limits.apiOption)
	if s.opts.OnAPICall != nil {
		cfg.APIOptions = append(cfg.APIOptions, callCounter(s.opts.OnAPICall))
	}
	cfg.Logger = sdkLogger{s.log}
	return cfg
}

// sdkLogger routes the SDK's own log lines (for example "Response has no
// supported checksum" from S3-compatible stores) into the collector's
// logger at DEBUG, instead of the SDK's default writer on stderr.
type sdkLogger struct{ log *slog.Logger }

func (l sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	if l.log == nil {
		return
	}
	// "detail", not "msg": a second msg key would shadow the message in
	// JSON logs.
	l.log.Debug("aws sdk", "class", string(c), "detail", fmt.Sprintf(format, v...))
}

// endpoint is the override for api, or nil for the SDK's own resolution.
func (s *Session) endpoint(api string) *string {
	if u := s.opts.Endpoints[api]; u != "" {
		return aws.String(u)
	}
	if s.opts.EndpointURL != "" {
		return aws.String(s.opts.EndpointURL)
	}
	return nil
}

func (s *Session) stsEndpoint(o *sts.Options) {
	if ep := s.endpoint(APISTS); ep != nil {
		o.BaseEndpoint = ep
	}
}

// SQS is an SQS client for region. Options functions run after the
// Session's, so a caller may override anything.
func (s *Session) SQS(region string, optFns ...func(*sqs.Options)) *sqs.Client {
	return sqs.NewFromConfig(s.Config(region), append([]func(*sqs.Options){func(o *sqs.Options) {
		if ep := s.endpoint(APISQS); ep != nil {
			o.BaseEndpoint = ep
		}
	}}, optFns...)...)
}

// S3 is an S3 client for region, path-style when Options.S3ForcePathStyle
// is set or S3 has an endpoint override.
func (s *Session) S3(region string, optFns ...func(*s3.Options)) *s3.Client {
	return s3.NewFromConfig(s.Config(region), append([]func(*s3.Options){func(o *s3.Options) {
		ep := s.endpoint(APIS3)
		if ep != nil {
			o.BaseEndpoint = ep
		}
		o.UsePathStyle = s.opts.S3ForcePathStyle || ep != nil
		// The collector does not ask S3 to validate checksums; the SDK's
		// "Response has no supported checksum" would repeat for every
		// object read from S3-compatible stores (and older objects),
		// drowning the --debug lines that matter.
		o.DisableLogOutputChecksumValidationSkipped = true
	}}, optFns...)...)
}

// STS is an STS client for region ("" means Options.Region).
func (s *Session) STS(region string, optFns ...func(*sts.Options)) *sts.Client {
	return sts.NewFromConfig(s.Config(region), append([]func(*sts.Options){s.stsEndpoint}, optFns...)...)
}

// CloudTrail is a CloudTrail client for region.
func (s *Session) CloudTrail(region string, optFns ...func(*cloudtrail.Options)) *cloudtrail.Client {
	return cloudtrail.NewFromConfig(s.Config(region), append([]func(*cloudtrail.Options){func(o *cloudtrail.Options) {
		if ep := s.endpoint(APICloudTrail); ep != nil {
			o.BaseEndpoint = ep
		}
	}}, optFns...)...)
}

// CloudWatch is a CloudWatch (metrics) client for region.
func (s *Session) CloudWatch(region string, optFns ...func(*cloudwatch.Options)) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(s.Config(region), append([]func(*cloudwatch.Options){func(o *cloudwatch.Options) {
		if ep := s.endpoint(APICloudWatch); ep != nil {
			o.BaseEndpoint = ep
		}
	}}, optFns...)...)
}

// Logs is a CloudWatch Logs client for region.
func (s *Session) Logs(region string, optFns ...func(*cloudwatchlogs.Options)) *cloudwatchlogs.Client {
	return cloudwatchlogs.NewFromConfig(s.Config(region), append([]func(*cloudwatchlogs.Options){func(o *cloudwatchlogs.Options) {
		if ep := s.endpoint(APILogs); ep != nil {
			o.BaseEndpoint = ep
		}
	}}, optFns...)...)
}

// GuardDuty is a GuardDuty client for region.
func (s *Session) GuardDuty(region string, optFns ...func(*guardduty.Options)) *guardduty.Client {
	return guardduty.NewFromConfig(s.Config(region), append([]func(*guardduty.Options){func(o *guardduty.Options) {
		if ep := s.endpoint(APIGuardDuty); ep != nil {
			o.BaseEndpoint = ep
		}
	}}, optFns...)...)
}
