package stats

import (
	"fmt"
	"sync"
	"time"
)

// State is a component's health. The order is from best to worst, so the
// collector's overall state is the largest of its components'.
type State int

const (
	// Running: working normally.
	Running State = iota
	// Starting: not yet working (connecting, first pull not done).
	Starting
	// Degraded: working partly or retrying, for example credentials failing
	// or an output reconnecting.
	Degraded
	// Failed: not working and not expected to recover without an operator.
	Failed
)

var states = []State{Starting, Running, Degraded, Failed}

// String returns the lower-case name used in /healthz and /metrics.
func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Running:
		return "running"
	case Degraded:
		return "degraded"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText makes a State render by name in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state name.
func (s *State) UnmarshalText(b []byte) error {
	for _, v := range states {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown health state %q", b)
}

// Component is one component's health as reported.
type Component struct {
	State State `json:"state"`
	// Reason says why, in a few words; empty while running. It is served
	// over HTTP: never put a secret in it.
	Reason string `json:"reason,omitempty"`
	// Since is when the component entered State.
	Since time.Time `json:"since"`
}

// Report is the health of every component and the worst of them.
type Report struct {
	Status     State                `json:"status"`
	Components map[string]Component `json:"components"`
}

// Health holds the state of named components: sources (one per unit),
// outputs, credentials. Safe for concurrent use.
type Health struct {
	mu    sync.Mutex
	comps map[string]Component
	now   func() time.Time
}

// NewHealth returns an empty Health.
func NewHealth() *Health {
	return &Health{comps: make(map[string]Component), now: time.Now}
}

// Set records a component's state. Setting the same state again keeps its
// Since but updates the reason.
func (h *Health) Set(component string, s State, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.comps[component]
	if !ok || c.State != s {
		c.Since = h.now().UTC()
	}
	c.State, c.Reason = s, reason
	h.comps[component] = c
}

// Remove forgets a component, for example a unit that stopped for good.
func (h *Health) Remove(component string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.comps, component)
}

// Report returns a copy of every component's state and the overall state:
// the worst component's, or Starting while no component has reported.
func (h *Health) Report() Report {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := Report{Status: Starting, Components: make(map[string]Component, len(h.comps))}
	if len(h.comps) > 0 {
		r.Status = Running
	}
	for name, c := range h.comps {
		r.Components[name] = c
		r.Status = max(r.Status, c.State)
	}
	return r
}

// Overall returns the worst component state (Starting when none reported).
func (h *Health) Overall() State { return h.Report().Status }
