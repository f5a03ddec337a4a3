package repo

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

func TestRollouts(t *testing.T) {
	e := newEnv(t)
	r := e.open()
	defer r.Close()
	base := catalog.Package{Name: "base", Kind: catalog.KindBase, Version: catalog.MustVersion("3.4.0"), SHA256: catalog.Digest{1}, Size: 1, Settle: catalog.Duration(time.Hour)}
	steps := []RolloutStep{
		{ID: "drain:n1", N: 1, Kind: "drain", Node: "n1", Text: "drain n1"},
		{ID: "install:n1:base@3.4.0", N: 2, Kind: "install", Node: "n1", Package: &base, Text: "install base 3.4.0 on n1"},
		{ID: "undrain:n1", N: 3, Kind: "undrain", Node: "n1", Text: "undrain n1"},
	}
	if _, err := r.StartRollout(Rollout{Strategy: "rolling", Steps: []RolloutStep{steps[0], steps[0]}}); fault.Code(err) != fault.ExitUsage {
		t.Errorf("repeated step ids: %v", err)
	}
	if ro, err := r.UnfinishedRollout(); err != nil || ro != nil {
		t.Fatalf("unfinished before any: %v, %v", ro, err)
	}
	ro, err := r.StartRollout(Rollout{Plan: "p1", Strategy: "rolling", Steps: steps})
	if err != nil || ro.ID != 1 || ro.State != RolloutRunning || ro.Actor != "tester@host" || ro.Steps[0].State != StepPending {
		t.Fatalf("StartRollout: %+v, %v", ro, err)
	}
	if _, err := r.StartRollout(Rollout{Strategy: "rolling", Steps: steps}); fault.Code(err) != fault.ExitPolicy || !strings.Contains(err.Error(), "rollout 1") {
		t.Errorf("second rollout while one is unfinished: %v", err)
	}
	if _, err := r.FinishRollout(1, RolloutFinished); err == nil {
		t.Error("a rollout with pending steps finished")
	}
	if ro, err = r.UpdateStep(1, "drain:n1", StepUpdate{State: StepDone}); err != nil || ro.Next() != 1 {
		t.Fatalf("UpdateStep: %v, next %d", err, ro.Next())
	}
	if _, err := r.UpdateStep(1, "drain:n1", StepUpdate{State: StepFailed}); fault.Code(err) != fault.ExitPolicy {
		t.Errorf("changing a finished step: %v", err)
	}
	if _, err := r.UpdateStep(1, "nope", StepUpdate{State: StepDone}); fault.Code(err) != fault.ExitUsage {
		t.Errorf("unknown step: %v", err)
	}
	ro, err = r.UpdateStep(1, "install:n1:base@3.4.0", StepUpdate{State: StepSubmitted, Job: "j1"})
	if err != nil || ro.Steps[1].Job != "j1" {
		t.Fatalf("submitted: %+v, %v", ro.Steps[1], err)
	}
	ro, err = r.UpdateStep(1, "install:n1:base@3.4.0", StepUpdate{State: StepFailed, Error: "node n1 refused"})
	if err != nil || ro.State != RolloutFailed || !strings.Contains(ro.Error, "node n1 refused") || ro.Steps[1].Job != "j1" {
		t.Fatalf("failed: %+v, %v", ro, err)
	}
	if cur, err := r.UnfinishedRollout(); err != nil || cur == nil || cur.ID != 1 || cur.Next() != 1 {
		t.Fatalf("a failed rollout is unfinished: %+v, %v", cur, err)
	}
	seen := map[string]NodeSeen{"n1": {At: e.clock(), Role: "primary"}}
	ro, err = r.UpdateStep(1, "install:n1:base@3.4.0", StepUpdate{State: StepDone, Seen: seen})
	if err != nil || ro.State != RolloutRunning || ro.Error != "" {
		t.Fatalf("done after failed: %+v, %v", ro, err)
	}
	last, err := r.LastInstalls()
	if err != nil || len(last) != 1 || last[0].Node != "n1" || last[0].Kind != catalog.KindBase || last[0].Package.ID() != "base@3.4.0" || last[0].Rollout != 1 {
		t.Errorf("LastInstalls = %+v, %v", last, err)
	}
	if _, err := r.UpdateStep(1, "undrain:n1", StepUpdate{State: StepSkipped}); err != nil {
		t.Fatal(err)
	}
	if ro, err = r.FinishRollout(1, RolloutFinished); err != nil || ro.State != RolloutFinished || ro.Finished.IsZero() {
		t.Fatalf("finish: %+v, %v", ro, err)
	}
	if _, err := r.UpdateStep(1, "undrain:n1", StepUpdate{State: StepDone}); err == nil {
		t.Error("a finished rollout changed")
	}

	// The next one can start, and be abandoned.
	ro, err = r.StartRollout(Rollout{Strategy: "rolling", Steps: steps})
	if err != nil || ro.ID != 2 {
		t.Fatalf("second rollout: %+v, %v", ro, err)
	}
	if ro, err = r.FinishRollout(2, RolloutAbandoned); err != nil || ro.State != RolloutAbandoned {
		t.Fatalf("abandon: %+v, %v", ro, err)
	}
	all, err := r.Rollouts()
	if err != nil || len(all) != 2 {
		t.Fatalf("Rollouts = %d, %v", len(all), err)
	}
	log, err := r.AuditLog()
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range log[len(log)-9:] {
		actions = append(actions, en.Action)
	}
	want := "rollout.start rollout.drain rollout.install rollout.install rollout.install rollout.undrain rollout.finish rollout.start rollout.abandon"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("audit actions\n%s\nwant\n%s", got, want)
	}
	r.Close()
	e.mustCheck()
}
