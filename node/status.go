package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	"github.com/airlock-project/airlock/catalog"
)

// StatusOptions are the parameters of RunStatus.
type StatusOptions struct {
	// Dir is the node directory.
	Dir string
	// JSON prints LocalStatus as JSON instead of text.
	JSON bool
}

// LocalStatus is what RunStatus reports: the node as its directory
// describes it, read without the agent (it may be serving or not).
type LocalStatus struct {
	Name        string                     `json:"name"`
	Role        string                     `json:"role"`
	Region      string                     `json:"region"`
	Installed   map[string]catalog.Version `json:"installed"`
	Drained     bool                       `json:"drained"`
	Fingerprint string                     `json:"fingerprint"`
	TokenFile   string                     `json:"token_file"`
	Jobs        []Job                      `json:"jobs"`
}

// RunStatus prints the node's identity (with the certificate fingerprint to
// pin), installed versions and last jobs from its directory. It only reads.
func RunStatus(ctx context.Context, o StatusOptions, stdout, stderr io.Writer) error {
	st, err := loadState(o.Dir)
	if err != nil {
		return err
	}
	fp, err := certFingerprintFile(o.Dir)
	if err != nil {
		return fmt.Errorf("node %s: %w", st.Name, err)
	}
	ls := LocalStatus{Name: st.Name, Role: st.Role, Region: st.Region, Installed: st.installedCopy(),
		Drained: st.Drained, Fingerprint: fp, TokenFile: tokenPath(o.Dir), Jobs: st.Jobs}
	if ls.Jobs == nil {
		ls.Jobs = []Job{}
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ls)
	}
	fmt.Fprintf(stdout, "node %s (role %s", ls.Name, ls.Role)
	if ls.Region != "" {
		fmt.Fprintf(stdout, ", region %s", ls.Region)
	}
	fmt.Fprintf(stdout, ")%s\n", map[bool]string{true: ", drained", false: ""}[ls.Drained])
	fmt.Fprintf(stdout, "certificate SHA-256 fingerprint: %s\n", fp)
	names := make([]string, 0, len(ls.Installed))
	for n := range ls.Installed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "installed %s %s\n", n, ls.Installed[n])
	}
	for i := max(0, len(ls.Jobs)-5); i < len(ls.Jobs); i++ {
		j := ls.Jobs[i]
		fmt.Fprintf(stdout, "job %s %s@%s %s", j.ID, j.Package.Name, j.Package.Version, j.State)
		if j.Error != "" {
			fmt.Fprintf(stdout, ": %s", j.Error)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}
