package cluster_test

import (
	"testing"

	"github.com/airlock-project/airlock/cluster"
)

func TestAPIErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		e    cluster.APIError
		want string
	}{
		{cluster.APIError{Node: "n1", Op: "install", Status: 409, Code: "downgrade", Message: "node n1: downgrade refused: base 3.3.0 is older than 3.4.0"},
			"node n1: install: downgrade refused: base 3.3.0 is older than 3.4.0 (downgrade)"},
		{cluster.APIError{Node: "n1", Op: "stage", Status: 409, Code: "not-staged", Message: "node n1 holds 3 of the 7 bytes"},
			"node n1: stage: node n1 holds 3 of the 7 bytes (not-staged)"},
		{cluster.APIError{Node: "n1", Op: "status", Status: 502},
			"node n1: status: HTTP status 502"},
		{cluster.APIError{Node: "n1", Op: "status", Status: 401, Code: "unauthorized", Message: "token t0ps3cret is wrong"},
			"node n1: status: the node refused the registered token (unauthorized): re-add the node with its token file (airlock node add n1 --token-file DIR/token …)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
