package connection

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wafleet/wafleet/events"
)

// TestDocDiagramMatchesTransitions: every edge of transitions is written in
// the package doc's table, and the doc's table has no other edge.
func TestDocDiagramMatchesTransitions(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(strings.TrimPrefix(line, "//")); len(f) > 2 && f[1] == "→" {
			doc = append(doc, strings.Join(f, " "))
		}
	}
	var code []string
	for _, tr := range transitions {
		code = append(code, fmt.Sprintf("%s → %s %s", tr.from, tr.to, tr.why))
	}
	if strings.Join(doc, "\n") != strings.Join(code, "\n") {
		t.Errorf("doc.go's edges:\n%s\n\ntransitions:\n%s", strings.Join(doc, "\n"), strings.Join(code, "\n"))
	}
	for _, tr := range transitions {
		for _, p := range []phase{tr.from, tr.to} {
			if p != phaseAny && !strings.Contains(string(b), "//\t"+p.String()+" ") {
				t.Errorf("phase %s has no line in the doc's phase table", p)
			}
		}
	}
}

func TestAllowed(t *testing.T) {
	for _, tt := range []struct {
		from, to phase
		want     bool
	}{
		{phaseLoading, phaseDialing, true},
		{phaseActive, phaseBackoff, true},
		{phaseStopped, phaseLoading, true},
		{phaseDialing, phaseActive, false},
		{phaseLoading, phasePairing, false},
		{phaseBackoff, phaseUnpaired, false},
	} {
		if got := allowed(tt.from, tt.to); got != tt.want {
			t.Errorf("allowed(%s, %s) = %v, want %v", tt.from, tt.to, got, tt.want)
		}
	}
}

// TestReportLeavesTheEndingReason: a send failed while its connection ends
// is reported first; the disconnect that follows still says why.
func TestReportLeavesTheEndingReason(t *testing.T) {
	var got []events.Event
	c := &conn{phase: phaseActive, deps: &Deps{AccountID: "a", Now: time.Now,
		Events: events.PublisherFunc(func(e events.Event) { got = append(got, e) })}}
	c.ending = events.ReasonNetwork
	c.report(events.KindMessageFailed, errNotConnected, nil)
	c.setPhase(phaseBackoff, events.KindDisconnected, errNotConnected, nil)
	if len(got) != 2 {
		t.Fatalf("%d events, want 2", len(got))
	}
	if got[0].Reason != "" {
		t.Errorf("the failed send took the ending's reason %q", got[0].Reason)
	}
	if got[1].Kind != events.KindDisconnected || got[1].Reason != events.ReasonNetwork {
		t.Errorf("the disconnect: %s with reason %q, want %s", got[1].Kind, got[1].Reason, events.ReasonNetwork)
	}
}
