// Package s3notify reads an SQS message body and returns the S3 objects it
// announces (aws-formats.md §2). It understands five shapes, recognised by
// their JSON keys: direct S3 event notifications, the s3:TestEvent, SNS
// envelopes whose string Message holds one of these shapes, EventBridge
// "Object Created" events, and CloudTrail's own SNS notice.
//
// Bodies are a few KiB at most, so this package decodes them with
// encoding/json into small structs; the hot paths are in the file readers.
package s3notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

var (
	// ErrNotJSON: the body is not valid JSON.
	ErrNotJSON = errors.New("message body is not JSON")
	// ErrNotNotification: the body is JSON but none of the known shapes, or
	// a known shape with a required part missing or malformed.
	ErrNotNotification = errors.New("message body is not an S3 notification")
)

// Error says what was wrong with a body. It unwraps to ErrNotJSON or
// ErrNotNotification.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string { return e.Err.Error() + ": " + e.Detail }
func (e *Error) Unwrap() error { return e.Err }

func notNotification(format string, args ...any) error {
	return &Error{Err: ErrNotNotification, Detail: fmt.Sprintf(format, args...)}
}

// SizeUnknown is Object.Size when the notification does not carry the size
// (CloudTrail's SNS notice).
const SizeUnknown = -1

// Object is one S3 object announced as created.
type Object struct {
	Bucket string
	// Key is the object key to read. Keys of direct S3 notifications are
	// query-unescaped ('+' becomes a space, then %XX is decoded); other
	// shapes carry the key as is.
	Key string
	// Region is the bucket's region from the notification, "" when the
	// notification does not say (the caller then uses the queue's region).
	Region string
	// Size in bytes, or SizeUnknown.
	Size int64
	// EventName is the S3 event name ("ObjectCreated:Put"), or the
	// EventBridge detail-type ("Object Created"), or "" for CloudTrail's
	// notice.
	EventName string
	// KeyRaw is the key exactly as the notification wrote it. For
	// EventBridge events a caller whose GetObject answers NoSuchKey retries
	// once with url.QueryUnescape(KeyRaw) (aws-formats §2 decision).
	KeyRaw string
}

// Notification is what one message announces. A test event has Test set
// and no objects. Ignored counts records of other event families
// (ObjectRemoved:*, ObjectRestore:*, other EventBridge S3 detail types).
type Notification struct {
	Test    bool
	Objects []Object
	Ignored int
}

// maxNesting bounds SNS envelopes inside SNS envelopes.
const maxNesting = 4

// Parse decodes one SQS message body. Errors are *Error values.
func Parse(body []byte) (Notification, error) {
	return parse(body, 0)
}

type shape struct {
	Records     json.RawMessage `json:"Records"`
	Event       string          `json:"Event"`
	Type        string          `json:"Type"`
	Message     json.RawMessage `json:"Message"`
	Source      string          `json:"source"`
	DetailType  string          `json:"detail-type"`
	Region      string          `json:"region"`
	Detail      json.RawMessage `json:"detail"`
	S3Bucket    json.RawMessage `json:"s3Bucket"`
	S3ObjectKey json.RawMessage `json:"s3ObjectKey"`
}

type s3Record struct {
	EventSource string `json:"eventSource"`
	AWSRegion   string `json:"awsRegion"`
	EventName   string `json:"eventName"`
	S3          *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key  *string `json:"key"`
			Size *int64  `json:"size"`
		} `json:"object"`
	} `json:"s3"`
}

type ebDetail struct {
	Bucket struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key  *string `json:"key"`
		Size *int64  `json:"size"`
	} `json:"object"`
}

func parse(body []byte, depth int) (Notification, error) {
	var n Notification
	trimmed := bytes.TrimSpace(body)
	if !json.Valid(trimmed) {
		return n, &Error{Err: ErrNotJSON, Detail: describeNotJSON(trimmed)}
	}
	if trimmed[0] != '{' {
		return n, notNotification("JSON %s, not an object", jsonKind(trimmed[0]))
	}
	var s shape
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return n, notNotification("%v", err)
	}
	switch {
	case present(s.Records):
		return direct(s.Records)
	case s.Event == "s3:TestEvent":
		n.Test = true
		return n, nil
	case s.Type == "Notification" && present(s.Message):
		var inner string
		if err := json.Unmarshal(s.Message, &inner); err != nil {
			return n, notNotification("SNS Message is not a string")
		}
		if depth >= maxNesting {
			return n, notNotification("SNS envelopes nested more than %d deep", maxNesting)
		}
		n, err := parse([]byte(inner), depth+1)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				return n, &Error{Err: ErrNotNotification, Detail: "in SNS Message: " + e.Detail}
			}
			return n, err
		}
		return n, nil
	case s.Source == "aws.s3":
		return eventBridge(s)
	case present(s.S3Bucket) || present(s.S3ObjectKey):
		return cloudTrailNotice(s)
	}
	return n, notNotification("none of the keys Records, Event, Type+Message, source, s3Bucket")
}

