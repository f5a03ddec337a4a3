package node

import (
	"time"

	"github.com/airlock-project/airlock/catalog"
)

// Header names of the staging protocol (see the package documentation).
const (
	// HeaderOffset is where an upload chunk starts (request) or how many
	// bytes of a package are staged (HEAD answer, 409 answer).
	HeaderOffset = "X-Airlock-Offset"
	// HeaderSize is the package's signed size (HEAD answer).
	HeaderSize = "X-Airlock-Size"
	// HeaderComplete is "true" when the package is completely staged and
	// verified (HEAD answer).
	HeaderComplete = "X-Airlock-Complete"
)

// Roles a node may have in its cluster.
const (
	RolePrimary    = "primary"
	RoleBackup     = "backup"
	RoleTraffic    = "traffic"
	RoleManagement = "management"
)

// ValidRole reports whether r is one of the node roles.
func ValidRole(r string) bool {
	switch r {
	case RolePrimary, RoleBackup, RoleTraffic, RoleManagement:
		return true
	}
	return false
}

// Status is the answer of GET /v1/status.
type Status struct {
	Name      string                     `json:"name"`
	Role      string                     `json:"role"`
	Region    string                     `json:"region"`
	Installed map[string]catalog.Version `json:"installed"`
	// Staged lists complete and partial uploads, by digest.
	Staged  []StagedPackage `json:"staged"`
	Drained bool            `json:"drained"`
	// Accepting tells whether the node accepts new client connections now.
	// With the reference client service it is whether that service is
	// serving, undrained and below its connection limit; without it, it is
	// !Drained (the site's service, told by hooks/drain and hooks/undrain,
	// is trusted to follow the flag).
	Accepting bool `json:"accepting"`
	// Service is the address of the reference client service, "" if the
	// agent runs none.
	Service string `json:"service"`
	// Connections is the number of open client connections: what
	// hooks/connections printed if it exists, else the reference service's
	// count, else 0. It is -1 when hooks/connections failed; then
	// ConnectionsError says why.
	Connections      int    `json:"connections"`
	ConnectionsError string `json:"connections_error,omitempty"`
	// Time is the node's clock (RFC 3339 with nanoseconds).
	Time time.Time `json:"time"`
	// Jobs lists the queued and running install jobs, oldest first.
	Jobs []Job `json:"jobs"`
}

// StagedPackage describes one package known to the node: its entitlement
// verified, its data complete (Complete, Offset == Size) or partial.
type StagedPackage struct {
	SHA256   catalog.Digest  `json:"sha256"`
	Name     string          `json:"name"`
	Version  catalog.Version `json:"version"`
	Size     int64           `json:"size"`
	Offset   int64           `json:"offset"`
	Complete bool            `json:"complete"`
}

// JobState is the state of an install job.
type JobState string

// The job states. Queued and running jobs are "active"; the others are final.
const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
)

// JobPackage names the package a job installs.
type JobPackage struct {
	SHA256  catalog.Digest  `json:"sha256"`
	Name    string          `json:"name"`
	Version catalog.Version `json:"version"`
}

// Job is an install job, as GET /v1/jobs/{id} returns it.
type Job struct {
	ID      string     `json:"id"`
	State   JobState   `json:"state"`
	Package JobPackage `json:"package"`
	// Error and Code say why a failed job failed (Code as in APIError).
	Error    string    `json:"error,omitempty"`
	Code     string    `json:"code,omitempty"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

func (j Job) active() bool { return j.State == JobQueued || j.State == JobRunning }

// InstallRequest is the body of POST /v1/install.
type InstallRequest struct {
	SHA256 catalog.Digest `json:"sha256"`
}

// RoleRequest is the body of POST /v1/role.
type RoleRequest struct {
	Role string `json:"role"`
}

// APIError is the body of every error answer. Code is one of:
//
//	unauthorized (401), bad-request (400), not-found (404),
//	too-large (413), busy (503), internal (500),
//	no-entitlement, offset-mismatch, upload-in-progress, not-staged,
//	already-installed, downgrade, requires-unmet (409),
//	untrusted-signer (403), verification-failed, not-entitled,
//	digest-mismatch, unsafe-archive (422), refused (409, other policy refusals),
//	hook-failed (500 from drain, undrain and role; and in failed jobs),
//	interrupted (in failed jobs only).
type APIError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}
