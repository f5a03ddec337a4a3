package plan

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteText writes the plan for an operator: a header, one line per node
// with its packages in install order (and when settle holds one back),
// then the numbered steps. Times are in UTC, to the minute (rounded up,
// so that "not before" never reads earlier than it is). It returns the
// first write error.
func (p *Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Plan %s: strategy %s, made %s\n\n", p.ID, p.Strategy, p.Created.UTC().Format(timeLayout))
	fmt.Fprintln(bw, "Nodes, in install order:")
	for _, n := range p.Nodes {
		fmt.Fprintf(bw, "  %s (%s): ", n.Node, roleRegion(n.Role, n.Region))
		if n.UpToDate {
			fmt.Fprintln(bw, "up to date")
			continue
		}
		parts := make([]string, len(n.Packages))
		for i, pp := range n.Packages {
			parts[i] = pp.Name + " " + pp.Version.String()
			if !pp.Earliest.IsZero() {
				parts[i] += " (not before " + fmtTime(pp.Earliest) + ")"
			}
		}
		fmt.Fprintln(bw, strings.Join(parts, ", "))
	}
	fmt.Fprintln(bw)
	if len(p.Steps) == 0 {
		fmt.Fprintln(bw, "Steps: none, every node is up to date.")
		return bw.Flush()
	}
	fmt.Fprintln(bw, "Steps:")
	width := len(fmt.Sprint(len(p.Steps)))
	for _, s := range p.Steps {
		fmt.Fprintf(bw, "  %*d. %s\n", width, s.N, s.Text)
	}
	return bw.Flush()
}

const timeLayout = "2006-01-02 15:04 UTC"

// fmtTime formats t in UTC to the minute, rounding up.
func fmtTime(t time.Time) string {
	t = t.UTC()
	if r := t.Truncate(time.Minute); !r.Equal(t) {
		t = r.Add(time.Minute)
	}
	return t.Format(timeLayout)
}

// FormatDuration writes 24h, 30m or 1h30m rather than 24h0m0s, as step
// texts do.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
