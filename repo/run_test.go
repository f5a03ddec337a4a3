package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestRunJSON checks the JSON shapes of the listings: arrays, empty as [].
func TestRunJSON(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	o := e.opts()
	for name, run := range map[string]func(*bytes.Buffer) error{
		"list":       func(b *bytes.Buffer) error { return RunList(ctx, ListCmd{Options: o, JSON: true}, b, b) },
		"bundles":    func(b *bytes.Buffer) error { return RunBundles(ctx, ListCmd{Options: o, JSON: true}, b, b) },
		"key list":   func(b *bytes.Buffer) error { return RunKeyList(ctx, KeyListCmd{Options: o, JSON: true}, b, b) },
		"trust list": func(b *bytes.Buffer) error { return RunTrustList(ctx, TrustListCmd{Options: o, JSON: true}, b, b) },
		"audit":      func(b *bytes.Buffer) error { return RunAudit(ctx, AuditCmd{Options: o, JSON: true}, b, b) },
	} {
		var b bytes.Buffer
		if err := run(&b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var v []map[string]any
		if err := json.Unmarshal(b.Bytes(), &v); err != nil || v == nil {
			t.Errorf("%s --json = %s: not a JSON array (%v)", name, b.String(), err)
		}
		if name == "list" || name == "bundles" || name == "key list" {
			if strings.TrimSpace(b.String()) != "[]" {
				t.Errorf("%s --json on an empty repository = %s", name, b.String())
			}
		}
	}

	key := e.issue()
	var b bytes.Buffer
	path := e.bundle(key, "base@3.4.0")
	if err := RunImport(ctx, ImportCmd{Options: o, Bundle: path, JSON: true}, &b, &b); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Bundle   string
		KeyID    string `json:"key_id"`
		Imported string
		Packages []struct {
			Name, Version, SHA256 string
			New                   bool
		}
	}
	if err := json.Unmarshal(b.Bytes(), &res); err != nil || res.KeyID != string(key) || res.Imported == "" ||
		len(res.Packages) != 1 || res.Packages[0].Name != "base" || res.Packages[0].Version != "3.4.0" || !res.Packages[0].New {
		t.Errorf("import --json = %s (%v)", b.String(), err)
	}
	b.Reset()
	if err := RunCheck(ctx, CheckCmd{Options: o, JSON: true}, &b, &b); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Packages int
		Problems []Problem
		Removed  []string
	}
	if err := json.Unmarshal(b.Bytes(), &rep); err != nil || rep.Packages != 1 || rep.Problems == nil || rep.Removed == nil {
		t.Errorf("check --json = %s (%v)", b.String(), err)
	}
}
