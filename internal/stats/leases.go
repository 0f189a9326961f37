package stats

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// LeaseInfo is what the lease metrics show of a collector taking part in
// coordination (globals.coordination).
type LeaseInfo struct {
	// Owner is this collector's name in the lease table.
	Owner string
	// Held names the leases (the streams' checkpoint keys) held now.
	Held []string
	// Takeovers counts the leases taken, by how: "unowned" (new or handed
	// over) or "expired" (their owner stopped renewing).
	Takeovers map[string]int64
	// Lost counts the leases lost to another collector or given up.
	Lost int64
}

var (
	leasesHeld = prometheus.NewDesc(namespace+"_leases_held",
		"Leases (API streams) this collector holds now.", []string{"owner"}, nil)
	leaseHeld = prometheus.NewDesc(namespace+"_lease_held",
		"1 for each lease (API stream, by checkpoint key) this collector holds now.", []string{"owner", "lease"}, nil)
	leaseTakeovers = prometheus.NewDesc(namespace+"_lease_takeovers_total",
		"Leases this collector took, by kind: unowned (new or handed over) or expired (their owner stopped renewing).", []string{"owner", "kind"}, nil)
	leasesLost = prometheus.NewDesc(namespace+"_leases_lost_total",
		"Leases this collector lost to another collector or gave up because it could not renew them.", []string{"owner"}, nil)
)

// leaseCollector exposes a LeaseInfo read at every scrape.
type leaseCollector struct{ read func() LeaseInfo }

func (c leaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- leasesHeld
	ch <- leaseHeld
	ch <- leaseTakeovers
	ch <- leasesLost
}

func (c leaseCollector) Collect(ch chan<- prometheus.Metric) {
	in := c.read()
	ch <- prometheus.MustNewConstMetric(leasesHeld, prometheus.GaugeValue, float64(len(in.Held)), in.Owner)
	held := append([]string(nil), in.Held...)
	sort.Strings(held)
	for i, k := range held {
		if i > 0 && held[i-1] == k {
			continue
		}
		ch <- prometheus.MustNewConstMetric(leaseHeld, prometheus.GaugeValue, 1, in.Owner, k)
	}
	for _, kind := range []string{"unowned", "expired"} {
		ch <- prometheus.MustNewConstMetric(leaseTakeovers, prometheus.CounterValue, float64(in.Takeovers[kind]), in.Owner, kind)
	}
	ch <- prometheus.MustNewConstMetric(leasesLost, prometheus.CounterValue, float64(in.Lost), in.Owner)
}

// RegisterLeases adds the lease metrics, read from read at every scrape.
// Call it once, for a collector taking part in coordination.
func (r *Registry) RegisterLeases(read func() LeaseInfo) {
	r.prom.MustRegister(leaseCollector{read})
}
