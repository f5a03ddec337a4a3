package fetch

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/fault"
)

// TestBundleHostileServer runs the bundle command against servers that lie
// or misbehave. Each must end in exit 3 with an error naming the package
// (or the key, for entitlement faults), no acknowledgement, no bundle, and
// no retry of data that failed a check. A stall is the exception: it is the
// network's failure, not the data's (exit 1), so it is retried within the
// run, resuming what arrived, and a rerun resumes too.
func TestBundleHostileServer(t *testing.T) {
	// onFirst applies a hostile GET handler to the first package only.
	onFirst := func(h func(w http.ResponseWriter, r *http.Request, p fakePkg)) func(*fixture) {
		return func(fx *fixture) {
			first := fx.fv.pkgs[0].meta.SHA256
			fx.fv.download = func(w http.ResponseWriter, r *http.Request, p fakePkg, _ int) bool {
				if p.meta.SHA256 != first {
					return false
				}
				h(w, r, p)
				return true
			}
		}
	}
	flushHeaders := func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
	}
	// wait blocks until the client hangs up or d passes.
	wait := func(r *http.Request, d time.Duration) bool {
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	const pkg = "base@3.4.0"
	tests := []struct {
		name     string
		setup    func(*fixture)
		want     string // in the message, besides the class
		download bool   // the fault is in a download: it must not be retried
		keepPart bool   // a stall keeps its prefix for resuming
		stall    bool   // a stall is the network's failure (exit 1): retried, resumed
	}{
		{name: "wrong digest", download: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			b := append([]byte(nil), p.data...)
			b[len(b)/3] ^= 1
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		})},
		{name: "oversize body", download: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			flushHeaders(w) // chunked: no Content-Length to give it away
			w.Write(p.data)
			w.Write(make([]byte, 4096))
		})},
		{name: "oversize Content-Length", download: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			w.Header().Set("Content-Length", strconv.Itoa(len(p.data)+1))
			w.Write(p.data)
			w.Write([]byte{0})
		})},
		{name: "endless body", download: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			flushHeaders(w)
			chunk := make([]byte, 32<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		})},
		{name: "slow drip", download: true, keepPart: true, stall: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			w.Header().Set("Content-Length", strconv.Itoa(len(p.data)))
			flushHeaders(w)
			for i := 0; i < len(p.data); i++ {
				w.Write(p.data[i : i+1])
				http.NewResponseController(w).Flush()
				if !wait(r, 2*time.Second) {
					return
				}
			}
		})},
		{name: "no answer", download: true, stall: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			wait(r, 10*time.Second)
		})},
		{name: "redirect", download: true, want: pkg, setup: onFirst(func(w http.ResponseWriter, r *http.Request, p fakePkg) {
			http.Redirect(w, r, "http://mirror.invalid/"+p.meta.SHA256.String(), http.StatusFound)
		})},
		{name: "entitlement signed by another key", setup: func(fx *fixture) {
			_, _, _, other := testKeys(t)
			fx.fv.ent = fx.signEntitlement(other, func(*catalog.Entitlement) {})
		}},
		{name: "entitlement tampered", setup: func(fx *fixture) {
			s := string(fx.fv.ent)
			i := strings.Index(s, "\n\n") + 10
			c := byte('A')
			if s[i] == 'A' {
				c = 'B'
			}
			fx.fv.ent = []byte(s[:i] + string(c) + s[i+1:])
		}},
		{name: "entitlement for another key id", setup: func(fx *fixture) {
			other, _ := catalog.NewKeyID()
			fx.fv.ent = fx.signEntitlement(fx.vendor, func(e *catalog.Entitlement) { e.KeyID = other })
		}},
		{name: "entitlement for another site", want: "plant-9", setup: func(fx *fixture) {
			fx.fv.ent = fx.signEntitlement(fx.vendor, func(e *catalog.Entitlement) { e.Site = "plant-9" })
		}},
		{name: "download list with another size", want: pkg, setup: func(fx *fixture) {
			fx.fv.downloads = func(ds []download) []download { ds[0].Size++; return ds }
		}},
		{name: "download list missing a package", want: pkg, setup: func(fx *fixture) {
			fx.fv.downloads = func(ds []download) []download { return ds[1:] }
		}},
		{name: "download URL on another host", want: pkg, setup: func(fx *fixture) {
			fx.fv.downloads = func(ds []download) []download { ds[0].URL = "http://mirror.invalid/x"; return ds }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, 200<<10, 50<<10)
			tc.setup(fx)
			want := tc.want
			if want == "" {
				want = string(fx.key.ID)
			}
			o := fx.bundleOptions("b.airlock")
			o.Retries = 2
			o.Client.IdleTimeout = 200 * time.Millisecond
			start := time.Now()
			err := RunBundle(context.Background(), o, io.Discard, io.Discard)
			wantCode, wantGETs := fault.ExitVerification, 1
			if tc.stall {
				wantCode, wantGETs = fault.ExitOperational, 1+o.Retries
			}
			if fault.Code(err) != wantCode {
				t.Fatalf("err = %v (exit %d), want exit %d", err, fault.Code(err), wantCode)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			if n := fx.fv.ackCount(); n != 0 {
				t.Errorf("%d acknowledgements after a failure", n)
			}
			assertNoBundle(t, o.Out)
			if tc.download {
				fx.fv.mu.Lock()
				n := fx.fv.attempts[fx.fv.pkgs[0].meta.SHA256]
				fx.fv.mu.Unlock()
				if n != wantGETs {
					t.Errorf("%d GETs of the bad package, want %d: data that failed a check must not be retried, a stall is", n, wantGETs)
				}
			}
			part := filepath.Join(o.Out+CacheSuffix, fx.fv.pkgs[0].meta.SHA256.String()+partSuffix)
			if _, err := os.Stat(part); (err == nil) != tc.keepPart {
				t.Errorf("partial download kept: %v, want %v", err == nil, tc.keepPart)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s: the idle timeout (200ms) did not bound it", time.Since(start))
			}
		})
	}
}
