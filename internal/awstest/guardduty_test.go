package awstest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/guardduty/types"
)

const testDetector = "6cb7e1f0a2d34c5e8f9a0b1c2d3e4f50"

func newGuardDutyClient(g *GuardDuty, akid string) *guardduty.Client {
	return guardduty.NewFromConfig(testConfig(akid), func(o *guardduty.Options) {
		o.BaseEndpoint = aws.String(g.URL)
	})
}

// loadFindings adds n findings updated one second apart from base, in
// reverse order of update so sorting is observable.
func loadFindings(g *GuardDuty, n int, base time.Time) {
	for i := n - 1; i >= 0; i-- {
		g.PutFindings(testDetector, Finding{
			ID:        fmt.Sprintf("f%03d", i),
			Type:      "Recon:EC2/PortProbeUnprotectedPort",
			Severity:  float64(i%9) + 0.5,
			CreatedAt: base.Add(-time.Hour),
			UpdatedAt: base.Add(time.Duration(i) * time.Second),
			Resource:  map[string]any{"resourceType": "Instance"},
			Service:   map[string]any{"count": i + 1},
		})
	}
}

func listFindingIDs(t *testing.T, c *guardduty.Client, in *guardduty.ListFindingsInput) ([]string, int) {
	t.Helper()
	ctx := testContext(t)
	p := guardduty.NewListFindingsPaginator(c, in)
	var ids []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		ids = append(ids, out.FindingIds...)
	}
	return ids, pages
}

func updatedSince(ms int64) *guardduty.ListFindingsInput {
	return &guardduty.ListFindingsInput{
		DetectorId: aws.String(testDetector),
		FindingCriteria: &types.FindingCriteria{Criterion: map[string]types.Condition{
			"updatedAt": {GreaterThanOrEqual: aws.Int64(ms)},
		}},
		SortCriteria: &types.SortCriteria{AttributeName: aws.String("updatedAt"), OrderBy: types.OrderByAsc},
	}
}

func TestGuardDutyListAndGetFindings(t *testing.T) {
	g := NewGuardDuty(t)
	base := time.UnixMilli(1717160541118).UTC()
	loadFindings(g, 120, base)
	c := newGuardDutyClient(g, testAccessKey)
	ctx := testContext(t)

	// updatedAt >= base+10s, sorted ascending: f010 … f119 in three pages.
	ids, pages := listFindingIDs(t, c, updatedSince(base.Add(10*time.Second).UnixMilli()))
	if len(ids) != 110 || pages != 3 || ids[0] != "f010" || ids[109] != "f119" {
		t.Fatalf("got %d ids in %d pages (%v … %v)", len(ids), pages, ids[0], ids[len(ids)-1])
	}
	in := g.Calls()[0].Input.(*ListFindingsRequest)
	if in.DetectorID != testDetector || *in.FindingCriteria.Criterion["updatedAt"].GreaterThanOrEqual != base.Add(10*time.Second).UnixMilli() {
		t.Fatalf("decoded input = %+v", in)
	}

	var got []types.Finding
	for batch := range slices.Chunk(ids, 50) {
		out, err := c.GetFindings(ctx, &guardduty.GetFindingsInput{DetectorId: aws.String(testDetector), FindingIds: batch})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out.Findings...)
	}
	if len(got) != 110 {
		t.Fatalf("GetFindings returned %d findings", len(got))
	}
	f := got[0]
	if aws.ToString(f.Id) != "f010" || aws.ToString(f.UpdatedAt) != "2024-05-31T13:02:31.118Z" ||
		aws.ToString(f.CreatedAt) != "2024-05-31T12:02:21.118Z" || aws.ToFloat64(f.Severity) != 1.5 ||
		aws.ToString(f.Service.DetectorId) != testDetector || aws.ToInt32(f.Service.Count) != 11 ||
		aws.ToString(f.Resource.ResourceType) != "Instance" || aws.ToBool(f.Service.Archived) {
		t.Fatalf("finding = %+v", f)
	}

	// An update in place brings the same ID back under a later cursor.
	g.PutFindings(testDetector, Finding{ID: "f003", UpdatedAt: base.Add(time.Hour), CreatedAt: base.Add(-time.Hour)})
	ids, _ = listFindingIDs(t, c, updatedSince(base.Add(119*time.Second).UnixMilli()))
	if !slices.Equal(ids, []string{"f119", "f003"}) {
		t.Fatalf("after update: %v", ids)
	}
}

