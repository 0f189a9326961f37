package awstest

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GuardDuty is a fake GuardDuty endpoint speaking REST-JSON, serving
// ListDetectors, GetDetector, ListFindings and GetFindings. Load data with
// AddDetector and PutFindings (RemoveDetector and SuspendDetector change the
// detectors); point a guardduty.Client at URL.
type GuardDuty struct {
	fake
	region    string
	detectors []string
	findings  map[string][]Finding // by detector, in insertion order
	suspended map[string]bool      // detectors whose status is DISABLED
}

// Finding is one GuardDuty finding. The fake fills the members AWS always
// sends (arn, partition, region, schemaVersion, service.detectorId …).
type Finding struct {
	ID          string
	AccountID   string // empty: 123456789012
	Type        string
	Title       string
	Description string
	Severity    float64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Archived    bool
	// Resource and Service are extra camelCase members of the finding's
	// resource and service objects, sent as given.
	Resource map[string]any
	Service  map[string]any
}

// GuardDuty limits, as documented.
const (
	guardDutyMaxResults = 50
	guardDutyMaxIDs     = 50
)

// NewGuardDuty starts a GuardDuty fake for region "us-east-1"; the test's
// cleanup stops it.
func NewGuardDuty(t testing.TB) *GuardDuty {
	t.Helper()
	g := &GuardDuty{region: "us-east-1", findings: map[string][]Finding{}, suspended: map[string]bool{}}
	g.start(t, restJSONProtocol{}, http.HandlerFunc(g.handle))
	return g
}

// AddDetector creates detectors (idempotent).
func (g *GuardDuty) AddDetector(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, id := range ids {
		if !slices.Contains(g.detectors, id) {
			g.detectors = append(g.detectors, id)
		}
	}
}

// RemoveDetector deletes a detector and its findings, as DeleteDetector
// does: it is no longer listed, and calls naming it fail with
// BadRequestException.
func (g *GuardDuty) RemoveDetector(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.detectors = slices.DeleteFunc(g.detectors, func(d string) bool { return d == id })
	delete(g.findings, id)
	delete(g.suspended, id)
}

// SuspendDetector sets a detector's status (GetDetector's status DISABLED
// when suspended, ENABLED otherwise). Its findings stay readable.
func (g *GuardDuty) SuspendDetector(id string, suspended bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.suspended[id] = suspended
}

// PutFindings adds findings to a detector (creating it); a finding whose ID
// exists is replaced in place, as GuardDuty updates a recurring finding.
func (g *GuardDuty) PutFindings(detector string, fs ...Finding) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.detectors, detector) {
		g.detectors = append(g.detectors, detector)
	}
	for _, f := range fs {
		i := slices.IndexFunc(g.findings[detector], func(old Finding) bool { return old.ID == f.ID })
		if i >= 0 {
			g.findings[detector][i] = f
		} else {
			g.findings[detector] = append(g.findings[detector], f)
		}
	}
}

// ListDetectorsRequest is a decoded ListDetectors request.
type ListDetectorsRequest struct {
	MaxResults *int32
	NextToken  string
}

// ListFindingsRequest is a decoded ListFindings request.
type ListFindingsRequest struct {
	DetectorID      string           `json:"-"`
	FindingCriteria *FindingCriteria `json:"findingCriteria,omitempty"`
	SortCriteria    *SortCriteria    `json:"sortCriteria,omitempty"`
	MaxResults      *int32           `json:"maxResults,omitempty"`
	NextToken       string           `json:"nextToken,omitempty"`
}

// GetFindingsRequest is a decoded GetFindings request.
type GetFindingsRequest struct {
	DetectorID   string        `json:"-"`
	FindingIDs   []string      `json:"findingIds"`
	SortCriteria *SortCriteria `json:"sortCriteria,omitempty"`
}

// FindingCriteria filters findings by attribute.
type FindingCriteria struct {
	Criterion map[string]Condition `json:"criterion"`
}

