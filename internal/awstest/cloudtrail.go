package awstest

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// CloudTrail is a fake CloudTrail LookupEvents endpoint speaking AWS JSON
// 1.1. Load events with AddEvents; point a cloudtrail.Client at URL.
type CloudTrail struct {
	fake
	region string
	events []LookupEvent
}

// LookupEvent is one event in the CloudTrail fake's history.
type LookupEvent struct {
	EventID     string
	EventName   string
	EventSource string
	EventTime   time.Time
	Username    string
	AccessKeyID string
	ReadOnly    bool
	Resources   []LookupResource
	// Insight marks an Insights event, returned only with EventCategory
	// "insight"; all others are management events.
	Insight bool
	// CloudTrailEvent is the full record as a JSON string. When empty the
	// fake composes a minimal record from the fields above and the fake's
	// region.
	CloudTrailEvent string
}

// LookupResource is a resource an event refers to.
type LookupResource struct {
	ResourceType string `json:"ResourceType,omitempty"`
	ResourceName string `json:"ResourceName,omitempty"`
}

// LookupEventsRequest is a decoded LookupEvents request.
type LookupEventsRequest struct {
	LookupAttributes []LookupAttribute
	StartTime        *time.Time
	EndTime          *time.Time
	EventCategory    string
	MaxResults       *int32
	NextToken        string
}

// LookupAttribute is one LookupEvents filter.
type LookupAttribute struct {
	AttributeKey   string
	AttributeValue string
}

// UnmarshalJSON reads the JSON 1.1 wire form, where times are epoch
// seconds, possibly fractional.
func (r *LookupEventsRequest) UnmarshalJSON(b []byte) error {
	var wire struct {
		LookupAttributes []LookupAttribute
		StartTime        *float64
		EndTime          *float64
		EventCategory    string
		MaxResults       *int32
		NextToken        string
	}
	if err := json.Unmarshal(b, &wire); err != nil {
		return err
	}
	*r = LookupEventsRequest{
		LookupAttributes: wire.LookupAttributes,
		StartTime:        epochSecondsPtr(wire.StartTime),
		EndTime:          epochSecondsPtr(wire.EndTime),
		EventCategory:    wire.EventCategory,
		MaxResults:       wire.MaxResults,
		NextToken:        wire.NextToken,
	}
	return nil
}

func epochSecondsPtr(v *float64) *time.Time {
	if v == nil {
		return nil
	}
	sec, frac := math.Modf(*v)
	t := time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
	return &t
}

// CloudTrail's limits, as documented for LookupEvents.
const (
	lookupMaxResults = 50
	lookupHistory    = 90 * 24 * time.Hour
)

// cloudTrailTargets are the X-Amz-Target values of LookupEvents: current
// SDKs send the short form, clients built from older models the long one.
var cloudTrailTargets = []string{
	"CloudTrail_20131101.LookupEvents",
	"com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
}

// NewCloudTrail starts a CloudTrail fake for region "us-east-1"; the test's
// cleanup stops it.
func NewCloudTrail(t testing.TB) *CloudTrail {
	t.Helper()
	ct := &CloudTrail{region: "us-east-1"}
	ct.start(t, jsonProtocol{contentType: "application/x-amz-json-1.1"}, http.HandlerFunc(ct.handle))
	return ct
}

// SetRegion sets the awsRegion of composed CloudTrailEvent records.
func (ct *CloudTrail) SetRegion(region string) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	ct.region = region
}

// AddEvents adds events to the history. Events without an EventID get a
// generated one.
func (ct *CloudTrail) AddEvents(evs ...LookupEvent) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for _, ev := range evs {
		if ev.EventID == "" {
			ev.EventID = requestID()
		}
		if ev.CloudTrailEvent == "" {
			ev.CloudTrailEvent = ct.composeRecord(ev)
		}
		ct.events = append(ct.events, ev)
	}
}

func (ct *CloudTrail) composeRecord(ev LookupEvent) string {
	rec := map[string]any{
		"eventVersion":       "1.09",
		"eventTime":          ev.EventTime.UTC().Format(time.RFC3339),
		"eventSource":        ev.EventSource,
		"eventName":          ev.EventName,
		"awsRegion":          ct.region,
		"eventID":            ev.EventID,
		"eventType":          "AwsApiCall",
		"readOnly":           ev.ReadOnly,
		"recipientAccountId": "123456789012",
	}
	if ev.Insight {
		rec["eventType"] = "AwsCloudTrailInsight"
	}
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err) // plain strings and bools
	}
	return string(b)
}

func (ct *CloudTrail) handle(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if r.Method != http.MethodPost || !slices.Contains(cloudTrailTargets, target) {
		op := target[strings.LastIndex(target, ".")+1:]
		ct.serve(w, r, op, nil, func() (any, *apiError) {
			return nil, newAPIError(http.StatusBadRequest, "UnknownOperationException", "operation %q is not implemented by the fake", target)
		})
		return
	}
	in := &LookupEventsRequest{}
	ct.serve(w, r, "LookupEvents", in, func() (any, *apiError) { return ct.lookupEvents(in) })
}

