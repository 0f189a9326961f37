package main

import (
	"strings"
	"testing"
)

// Only the one-core runs (no -N suffix) count, every run is kept, and the
// lowest decides.
func TestParseTargets(t *testing.T) {
	out := `BenchmarkCloudTrailObject-2 	     352	  11249350 ns/op	 558.01 MB/s	    444493 records/s	         0.9 x_gunzip	        15.37 x_naive
BenchmarkCloudTrailObject 	     352	  11249350 ns/op	 558.01 MB/s	    444493 records/s	         0.5388 x_gunzip	        15.37 x_naive	  136778 B/op	     262 allocs/op
BenchmarkCloudTrailObject 	     325	  11690431 ns/op	 536.96 MB/s	    427734 records/s	         0.4997 x_gunzip	        14.91 x_naive	  136777 B/op	     262 allocs/op
BenchmarkVPCFlowObject    	     223	  16542874 ns/op	 688.10 MB/s	   6044902 lines/s	         0.2949 x_gunzip	   71143 B/op	      73 allocs/op
`
	ts := parseTargets(out, inProcessTargets())
	if got := ts[0].Values; len(got) != 2 || got[0] != 0.5388 || got[1] != 0.4997 {
		t.Fatalf("x_gunzip values %v, want [0.5388 0.4997]", got)
	}
	if got := ts[2].Values; len(got) != 1 || got[0] != 6044902 {
		t.Fatalf("lines/s values %v", got)
	}
	md := targetsMarkdown(ts)
	if !strings.Contains(md, "| BenchmarkCloudTrailObject | x_gunzip | 0.539, 0.500 | 0.500 | ≥ 0.5 | **no** |") {
		t.Errorf("x_gunzip row wrong (0.4997 misses 0.5):\n%s", md)
	}
	if !strings.Contains(md, "| BenchmarkVPCFlowObject | lines/s | 6.04 M | 6.04 M | ≥ 1.5 M | yes |") {
		t.Errorf("lines/s row wrong:\n%s", md)
	}
}
