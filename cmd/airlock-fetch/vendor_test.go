package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/catalog"
	"github.com/airlock-project/airlock/keys"
	"github.com/airlock-project/airlock/progress"
	"github.com/airlock-project/airlock/server"
)

// running holds each script's vendor server, so that 'vendor stop' finds it.
var running sync.Map // *testscript.TestScript -> func()

// cmdVendor runs the vendor's side of a scenario in the test process:
//
//	vendor start
//
// makes a vendor store in $WORK/vendor-store (a real server.Server), with
// site plant-3 registered and two packages published: base@3.4.0
// (requires base >= 3.3.2) and product@22.1.0 (requires base >= 3.4.0).
// It serves the vendor protocol on a loopback port until the script ends
// (or 'vendor stop'), and writes into $WORK:
//
//	vendor.pub.asc   the vendor's public key, for --vendor-key
//	plant-3.key      the site's private key (what 'airlock init' keeps)
//	download.key     a download key of plant-3, valid for 72h, for one
//	                 node with base 3.3.2 and product 21.1.0 installed:
//	                 the server entitles it to both packages
//
// It sets $SERVER to the base URL and $BASE_BLOB to the store's file of
// base@3.4.0 (remove it to make the server fail on that download).
//
//	vendor stop
//
// stops the server, so that $SERVER refuses connections.
func cmdVendor(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || (args[0] != "start" && args[0] != "stop") {
		ts.Fatalf("usage: vendor start|stop")
	}
	if args[0] == "stop" {
		stop, ok := running.LoadAndDelete(ts)
		if !ok {
			ts.Fatalf("vendor stop: no vendor server is running")
		}
		stop.(func())()
		return
	}
	ctx := context.Background()
	store := ts.MkAbs("vendor-store")
	_, err := server.Init(store, "Acme Vendor", time.Now().Add(-time.Hour))
	ts.Check(err)
	s, err := server.Open(server.Config{Dir: store})
	ts.Check(err)
	site, err := keys.Generate(keys.GenerateOptions{Name: "airlock site plant-3", Now: time.Now().Add(-time.Hour)})
	ts.Check(err)
	_, err = s.AddSite(ctx, "plant-3", site.Public().Armored())
	ts.Check(err)
	var baseBlob string
	for _, p := range []struct{ name, kind, version, requires string }{
		{"base", "base", "3.4.0", "base >= 3.3.2"},
		{"product", "product", "22.1.0", "base >= 3.4.0"},
	} {
		src := filepath.Join(ts.MkAbs("vendor-src"), p.name+"-"+p.version+".tar")
		ts.Check(os.MkdirAll(filepath.Dir(src), 0o755))
		ts.Check(os.WriteFile(src, bytes.Repeat([]byte(p.name+" "+p.version+"\n"), 4096), 0o644))
		kind, err := catalog.ParseKind(p.kind)
		ts.Check(err)
		v, err := catalog.ParseVersion(p.version)
		ts.Check(err)
		c, err := catalog.ParseConstraint(p.requires)
		ts.Check(err)
		res, err := s.Publish(ctx, server.PublishRequest{Name: p.name, Kind: kind, Version: v, Requires: []catalog.Constraint{c}, File: src}, progress.Discard)
		ts.Check(err)
		if p.name == "base" {
			d := res.Package.SHA256.String()
			baseBlob = filepath.Join(store, server.PackagesDir, "sha256", d[:2], d)
		}
	}
	ts.Check(keys.WritePublicFile(ts.MkAbs("vendor.pub.asc"), s.VendorKey()))
	ts.Check(keys.WritePrivateFile(ts.MkAbs("plant-3.key"), site, nil))
	writeDownloadKey(ts, site, "plant-3", time.Now().Add(-time.Minute), time.Now().Add(72*time.Hour), ts.MkAbs("download.key"))

	hs := httptest.NewServer(s.Handler())
	var once sync.Once
	stop := func() { once.Do(func() { hs.Close(); s.Close() }) }
	running.Store(ts, stop)
	ts.Defer(func() { running.Delete(ts); stop() })
	ts.Setenv("SERVER", hs.URL)
	ts.Setenv("BASE_BLOB", baseBlob)
}

// cmdDownloadKey writes a download key for one node with base 3.3.2 and
// product 21.1.0 installed:
//
//	downloadkey [-site NAME] [-stranger] [-issued DURATION] [-expires DURATION] FILE
//
// It is signed with $WORK/plant-3.key (see vendor), or with -stranger by a
// new key that no vendor has registered. -site is the site it names
// (default plant-3); -issued and -expires are offsets from now (default
// -1m and 72h).
func cmdDownloadKey(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("downloadkey", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	site := fs.String("site", "plant-3", "")
	stranger := fs.Bool("stranger", false, "")
	issued := fs.Duration("issued", -time.Minute, "")
	expires := fs.Duration("expires", 72*time.Hour, "")
	if neg || fs.Parse(args) != nil || fs.NArg() != 1 {
		ts.Fatalf("usage: downloadkey [-site NAME] [-stranger] [-issued DURATION] [-expires DURATION] FILE")
	}
	var signer *keys.PrivateKey
	var err error
	if *stranger {
		signer, err = keys.Generate(keys.GenerateOptions{Name: "airlock site " + *site, Now: time.Now().Add(-time.Hour)})
	} else {
		signer, err = keys.ReadPrivateFile(ts.MkAbs("plant-3.key"), nil)
	}
	ts.Check(err)
	now := time.Now()
	writeDownloadKey(ts, signer, *site, now.Add(*issued), now.Add(*expires), ts.MkAbs(fs.Arg(0)))
}

func writeDownloadKey(ts *testscript.TestScript, signer *keys.PrivateKey, site string, issued, expires time.Time, path string) {
	id, err := catalog.NewKeyID()
	ts.Check(err)
	installed := map[string]catalog.Version{}
	for c, v := range map[string]string{"base": "3.3.2", "product": "21.1.0"} {
		installed[c], err = catalog.ParseVersion(v)
		ts.Check(err)
	}
	payload, err := catalog.DownloadKey{Format: catalog.DownloadKeyFormat, Site: site, ID: id,
		Issued: issued.UTC().Truncate(time.Second), Expires: expires.UTC().Truncate(time.Second),
		Nodes: []catalog.NodeInventory{{Name: "n1", Installed: installed}}}.Encode()
	ts.Check(err)
	var msg bytes.Buffer
	ts.Check(signer.SignMessage(&msg, payload))
	ts.Check(os.WriteFile(path, msg.Bytes(), 0o644))
}