func direct(raw json.RawMessage) (Notification, error) {
	var n Notification
	var recs []s3Record
	if err := json.Unmarshal(raw, &recs); err != nil {
		return n, notNotification("Records is not an array of records")
	}
	if len(recs) == 0 {
		return n, notNotification("Records is empty")
	}
	for i, r := range recs {
		if r.EventSource != "aws:s3" {
			return Notification{}, notNotification("Records[%d].eventSource is %q, want \"aws:s3\"", i, r.EventSource)
		}
		if !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			n.Ignored++
			continue
		}
		if r.S3 == nil || r.S3.Bucket.Name == "" {
			return Notification{}, notNotification("Records[%d]: missing s3.bucket.name", i)
		}
		if r.S3.Object.Key == nil || *r.S3.Object.Key == "" {
			return Notification{}, notNotification("Records[%d]: missing s3.object.key", i)
		}
		key, err := url.QueryUnescape(*r.S3.Object.Key)
		if err != nil {
			return Notification{}, notNotification("Records[%d]: s3.object.key %q is not URL-encoded: %v", i, *r.S3.Object.Key, err)
		}
		n.Objects = append(n.Objects, Object{
			Bucket:    r.S3.Bucket.Name,
			Key:       key,
			Region:    r.AWSRegion,
			Size:      size(r.S3.Object.Size),
			EventName: r.EventName,
			KeyRaw:    *r.S3.Object.Key,
		})
	}
	return n, nil
}

func eventBridge(s shape) (Notification, error) {
	var n Notification
	if s.DetailType != "Object Created" {
		n.Ignored = 1
		return n, nil
	}
	var d ebDetail
	if !present(s.Detail) || json.Unmarshal(s.Detail, &d) != nil {
		return n, notNotification("EventBridge detail is not an object")
	}
	if d.Bucket.Name == "" {
		return n, notNotification("EventBridge event: missing detail.bucket.name")
	}
	if d.Object.Key == nil || *d.Object.Key == "" {
		return n, notNotification("EventBridge event: missing detail.object.key")
	}
	n.Objects = []Object{{
		Bucket:    d.Bucket.Name,
		Key:       *d.Object.Key,
		Region:    s.Region,
		Size:      size(d.Object.Size),
		EventName: s.DetailType,
		KeyRaw:    *d.Object.Key,
	}}
	return n, nil
}

func cloudTrailNotice(s shape) (Notification, error) {
	var n Notification
	var bucket string
	var keys []string
	if json.Unmarshal(s.S3Bucket, &bucket) != nil || bucket == "" {
		return n, notNotification("CloudTrail notice: s3Bucket is not a non-empty string")
	}
	if json.Unmarshal(s.S3ObjectKey, &keys) != nil || len(keys) == 0 {
		return n, notNotification("CloudTrail notice: s3ObjectKey is not a non-empty array of strings")
	}
	for i, k := range keys {
		if k == "" {
			return Notification{}, notNotification("CloudTrail notice: s3ObjectKey[%d] is empty", i)
		}
		n.Objects = append(n.Objects, Object{Bucket: bucket, Key: k, Size: SizeUnknown, KeyRaw: k})
	}
	return n, nil
}

func present(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

func size(p *int64) int64 {
	if p == nil {
		return SizeUnknown
	}
	return *p
}

func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

func describeNotJSON(b []byte) string {
	if len(b) == 0 {
		return "empty body"
	}
	var v any
	err := json.Unmarshal(b, &v)
	prefix := b
	if len(prefix) > 40 {
		prefix = prefix[:40]
	}
	return fmt.Sprintf("%v (body starts %q)", err, prefix)
}