// Condition is one criterion. Times are epoch milliseconds.
type Condition struct {
	Eq                 []string `json:"eq,omitempty"`
	Neq                []string `json:"neq,omitempty"`
	Equals             []string `json:"equals,omitempty"`
	NotEquals          []string `json:"notEquals,omitempty"`
	Gt                 *int64   `json:"gt,omitempty"`
	Gte                *int64   `json:"gte,omitempty"`
	Lt                 *int64   `json:"lt,omitempty"`
	Lte                *int64   `json:"lte,omitempty"`
	GreaterThan        *int64   `json:"greaterThan,omitempty"`
	GreaterThanOrEqual *int64   `json:"greaterThanOrEqual,omitempty"`
	LessThan           *int64   `json:"lessThan,omitempty"`
	LessThanOrEqual    *int64   `json:"lessThanOrEqual,omitempty"`
}

// SortCriteria orders findings.
type SortCriteria struct {
	AttributeName string `json:"attributeName,omitempty"`
	OrderBy       string `json:"orderBy,omitempty"`
}

func badRequest(format string, args ...any) *apiError {
	return newAPIError(http.StatusBadRequest, "BadRequestException", format, args...)
}

func (g *GuardDuty) handle(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "detector":
		in := &ListDetectorsRequest{NextToken: r.URL.Query().Get("nextToken")}
		var bad *apiError
		if v := r.URL.Query().Get("maxResults"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				bad = badRequest("maxResults must be a number")
			}
			in.MaxResults = new(int32(n))
		}
		// A GET has no body, so serve logs in as it is.
		g.serve(w, r, "ListDetectors", in, func() (any, *apiError) {
			if bad != nil {
				return nil, bad
			}
			return g.listDetectors(in)
		})
	case r.Method == http.MethodGet && len(parts) == 2 && parts[0] == "detector":
		g.serve(w, r, "GetDetector", &struct{ DetectorID string }{parts[1]}, func() (any, *apiError) {
			return g.getDetector(parts[1])
		})
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "detector" && parts[2] == "findings":
		in := &ListFindingsRequest{}
		g.serve(w, r, "ListFindings", in, func() (any, *apiError) {
			in.DetectorID = parts[1]
			return g.listFindings(in)
		})
	case r.Method == http.MethodPost && len(parts) == 4 && parts[0] == "detector" && parts[2] == "findings" && parts[3] == "get":
		in := &GetFindingsRequest{}
		g.serve(w, r, "GetFindings", in, func() (any, *apiError) {
			in.DetectorID = parts[1]
			return g.getFindings(in)
		})
	default:
		g.serve(w, r, r.Method+" "+r.URL.Path, nil, func() (any, *apiError) {
			return nil, badRequest("%s %s is not implemented by the fake", r.Method, r.URL.Path)
		})
	}
}

func (g *GuardDuty) listDetectors(in *ListDetectorsRequest) (any, *apiError) {
	if !intIn(in.MaxResults, 1, guardDutyMaxResults) {
		return nil, badRequest("maxResults must be between 1 and %d", guardDutyMaxResults)
	}
	key := *in
	key.NextToken = ""
	page, next, ok := paginate(&g.fake, "ListDetectors", requestKey(key), in.NextToken,
		func() []string { return slices.Clone(g.detectors) },
		upTo[string](orDefault(in.MaxResults, guardDutyMaxResults)), 0)
	if !ok {
		return nil, badRequest("The request is rejected because an invalid or out-of-range value is specified as an input parameter.")
	}
	return struct {
		DetectorIDs []string `json:"detectorIds"`
		NextToken   string   `json:"nextToken,omitempty"`
	}{append([]string{}, page...), next}, nil
}

func (g *GuardDuty) getDetector(id string) (any, *apiError) {
	if !slices.Contains(g.detectors, id) {
		return nil, badRequest("The request is rejected because the input detectorId is not owned by the current account.")
	}
	status := "ENABLED"
	if g.suspended[id] {
		status = "DISABLED"
	}
	return struct {
		Status                     string `json:"status"`
		ServiceRole                string `json:"serviceRole"`
		FindingPublishingFrequency string `json:"findingPublishingFrequency"`
	}{status, "arn:aws:iam::123456789012:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty", "SIX_HOURS"}, nil
}

func (g *GuardDuty) detector(id string) ([]Finding, *apiError) {
	if !slices.Contains(g.detectors, id) {
		return nil, badRequest("The request is rejected because the input detectorId is not owned by the current account.")
	}
	return g.findings[id], nil
}

