package cliapp

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/fault"
)

func testApp(action cli.ActionFunc) *cli.App {
	return &cli.App{Name: "prog", Commands: []*cli.Command{{
		Name: "site",
		Subcommands: []*cli.Command{{
			Name:   "add",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "key"}},
			Action: action,
		}},
	}}}
}

func TestExitCodesAndMessages(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"prog", "site", "add", "--key", "k"}, fault.ExitOK, ""},
		{[]string{"prog", "site", "add"}, fault.ExitUsage, "prog site add needs --key (see 'prog site add --help')"},
		{[]string{"prog", "site", "add", "--bogus"}, fault.ExitUsage, "prog site add: flag provided but not defined: -bogus (see 'prog site add --help')"},
		{[]string{"prog", "nosuch"}, fault.ExitUsage, `no command "nosuch"`},
	} {
		var stderr bytes.Buffer
		app := testApp(func(c *cli.Context) error { return Need(c, "key") })
		app.ErrWriter = &stderr
		app.Writer = &bytes.Buffer{}
		got := Run(context.Background(), app, tc.args, &stderr)
		if got != tc.want {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, got, tc.want, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, stderr.String(), tc.msg)
		}
	}
}

func TestErrorClassesMapToExitCodes(t *testing.T) {
	for err, want := range map[error]int{
		fault.Verification("bad signature"): fault.ExitVerification,
		fault.Policy("replay"):              fault.ExitPolicy,
	} {
		app := testApp(func(*cli.Context) error { return err })
		var stderr bytes.Buffer
		if got := Run(context.Background(), app, []string{"prog", "site", "add"}, &stderr); got != want {
			t.Errorf("%v: exit %d, want %d", err, got, want)
		}
		if !strings.HasPrefix(stderr.String(), "prog: ") {
			t.Errorf("message %q not prefixed by the program name", stderr.String())
		}
	}
}

func TestFlagsAfterArgs(t *testing.T) {
	var got []string
	var asJSON bool
	var level string
	app := &cli.App{Name: "prog", Commands: []*cli.Command{{
		Name:  "inspect",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json"}, &cli.StringFlag{Name: "level"}},
		Action: func(c *cli.Context) error {
			var err error
			got, err = Args(c, 1, 1, "one PATH")
			asJSON, level = c.Bool("json"), c.String("level")
			return err
		},
	}}}
	var stderr bytes.Buffer
	if code := Run(context.Background(), app, []string{"prog", "inspect", "b.airlock", "--json", "--level", "9"}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if len(got) != 1 || got[0] != "b.airlock" || !asJSON || level != "9" {
		t.Fatalf("args %v json %v level %q", got, asJSON, level)
	}
	if code := Run(context.Background(), app, []string{"prog", "inspect", "b.airlock", "--nope"}, &stderr); code != fault.ExitUsage {
		t.Fatalf("unknown trailing flag: exit %d", code)
	}
	if code := Run(context.Background(), app, []string{"prog", "inspect", "a", "b"}, &stderr); code != fault.ExitUsage {
		t.Fatalf("two paths: exit %d", code)
	}
}
