package app

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	gdsdk "github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awsapi"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/cloudtrailapi"
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
}

func buildGuardDuty(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return guardduty.New(guardduty.Options{
		Service:   d.Service,
		Region:    d.Region,
		InputName: d.Input.Name,
		Client: sess.GuardDuty(d.Region, func(o *gdsdk.Options) {
			if ep := d.Service.Endpoints[awsapi.APIGuardDuty]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
		AccountID:   sess.AccountID,
		Environment: d.Input.Environment,
		Store:       d.Env.State,
		Log:         d.Log,
		Stats:       d.Stats,
		Registry:    d.Registry,
	})
}

func buildMetrics(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return cwmetrics.New(cwmetrics.Options{
		Service:   d.Service,
		Region:    d.Region,
		InputName: d.Input.Name,
		Client: sess.CloudWatch(d.Region, func(o *cloudwatch.Options) {
			if ep := d.Service.Endpoints[awsapi.APICloudWatch]; ep != "" {
				o.BaseEndpoint = aws.String(ep)
			}
		}),
		AccountID:   sess.AccountID,
		Environment: d.Input.Environment,
		Store:       d.Env.State,
		Log:         d.Log,
		Stats:       d.Stats,
		Registry:    d.Registry,
	})
}

func buildCloudTrailAPI(ctx context.Context, d Deps) (pipeline.Source, error) {
	sess := d.Env.Session
	return cloudtrailapi.New(cloudtrailapi.Options{
		Service:   d.Service,
		Region:    d.Region,
		InputName: d.Input.Name,
		NewClient: func(apiOption func(*cloudtrail.Options)) cloudtrailapi.Client {
			return sess.CloudTrail(d.Region, func(o *cloudtrail.Options) {
				if ep := d.Service.Endpoints[awsapi.APICloudTrail]; ep != "" {
					o.BaseEndpoint = aws.String(ep)
				}
			}, apiOption)
		},
		AccountID:   sess.AccountID,
		Environment: d.Input.Environment,
		Store:       d.Env.State,
		Log:         d.Log,
		Stats:       d.Stats,
		Registry:    d.Registry,
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
