// Package cluster is the restricted side's client of the node agents
// (package node): it registers nodes, asks them for their state, stages
// packages on them (Distribute) and drives a rollout step by step
// (Install), recording its progress in the repository so that an
// interrupted rollout resumes where it stopped.
//
// # Trust
//
// A Client talks HTTPS to one agent and accepts exactly one certificate:
// the one whose SHA-256 fingerprint was pinned by airlock node add. Any
// other certificate fails the handshake with a *FingerprintError
// (verification class) naming both fingerprints. Every request carries the
// node's bearer token. Answers are bounded (1 MiB of JSON); every call but
// the upload of package bytes has a timeout, and an upload is dropped when
// it stops moving.
//
// # Distribute
//
// Distribute asks every selected node for its state, computes the packages
// its install sequence needs (plan.Sequence) less what it has staged, and
// stages them one package at a time. A package is read from the
// repository once for all the nodes that need it (per group of
// DistributeOptions.Parallel nodes): one reader feeds a bounded pipe per
// node (16 chunks of 256 KiB), each node starting at its own resume offset
// (HEAD first; the entitlement of the bundle that delivered the package is
// sent first to a node that does not know the package, so that it learns
// the package's metadata only from the vendor's signature). A node whose
// upload fails, or whose pipe stays full for the stall timeout, is dropped
// from the fan-out; the others go on. Memory does not grow with package
// size.
//
// # Install
//
// Install plans with plan.Build from the nodes' live state (or resumes the
// unfinished rollout), records the plan as a rollout (repo.StartRollout)
// and executes its steps in order. Before each step the health gates are
// checked (every node touched so far answers, its clock is within
// MaxClockSkew, it is drained exactly when the recorded steps leave it
// drained, the failover pair has exactly one primary); after each, the
// step is recorded as done, with its audit entry, before the next step of
// its node starts. An install step submits the job, records the job's id,
// then polls it until it succeeds or fails and checks the version the
// node reports. On a rerun, recorded steps are skipped, and a step whose effect
// the node already shows (the version installed, the node drained, the
// roles swapped) is recorded as skipped without acting: an interrupted run,
// even one killed between acting and recording, never repeats a step or
// installs a package twice.
//
// Each finished step prints one line, "[n/N] text: state (note) in D",
// and emits a step event. A step still running prints a heartbeat line
// every InstallOptions.Heartbeat (30s by default), "[n/N] text: status",
// and emits a running event with the same status (Event.Note), so that a
// slow step can be told from a stuck one. The status is what the step
// last learned: a wait for connections gives the count open at the last
// poll and how long it has waited of the drain timeout ("2 open, waiting
// 1m30s of at most 30m"); an install, its job's id and state as last
// polled, and for how long by the node's times ("job
// 3f9a0c5e71d2b84e6a1c0f27 running for 2m"); a settle delay, the time
// left ("3h12m left, until 2025-06-02T03:00:00Z"); any other step,
// "running for D". A step's heartbeat ends before its final line is
// printed. Distribute steps have none: Progress reports their uploads.
//
// # Waves
//
// The steps of a wave of the plan (plan.Step.Wave: nodes out of service
// together) that act on two or more nodes run concurrently: one goroutine
// per node, at most the wave's size, runs that node's steps of the wave
// in order, and the wave ends when every goroutine has ended; the next
// step starts only then. Consecutive distribute steps (atlas's first
// wave) run as one fan-out instead (see Distribute); a wave with a
// promote or pair step, or with one node left, runs one step at a time. The gates of a wave never observe a
// node that another goroutine is acting on (an install may be rebooting
// it), so that concurrency causes no false alarm:
//
//   - before the wave: the full gate, over every node touched so far and
//     the pair, leaving to each node's first step in the wave the drained
//     state that step sets;
//   - within the wave, before a step of node N (in N's goroutine): N
//     itself and the nodes outside the wave (nothing in the wave changes
//     them), and the pair's one-primary rule unless another node of the
//     wave belongs to the pair (a wave's steps never change roles);
//   - after the wave: the full gate, before the next step (or the final
//     gate after the last).
//
// When a step of a wave fails, its line is printed and its failed event
// emitted at once; the other nodes finish the step they are in (an
// install is never cut; a wait for connections or a settle delay is cut
// short and stays pending) and start no other. The failures are recorded
// when the wave has ended and returned together: one *StepError, or
// several joined with errors.Join in step order. An interruption (the
// context canceled) ends the steps in flight as it ends a single step (an
// install job stays submitted, followed on the rerun); what finished is
// recorded. Lines and events are written whole, those of different nodes
// interleaved, each node's in the order of its steps; each running step
// has its own heartbeat, so a tick prints one line per step in flight.
// Hook is never called concurrently.
//
// The rollout record keeps each step's wave, so a resumed rollout runs
// its remaining waves as a fresh one would; the gate before a wave lets
// each node's first remaining step find that step already done (an
// interruption can end a step after its node acted and before it was
// recorded). Records written before waves were kept run one step at a
// time.
//
// A wait-connections step polls a drained node until its client
// connections have ended; if some are still open after the drain timeout,
// the step fails (ErrDrainTimeout), leaving the node drained with nothing
// installed on it, so that no install cuts a client. The drain timeout is
// saved in the rollout's plan; a resumed rollout keeps it unless
// InstallOptions.DrainTimeout is given again, which then bounds the waits
// that remain.
//
// The first failed step stops the rollout with a *StepError naming the
// rollout, the step, the node and its state; its cause gives the exit
// code (a node that does not answer, or client connections still open
// after the drain timeout: 1; a refusal by the node, such as a downgrade
// or unmet requirements: 4; a failed health gate or a verification by the
// node: 3).
//
// # Concurrency
//
// Distribute and Install take an open repository (read-write, so that
// nothing else writes it while they run) and are not meant to run
// concurrently on one repository; a Client is safe for concurrent use.
// Install's own goroutines (the nodes of a wave, the heartbeat of each
// running step) end before it returns.
package cluster