type lookupEventsOutput struct {
	Events    []lookupEventWire `json:"Events"`
	NextToken string            `json:"NextToken,omitempty"`
}

type lookupEventWire struct {
	EventID         string           `json:"EventId"`
	EventName       string           `json:"EventName,omitempty"`
	ReadOnly        string           `json:"ReadOnly"`
	AccessKeyID     string           `json:"AccessKeyId,omitempty"`
	EventTime       float64          `json:"EventTime"`
	EventSource     string           `json:"EventSource,omitempty"`
	Username        string           `json:"Username,omitempty"`
	Resources       []LookupResource `json:"Resources,omitempty"`
	CloudTrailEvent string           `json:"CloudTrailEvent"`
}

func (ct *CloudTrail) lookupEvents(in *LookupEventsRequest) (any, *apiError) {
	if !intIn(in.MaxResults, 1, lookupMaxResults) {
		return nil, newAPIError(http.StatusBadRequest, "InvalidMaxResultsException", "MaxResults must be between 1 and %d", lookupMaxResults)
	}
	if len(in.LookupAttributes) > 1 {
		return nil, newAPIError(http.StatusBadRequest, "InvalidLookupAttributesException", "You can only specify one lookup attribute")
	}
	var match func(LookupEvent) bool
	if len(in.LookupAttributes) == 1 {
		var err *apiError
		if match, err = lookupMatcher(in.LookupAttributes[0]); err != nil {
			return nil, err
		}
	}
	if in.StartTime != nil && in.EndTime != nil && in.StartTime.After(*in.EndTime) {
		return nil, newAPIError(http.StatusBadRequest, "InvalidTimeRangeException", "Start time must not be after end time")
	}
	insight := false
	switch in.EventCategory {
	case "":
	case "insight":
		insight = true
	default:
		return nil, newAPIError(http.StatusBadRequest, "InvalidEventCategoryException", "EventCategory must be insight")
	}

	key := *in
	key.NextToken = ""
	list := func() []LookupEvent {
		oldest := ct.now().Add(-lookupHistory)
		var out []LookupEvent
		for _, ev := range ct.events {
			switch {
			case ev.Insight != insight,
				ev.EventTime.Before(oldest),
				in.StartTime != nil && ev.EventTime.Before(*in.StartTime),
				in.EndTime != nil && ev.EventTime.After(*in.EndTime),
				match != nil && !match(ev):
				continue
			}
			out = append(out, ev)
		}
		// Newest first; among equal times, the later-added first.
		slices.Reverse(out)
		slices.SortStableFunc(out, func(a, b LookupEvent) int { return b.EventTime.Compare(a.EventTime) })
		return out
	}
	page, next, ok := paginate(&ct.fake, "LookupEvents", requestKey(key), in.NextToken, list,
		upTo[LookupEvent](orDefault(in.MaxResults, lookupMaxResults)), 0)
	if !ok {
		return nil, newAPIError(http.StatusBadRequest, "InvalidNextTokenException", "Invalid NextToken")
	}
	out := lookupEventsOutput{Events: []lookupEventWire{}, NextToken: next}
	for _, ev := range page {
		out.Events = append(out.Events, lookupEventWire{
			EventID:         ev.EventID,
			EventName:       ev.EventName,
			ReadOnly:        boolString(ev.ReadOnly),
			AccessKeyID:     ev.AccessKeyID,
			EventTime:       float64(ev.EventTime.UnixMilli()) / 1e3,
			EventSource:     ev.EventSource,
			Username:        ev.Username,
			Resources:       ev.Resources,
			CloudTrailEvent: ev.CloudTrailEvent,
		})
	}
	return out, nil
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// lookupMatcher builds the filter for one lookup attribute.
func lookupMatcher(a LookupAttribute) (func(LookupEvent) bool, *apiError) {
	v := a.AttributeValue
	switch a.AttributeKey {
	case "EventId":
		return func(ev LookupEvent) bool { return ev.EventID == v }, nil
	case "EventName":
		return func(ev LookupEvent) bool { return ev.EventName == v }, nil
	case "EventSource":
		return func(ev LookupEvent) bool { return ev.EventSource == v }, nil
	case "Username":
		return func(ev LookupEvent) bool { return ev.Username == v }, nil
	case "AccessKeyId":
		return func(ev LookupEvent) bool { return ev.AccessKeyID == v }, nil
	case "ReadOnly":
		return func(ev LookupEvent) bool { return boolString(ev.ReadOnly) == v }, nil
	case "ResourceType", "ResourceName":
		return func(ev LookupEvent) bool {
			for _, res := range ev.Resources {
				if (a.AttributeKey == "ResourceType" && res.ResourceType == v) ||
					(a.AttributeKey == "ResourceName" && res.ResourceName == v) {
					return true
				}
			}
			return false
		}, nil
	}
	return nil, newAPIError(http.StatusBadRequest, "InvalidLookupAttributesException", "Invalid AttributeKey %q", a.AttributeKey)
}