func (g *GuardDuty) listFindings(in *ListFindingsRequest) (any, *apiError) {
	if !intIn(in.MaxResults, 1, guardDutyMaxResults) {
		return nil, badRequest("maxResults must be between 1 and %d", guardDutyMaxResults)
	}
	findings, err := g.detector(in.DetectorID)
	if err != nil {
		return nil, err
	}
	var match func(Finding) bool
	if in.FindingCriteria != nil {
		if match, err = compileCriteria(in.FindingCriteria.Criterion); err != nil {
			return nil, err
		}
	}
	order, err := findingOrder(in.SortCriteria)
	if err != nil {
		return nil, err
	}
	list := func() []string {
		var out []Finding
		for _, f := range findings {
			if match == nil || match(f) {
				out = append(out, f)
			}
		}
		if order != nil {
			slices.SortStableFunc(out, order)
		}
		ids := make([]string, len(out))
		for i, f := range out {
			ids[i] = f.ID
		}
		return ids
	}
	page, next, ok := paginate(&g.fake, "ListFindings", in.DetectorID+requestKey(in.withoutToken()), in.NextToken, list,
		upTo[string](orDefault(in.MaxResults, guardDutyMaxResults)), 0)
	if !ok {
		return nil, badRequest("The request is rejected because an invalid or out-of-range value is specified as an input parameter.")
	}
	return struct {
		FindingIDs []string `json:"findingIds"`
		NextToken  string   `json:"nextToken,omitempty"`
	}{append([]string{}, page...), next}, nil
}

func (r ListFindingsRequest) withoutToken() ListFindingsRequest {
	r.NextToken = ""
	return r
}

func (g *GuardDuty) getFindings(in *GetFindingsRequest) (any, *apiError) {
	if len(in.FindingIDs) == 0 || len(in.FindingIDs) > guardDutyMaxIDs {
		return nil, badRequest("findingIds must hold between 1 and %d IDs", guardDutyMaxIDs)
	}
	findings, err := g.detector(in.DetectorID)
	if err != nil {
		return nil, err
	}
	order, err := findingOrder(in.SortCriteria)
	if err != nil {
		return nil, err
	}
	// Unknown IDs are left out, as AWS does.
	var out []Finding
	for _, id := range in.FindingIDs {
		if i := slices.IndexFunc(findings, func(f Finding) bool { return f.ID == id }); i >= 0 {
			out = append(out, findings[i])
		}
	}
	if order != nil {
		slices.SortStableFunc(out, order)
	}
	wire := []map[string]any{}
	for _, f := range out {
		wire = append(wire, g.findingWire(in.DetectorID, f))
	}
	return struct {
		Findings []map[string]any `json:"findings"`
	}{wire}, nil
}

// guardDutyTime is how GuardDuty writes times inside a finding.
const guardDutyTime = "2006-01-02T15:04:05.000Z"

func (g *GuardDuty) findingWire(detector string, f Finding) map[string]any {
	account := cmp.Or(f.AccountID, "123456789012")
	service := map[string]any{"serviceName": "guardduty", "detectorId": detector, "archived": f.Archived}
	maps.Copy(service, f.Service)
	w := map[string]any{
		"accountId":     account,
		"arn":           fmt.Sprintf("arn:aws:guardduty:%s:%s:detector/%s/finding/%s", g.region, account, detector, f.ID),
		"createdAt":     f.CreatedAt.UTC().Format(guardDutyTime),
		"updatedAt":     f.UpdatedAt.UTC().Format(guardDutyTime),
		"id":            f.ID,
		"partition":     "aws",
		"region":        g.region,
		"schemaVersion": "2.0",
		"severity":      f.Severity,
		"type":          f.Type,
		"resource":      map[string]any{},
		"service":       service,
	}
	if f.Resource != nil {
		w["resource"] = f.Resource
	}
	if f.Title != "" {
		w["title"] = f.Title
	}
	if f.Description != "" {
		w["description"] = f.Description
	}
	return w
}

