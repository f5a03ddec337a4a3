package keys

import (
	"fmt"
	"strings"

	"github.com/airlock-project/airlock/fault"
)

// Role is what a trusted key may sign. A key is trusted for exactly one role.
type Role string

// The roles of DESIGN.md "Keys and trust".
const (
	// RoleVendor signs catalog entries and entitlements (airlock-server).
	RoleVendor Role = "vendor"
	// RoleSite signs download keys (the restricted side's repository).
	RoleSite Role = "site"
	// RoleCourier signs bundle manifests (the operator of airlock-fetch).
	RoleCourier Role = "courier"
)

// Roles returns every valid role, in the order TrustStore.List sorts them.
func Roles() []Role { return []Role{RoleCourier, RoleSite, RoleVendor} }

// ErrRole reports a role name that is not one of Roles() (usage class).
var ErrRole = fault.Usage("unknown role")

// ParseRole parses a role name ("vendor", "site" or "courier"), ignoring case
// and surrounding space. Any other name is an error matching ErrRole (and
// fault.ErrUsage) whose message lists the valid roles.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if r.valid() {
		return r, nil
	}
	return "", fmt.Errorf("role %q is not one of vendor, site, courier: %w", printable(s), ErrRole)
}

// String returns the role name.
func (r Role) String() string { return string(r) }

func (r Role) valid() bool {
	return r == RoleVendor || r == RoleSite || r == RoleCourier
}

func (r Role) check() error {
	if r.valid() {
		return nil
	}
	_, err := ParseRole(string(r))
	return err
}