func TestGuardDutyCriteria(t *testing.T) {
	g := NewGuardDuty(t)
	loadFindings(g, 30, time.UnixMilli(1717160541118))
	g.PutFindings(testDetector, Finding{ID: "archived", Archived: true, Severity: 8})
	c := newGuardDutyClient(g, testAccessKey)

	ids, _ := listFindingIDs(t, c, &guardduty.ListFindingsInput{
		DetectorId: aws.String(testDetector),
		FindingCriteria: &types.FindingCriteria{Criterion: map[string]types.Condition{
			"severity":         {GreaterThanOrEqual: aws.Int64(7)},
			"service.archived": {Equals: []string{"false"}},
		}},
		SortCriteria: &types.SortCriteria{AttributeName: aws.String("id"), OrderBy: types.OrderByDesc},
	})
	// Severities 7.5 and 8.5 come from i%9 of 7 and 8.
	if !slices.Equal(ids, []string{"f026", "f025", "f017", "f016", "f008", "f007"}) {
		t.Fatalf("severity >= 7, not archived: %v", ids)
	}
}

func TestGuardDutyDetectorsAndErrors(t *testing.T) {
	g := NewGuardDuty(t)
	g.AddDetector("d1", "d2", "d3")
	loadFindings(g, 3, time.UnixMilli(1717160541118))
	c := newGuardDutyClient(g, testAccessKey)
	ctx := testContext(t)

	var detectors []string
	p := guardduty.NewListDetectorsPaginator(c, &guardduty.ListDetectorsInput{MaxResults: aws.Int32(1)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		detectors = append(detectors, out.DetectorIds...)
	}
	if !slices.Equal(detectors, []string{"d1", "d2", "d3", testDetector}) || g.Count("ListDetectors") != 4 {
		t.Fatalf("detectors %v in %d calls", detectors, g.Count("ListDetectors"))
	}
	if in := g.Calls()[1].Input.(*ListDetectorsRequest); *in.MaxResults != 1 || in.NextToken == "" {
		t.Fatalf("second ListDetectors input = %+v", in)
	}

	var bad *types.BadRequestException
	ids := make([]string, 51)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	if _, err := c.GetFindings(ctx, &guardduty.GetFindingsInput{DetectorId: aws.String(testDetector), FindingIds: ids}); !errors.As(err, &bad) {
		t.Fatalf("51 ids: %v", err)
	}
	if _, err := c.ListFindings(ctx, &guardduty.ListFindingsInput{DetectorId: aws.String("nope")}); !errors.As(err, &bad) {
		t.Fatalf("unknown detector: %v", err)
	}
	if _, err := c.ListFindings(ctx, &guardduty.ListFindingsInput{DetectorId: aws.String(testDetector), NextToken: aws.String("forged")}); !errors.As(err, &bad) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := c.ListFindings(ctx, &guardduty.ListFindingsInput{DetectorId: aws.String(testDetector), MaxResults: aws.Int32(51)}); !errors.As(err, &bad) {
		t.Fatalf("maxResults 51: %v", err)
	}
}

func TestGuardDutyThrottling(t *testing.T) {
	g := NewGuardDuty(t)
	loadFindings(g, 120, time.UnixMilli(1717160541118))
	c := newGuardDutyClient(g, testAccessKey)

	g.ThrottleNext(2)
	ids, pages := listFindingIDs(t, c, updatedSince(0))
	if len(ids) != 120 || pages != 3 || g.Throttled() != 2 || g.Count("ListFindings") < 5 {
		t.Fatalf("%d ids, %d pages, %d throttled, %d calls", len(ids), pages, g.Throttled(), g.Count("ListFindings"))
	}

	g.ThrottleNext(2 * testMaxAttempts)
	_, err := c.GetFindings(testContext(t), &guardduty.GetFindingsInput{DetectorId: aws.String(testDetector), FindingIds: ids[:1]})
	wantAPIError(t, err, "ThrottlingException")
	for _, call := range g.Calls() {
		if call.AccessKeyID != testAccessKey {
			t.Fatalf("call signed with %q", call.AccessKeyID)
		}
	}
}