// findingOrder returns the comparison for sortCriteria, nil for none.
func findingOrder(s *SortCriteria) (func(a, b Finding) int, *apiError) {
	if s == nil || s.AttributeName == "" {
		return nil, nil
	}
	var by func(a, b Finding) int
	switch s.AttributeName {
	case "updatedAt":
		by = func(a, b Finding) int { return a.UpdatedAt.Compare(b.UpdatedAt) }
	case "createdAt":
		by = func(a, b Finding) int { return a.CreatedAt.Compare(b.CreatedAt) }
	case "severity":
		by = func(a, b Finding) int { return cmp.Compare(a.Severity, b.Severity) }
	case "id":
		by = func(a, b Finding) int { return strings.Compare(a.ID, b.ID) }
	case "type":
		by = func(a, b Finding) int { return strings.Compare(a.Type, b.Type) }
	default:
		return nil, badRequest("sortCriteria.attributeName %q is not supported by the fake", s.AttributeName)
	}
	switch s.OrderBy {
	case "", "ASC":
		return by, nil
	case "DESC":
		return func(a, b Finding) int { return by(b, a) }, nil
	}
	return nil, badRequest("sortCriteria.orderBy must be ASC or DESC")
}

// compileCriteria supports the criteria a collector uses: updatedAt and
// createdAt (epoch ms), severity, id, type and service.archived.
func compileCriteria(criterion map[string]Condition) (func(Finding) bool, *apiError) {
	var preds []func(Finding) bool
	for field, c := range criterion {
		var num func(Finding) (int64, bool)
		var str func(Finding) string
		switch field {
		case "updatedAt":
			num = func(f Finding) (int64, bool) { return epochMillis(f.UpdatedAt), true }
		case "createdAt":
			num = func(f Finding) (int64, bool) { return epochMillis(f.CreatedAt), true }
		case "severity":
			// Compare severities in thousandths so 7.5 >= 7 works with integer bounds.
			num = func(f Finding) (int64, bool) { return int64(f.Severity * 1000), true }
			c = c.scaled(1000)
		case "id":
			str = func(f Finding) string { return f.ID }
		case "type":
			str = func(f Finding) string { return f.Type }
		case "service.archived":
			str = func(f Finding) string { return boolString(f.Archived) }
		default:
			return nil, badRequest("criterion %q is not supported by the fake", field)
		}
		if num != nil {
			str = func(f Finding) string { n, _ := num(f); return strconv.FormatInt(n, 10) }
		}
		preds = append(preds, c.predicate(num, str))
	}
	return func(f Finding) bool {
		for _, p := range preds {
			if !p(f) {
				return false
			}
		}
		return true
	}, nil
}

func (c Condition) scaled(k int64) Condition {
	for _, p := range []**int64{&c.Gt, &c.Gte, &c.Lt, &c.Lte, &c.GreaterThan, &c.GreaterThanOrEqual, &c.LessThan, &c.LessThanOrEqual} {
		if *p != nil {
			*p = new(**p * k)
		}
	}
	return c
}

func (c Condition) predicate(num func(Finding) (int64, bool), str func(Finding) string) func(Finding) bool {
	eq := append(slices.Clone(c.Eq), c.Equals...)
	neq := append(slices.Clone(c.Neq), c.NotEquals...)
	type bound struct {
		v   *int64
		cmp func(n, v int64) bool
	}
	bounds := []bound{
		{c.Gt, func(n, v int64) bool { return n > v }},
		{c.GreaterThan, func(n, v int64) bool { return n > v }},
		{c.Gte, func(n, v int64) bool { return n >= v }},
		{c.GreaterThanOrEqual, func(n, v int64) bool { return n >= v }},
		{c.Lt, func(n, v int64) bool { return n < v }},
		{c.LessThan, func(n, v int64) bool { return n < v }},
		{c.Lte, func(n, v int64) bool { return n <= v }},
		{c.LessThanOrEqual, func(n, v int64) bool { return n <= v }},
	}
	return func(f Finding) bool {
		s := str(f)
		if len(eq) > 0 && !slices.Contains(eq, s) {
			return false
		}
		if slices.Contains(neq, s) {
			return false
		}
		for _, b := range bounds {
			if b.v == nil {
				continue
			}
			if num == nil {
				return false // a range on a string attribute matches nothing
			}
			if n, _ := num(f); !b.cmp(n, *b.v) {
				return false
			}
		}
		return true
	}
}
