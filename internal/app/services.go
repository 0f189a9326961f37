package app

import (
	"context"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	gdsdk "github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/cloudtrailapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/cwlogs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/cwmetrics"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/guardduty"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/s3sqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqsevents"
)

// builders is the unit-builder registry: the source of each service kind
// (config.Kinds). Adding a service is its config entry (internal/config,
// kind_*.go), one folder under internal/source and one line here; a kind
// without a line is refused at start. See docs/architecture.md.
var builders = map[config.ServiceKind]Builder{}

func init() {
	builders[config.EventBridge] = buildSQSEvents
	builders[config.SecurityHub] = buildSQSEvents
	builders[config.CloudTrailS3] = buildS3SQS
	builders[config.S3Logs] = buildS3SQS
	builders[config.Umbrella] = buildS3SQS
	builders[config.CloudTrailAPI] = buildCloudTrailAPI
	builders[config.GuardDuty] = buildGuardDuty
	builders[config.Metrics] = buildMetrics
	builders[config.Logs] = buildLogs
}

// apiCommon is what every API source of the unit d is given: its
// identity, the input's state store and lease holder, its logger and
// counters.
func apiCommon(d Deps) apisource.Common {
	return apisource.Common{
		Service:     d.Service,
		Region:      d.Region,
		InputName:   d.Input.Name,
		AccountID:   d.Env.Session.AccountID,
		Environment: d.Input.Environment,
		Store:       d.Env.State,
		Leases:      d.Env.Leases,
		Log:         d.Log,
		Stats:       d.Stats,
		Registry:    d.Registry,
	}
}

func buildGuardDuty(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return guardduty.New(guardduty.Options{
		Common: apiCommon(d),
		Client: sess.GuardDuty(d.Region, func(o *gdsdk.Options) {
			if ep := d.Service.Endpoints[awsapi.APIGuardDuty]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
	})
}

func buildMetrics(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return cwmetrics.New(cwmetrics.Options{
		Common: apiCommon(d),
		Client: sess.CloudWatch(d.Region, func(o *cloudwatch.Options) {
			if ep := d.Service.Endpoints[awsapi.APICloudWatch]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
	})
}

func buildCloudTrailAPI(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return cloudtrailapi.New(cloudtrailapi.Options{
		Common: apiCommon(d),
		NewClient: func(apiOption func(*cloudtrail.Options)) cloudtrailapi.Client {
			return sess.CloudTrail(d.Region, func(o *cloudtrail.Options) {
				if ep := d.Service.Endpoints[awsapi.APICloudTrail]; ep != "" {
					o.BaseEndpoint = aws.String(ep)
				}
			}, apiOption)
		},
	})
}

// Environment variables that tune the custom logs services, in whole
// seconds (docs/services/cloudwatch-logs.md). They exist for tests and for
// groups whose ingestion is later than the defaults allow.
const (
	envLogsOverlap      = "COLLECTOR_LOGS_OVERLAP_SECONDS"
	envLogsSafety       = "COLLECTOR_LOGS_SAFETY_SECONDS"
	envLogsGroupRefresh = "COLLECTOR_LOGS_GROUP_REFRESH_SECONDS"
)

// envSeconds reads a positive whole number of seconds from name; zero when
// unset or not a positive number (the default then applies, with a WARN
// for a bad value).
func envSeconds(d Deps, name string) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		d.Log.Warn("ignored: not a positive whole number of seconds", "env", name, "value", v)
		return 0
	}
	return time.Duration(n) * time.Second
}

func buildLogs(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return cwlogs.New(cwlogs.Options{
		Common: apiCommon(d),
		NewClient: func(apiOption func(*cloudwatchlogs.Options)) cwlogs.Client {
			return sess.Logs(d.Region, func(o *cloudwatchlogs.Options) {
				if ep := d.Service.Endpoints[awsapi.APILogs]; ep != "" {
					o.BaseEndpoint = aws.String(ep)
				}
			}, apiOption)
		},
		RequestsPerSecond: d.Input.RequestsPerSecond,
		Overlap:           envSeconds(d, envLogsOverlap),
		Safety:            envSeconds(d, envLogsSafety),
		GroupRefresh:      envSeconds(d, envLogsGroupRefresh),
	})
}

func buildSQSEvents(ctx context.Context, d Deps) (pipeline.Source, error) {
	return sqsevents.New(sqsevents.Options{
		Service:     d.Service,
		Region:      d.Region,
		InputName:   d.Input.Name,
		SQS:         sqsClient(d),
		AccountID:   d.Env.Session.AccountID,
		Environment: d.Input.Environment,
		Log:         d.Log,
		Stats:       d.Stats,
	})
}

func buildS3SQS(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	// One S3 client per bucket region, built on first use: a client holds
	// its own HTTP connection pool, so one per object would waste both.
	var mu sync.Mutex
	clients := map[string]s3sqs.S3Client{}
	s3For := func(region string) s3sqs.S3Client {
		mu.Lock()
		defer mu.Unlock()
		c, ok := clients[region]
		if !ok {
			c = sess.S3(region, func(o *s3.Options) {
				if ep := d.Service.Endpoints[awsapi.APIS3]; ep != "" {
					o.BaseEndpoint, o.UsePathStyle = aws.String(ep), true
				}
			})
			clients[region] = c
		}
		return c
	}
	return s3sqs.New(s3sqs.Options{
		Service:     d.Service,
		Region:      d.Region,
		InputName:   d.Input.Name,
		SQS:         sqsClient(d),
		S3:          s3For,
		AccountID:   sess.AccountID,
		Environment: d.Input.Environment,
		Log:         d.Log,
		Stats:       d.Stats,
	})
}

// sqsClient is the unit's SQS client.
func sqsClient(d Deps) *sqs.Client { return serviceSQS(d.Env.Session, d.Service, d.Region) }

// serviceSQS is a service's SQS client for region, honouring the service's
// own endpoint override (config: a service's endpoints map wins over the
// input's).
func serviceSQS(sess *awsapi.Session, svc *config.Service, region string) *sqs.Client {
	return sess.SQS(region, func(o *sqs.Options) {
		if ep := svc.Endpoints[awsapi.APISQS]; ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	})
}
