// Package awstest holds in-process fakes of the AWS APIs that have no
// installable emulator: httptest servers on 127.0.0.1 that speak each API's
// real wire protocol, so tests drive the real AWS SDK for Go v2 clients —
// their serializers, paginators, retries and error decoding — against a
// dataset the test controls.
//
//	| Fake                          | API calls                                   | Protocol               |
//	|-------------------------------|---------------------------------------------|------------------------|
//	| NewCloudTrail → *CloudTrail   | LookupEvents                                | AWS JSON 1.1           |
//	| NewLogs → *Logs               | DescribeLogGroups, DescribeLogStreams,      | AWS JSON 1.1           |
//	|                               | FilterLogEvents                             |                        |
//	| NewGuardDuty → *GuardDuty     | ListDetectors, ListFindings, GetFindings    | REST-JSON (camelCase)  |
//	| NewCloudWatch → *CloudWatch   | ListMetrics, GetMetricData,                 | Smithy RPC v2 CBOR     |
//	|                               | GetMetricStatistics                         |                        |
//
// STS has its own fake in this package (sts.go).
//
// # Use
//
// Start a fake with NewXxx(t); t's cleanup stops it. Load data, then point
// the SDK client at the fake's URL with static credentials:
//
//	ct := awstest.NewCloudTrail(t)
//	ct.AddEvents(awstest.LookupEvent{EventName: "StopInstances", EventSource: "ec2.amazonaws.com", EventTime: t0})
//	client := cloudtrail.NewFromConfig(cfg, func(o *cloudtrail.Options) { o.BaseEndpoint = aws.String(ct.URL) })
//
// Keep the client's RetryMaxAttempts low and its MaxBackoff short so a test
// that provokes errors stays fast.
//
// # What every fake does
//
//   - Checks superficially that each request is SigV4-signed (an
//     "Authorization: AWS4-HMAC-SHA256 Credential=…" header) and records the
//     access key id; ExpireAccessKey makes a key fail with
//     ExpiredTokenException.
//   - Logs every call (Calls: operation, decoded request, key, error code)
//     and counts them (Count, Throttled).
//   - Injects throttling: ThrottleNext(n) fails the next n calls and
//     ThrottleEvery(k) every kth, with code ThrottlingException in the
//     protocol's error shape (HTTP 400 for the JSON and CBOR protocols, 429
//     for REST-JSON). The SDK retries these; past its attempts the caller
//     gets a smithy.APIError with that code.
//   - Pages with opaque random tokens. The matching items are captured on
//     the first call, so later pages neither skip nor repeat when the test
//     changes the data meanwhile. A token that is unknown, or reused with
//     different parameters, gets the API's own error
//     (InvalidNextTokenException, InvalidParameterException,
//     BadRequestException, InvalidNextToken).
//   - Uses SetClock for the AWS retention windows it models.
//
// # Semantics per API
//
// CloudTrail: newest first; StartTime and EndTime both inclusive; only the
// last 90 days; at most one LookupAttribute (all eight keys supported);
// MaxResults 1–50, default 50; EventCategory "insight" selects Insights
// events instead of management events. The short and the long X-Amz-Target
// are both accepted.
//
// CloudWatch Logs: FilterLogEvents returns events by timestamp ascending,
// startTime and endTime (epoch ms) both inclusive, pages of at most limit
// (≤ 10,000) events and 1 MB (message bytes plus 26 per event), at most 100
// logStreamNames and never together with logStreamNamePrefix. Filter
// patterns: terms, "quoted phrases", -exclusions and ?alternatives; JSON
// and space-delimited patterns are rejected. SetEmptyPages makes listings
// start with empty pages that carry a token, as AWS does. DescribeLogStreams
// orders by name or LastEventTime and can omit lastEventTimestamp
// (LogStream.HideLastEventTimestamp).
//
// GuardDuty: ListFindings criteria on updatedAt and createdAt (epoch ms),
// severity, id, type and service.archived, with sortCriteria; GetFindings
// takes 1–50 IDs and leaves unknown ones out; PutFindings with a known ID
// updates the finding in place. Note the SDK's Condition.Gte is an int32
// (deprecated) that cannot hold epoch milliseconds; GreaterThanOrEqual is
// the int64 form.
//
// CloudWatch: statistics (SampleCount, Average, Sum, Minimum, Maximum) are
// computed from raw samples in [StartTime, EndTime) grouped into periods
// aligned on the epoch. GetMetricData takes up to 500 queries, pages by
// MaxDatapoints (at most 100,800), marks queries PartialData until their
// last point is sent, and orders by ScanBy (default newest first); metric
// math is rejected. ListMetrics pages by 500 and lists only metrics with a
// sample in the last two weeks (three hours with RecentlyActive=PT3H).
// GetMetricStatistics refuses more than 1,440 periods. CloudWatch is
// query-compatible, so its modelled errors carry X-Amzn-Query-Error and the
// SDK reports the query code (InvalidParameterValue, InvalidNextToken …).
package awstest
