// Package awsapi is the one place the collector reaches AWS from: it turns an
// input's credentials settings into a Session that signs every call with the
// right identity (static keys, an assumed role, or a cross-account role
// chain), renews temporary credentials before they expire, points each API at
// its endpoint override, and paces the calls of the low-quota query APIs
// (CloudWatch Logs, CloudWatch metrics, GuardDuty, CloudTrail LookupEvents)
// through a token bucket per (account, region, API). SQS, S3 and STS calls
// are not paced: their quotas are thousands per second.
//
// Sources ask a Session for typed SDK clients (SQS, S3, CloudTrail,
// CloudWatch, Logs, GuardDuty, STS) and never build credentials themselves.
package awsapi
