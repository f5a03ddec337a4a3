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
// and executes its steps in order, one at a time. Before each step the
// health gates are checked (every node touched so far answers, its clock
// is within MaxClockSkew, it is drained exactly when the recorded steps
// leave it drained, the failover pair has exactly one primary); after
// each, the step is recorded as done, with its audit entry, before the next
// starts. An install step submits the job, records the job's id, then
// polls it until it succeeds or fails and checks the version the node
// reports. On a rerun, recorded steps are skipped, and a step whose effect
// the node already shows (the version installed, the node drained, the
// roles swapped) is recorded as skipped without acting: an interrupted run,
// even one killed between acting and recording, never repeats a step or
// installs a package twice.
//
// A wait-connections step polls a drained node until its client
// connections have ended; if some are still open after the drain timeout,
// the step fails (ErrDrainTimeout), leaving the node drained with nothing
// installed on it, so that no install cuts a client.
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
package cluster
