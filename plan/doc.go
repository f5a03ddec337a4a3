// Package plan computes install orders: which packages a node needs, and in
// what sequence, to go from its installed versions to the newest available
// ones (Sequence), and the whole procedure that brings a cluster there
// under a strategy (Build).
//
// The vendor's server uses Sequence to decide what a download key is
// entitled to; the restricted side builds its cluster install plans with
// Build and executes them step by step.
//
// Everything here is pure computation: no I/O, no clock unless
// Options.Now is left zero, no repository. Functions neither modify their
// arguments nor keep them, and are safe for concurrent use.
//
// # Plans
//
// A Plan is a list of numbered Steps (drain, wait-connections, install,
// settle, verify, undrain, promote, pair, distribute) in the order the
// strategy prescribes, with a summary per node. Each step has an ID that
// depends only on what the step does ("install:n2:product@22.1.0"), never
// on its position, so a plan rebuilt after an interrupted run from the
// cluster's new state has the same IDs for the steps that remain; an
// executor may also record the IDs it finished and skip them, within one
// Plan.ID.
//
// Consecutive steps with the same nonzero Wave form a group of nodes that
// are out of service together: an executor may run the steps of different
// nodes of a wave concurrently, keeping each node's steps in order, and
// finishes a wave before it starts the next step. Steps of Wave 0 run
// alone, in order. The plan's order is also a valid order to run a wave's
// steps one at a time. A wave's steps act on one node each: promote and
// pair steps, which act on two, are always of Wave 0.
//
// Before each step an executor checks the health gates: every node touched
// so far answers, its clock is within a minute of the admin host's, it is
// drained exactly when the steps so far leave it drained, and the failover
// pair (if any) has exactly one primary. The state that the step itself
// sets (a drain, an undrain, the roles of a promote or pair) is left to
// the step. A verify step adds: the node runs the versions in Step.Expect.
//
// Around a wave run concurrently the gates must not observe a node that
// another node's steps are changing (an install may be rebooting it, a
// drain may be under way): the full gate runs before the wave starts (the
// state of each node's first step in the wave left to that step) and
// after it ends (before the next step); within the wave, the gate before a
// step of node N observes N and the nodes outside the wave only, and
// checks the pair's one-primary rule only when no other node of the wave
// belongs to the pair (the wave's steps never change roles).
package plan
