package cliapp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/airlock-project/airlock/fault"
)

// progEnv makes the test binary run testApp as "prog" instead of the tests,
// so that a completion script can call it like an installed program.
const progEnv = "CLIAPP_TEST_RUN_PROG"

func TestMain(m *testing.M) {
	if os.Getenv(progEnv) == "1" {
		os.Exit(Exec(testApp(func(*cli.Context) error { return nil })))
	}
	os.Exit(m.Run())
}

// runProg runs testApp with args and returns its exit code, stdout and stderr.
func runProg(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := testApp(func(*cli.Context) error { return nil })
	app.Writer, app.ErrWriter = &stdout, &stderr
	code := Run(context.Background(), app, append([]string{"prog"}, args...), &stderr)
	return code, stdout.String(), stderr.String()
}

func TestDocsMan(t *testing.T) {
	code, out, errOut := runProg(t, DocsCommand, "man")
	if code != fault.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{".TH prog 1", ".SH NAME", "site", "add", `\fB--key\fP`} {
		if !strings.Contains(out, want) {
			t.Errorf("manual lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, DocsCommand) {
		t.Errorf("manual lists the hidden %s command:\n%s", DocsCommand, out)
	}
}

func TestDocsMarkdown(t *testing.T) {
	code, out, errOut := runProg(t, DocsCommand, "markdown")
	if code != fault.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"# NAME", "\n## site\n", "\n### add\n", "**--key**"} {
		if !strings.Contains(out, want) {
			t.Errorf("reference lacks %q:\n%s", want, out)
		}
	}
}

func TestDocsCommandIsHidden(t *testing.T) {
	code, out, _ := runProg(t, "--help")
	if code != fault.ExitOK || !strings.Contains(out, "site") || strings.Contains(out, DocsCommand) {
		t.Fatalf("exit %d, help lists site but not %s? %s", code, DocsCommand, out)
	}
	// Prepare runs on every Run: the command is added once.
	app := testApp(nil)
	Prepare(app)
	Prepare(app)
	n := 0
	for _, c := range app.Commands {
		if c.Name == DocsCommand {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d %s commands after two Prepare calls", n, DocsCommand)
	}
}

func TestDocsCompletionScripts(t *testing.T) {
	for shell, wants := range map[string][]string{
		"bash": {"complete -o bashdefault -o default -o nospace -F _prog_complete prog\n", "--generate-bash-completion"},
		"zsh":  {"#compdef prog\n", "compdef _prog_complete prog\n", "--generate-bash-completion"},
	} {
		code, out, errOut := runProg(t, DocsCommand, "completion", shell)
		if code != fault.ExitOK {
			t.Fatalf("%s: exit %d: %s", shell, code, errOut)
		}
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s script lacks %q:\n%s", shell, want, out)
			}
		}
	}
	// A program name that is no shell identifier still makes a valid function name.
	s, err := Completion("airlock-server", "bash")
	if err != nil || !strings.Contains(s, "-F _airlock_server_complete airlock-server\n") {
		t.Errorf("airlock-server: %v\n%s", err, s)
	}
	for _, args := range [][]string{
		{DocsCommand, "completion", "fish"},
		{DocsCommand, "completion"},
		{DocsCommand, "man", "extra"},
		{DocsCommand, "nosuch"},
	} {
		if code, _, errOut := runProg(t, args...); code != fault.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, fault.ExitUsage, errOut)
		}
	}
}

// TestBashCompletionCompletes sources the bash script in a real bash, as
// the bash-completion package would, and completes against the test binary
// installed as "prog".
func TestBashCompletionCompletes(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "prog")); err != nil {
		t.Fatal(err)
	}
	script, err := Completion("prog", "bash")
	if err != nil {
		t.Fatal(err)
	}
	scriptFile := filepath.Join(dir, "prog.bash")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string // the command line; the last word is being completed
		want  string
	}{
		{[]string{"prog", "si"}, "site"},
		{[]string{"prog", "site", ""}, "add"},
		{[]string{"prog", "site", "add", "--k"}, "--key"},
	} {
		var quoted []string
		for _, w := range tc.words {
			quoted = append(quoted, "'"+w+"'")
		}
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c",
			`source "$1" && COMP_WORDS=(`+strings.Join(quoted, " ")+`) && COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) && _prog_complete && printf '%s\n' "${COMPREPLY[@]}"`,
			"bash", scriptFile)
		cmd.Env = append(os.Environ(), progEnv+"=1", "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", tc.words, err, out)
		}
		if got := strings.Fields(string(out)); !contains(got, tc.want) {
			t.Errorf("%v: completions %q lack %q", tc.words, got, tc.want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestLogger(t *testing.T) {
	var logged bytes.Buffer
	run := func(args ...string) int {
		logged.Reset()
		app := &cli.App{Name: "prog", Commands: []*cli.Command{{
			Name:  "serve",
			Flags: []cli.Flag{LogFormatFlag, LogLevelFlag},
			Action: func(c *cli.Context) error {
				log, err := Logger(c)
				if err != nil {
					return err
				}
				log.Debug("detail")
				log.Info("serving", "addr", "127.0.0.1:1")
				return nil
			},
		}}}
		app.ErrWriter, app.Writer = &logged, &bytes.Buffer{}
		return Run(context.Background(), app, append([]string{"prog", "serve"}, args...), &logged)
	}

	if code := run(); code != 0 || !strings.Contains(logged.String(), `level=INFO msg=serving addr=127.0.0.1:1`) || strings.Contains(logged.String(), "detail") {
		t.Errorf("default: exit %d, logged %q", code, logged.String())
	}
	if code := run("--log-level", "debug"); code != 0 || !strings.Contains(logged.String(), "msg=detail") {
		t.Errorf("debug: exit %d, logged %q", code, logged.String())
	}
	if code := run("--log-level", "warn"); code != 0 || logged.Len() != 0 {
		t.Errorf("warn: exit %d, logged %q", code, logged.String())
	}
	if code := run("--log-format", "json"); code != 0 {
		t.Errorf("json: exit %d, logged %q", code, logged.String())
	} else {
		var line struct{ Level, Msg, Addr string }
		if err := json.Unmarshal(logged.Bytes(), &line); err != nil || line.Level != "INFO" || line.Msg != "serving" || line.Addr != "127.0.0.1:1" {
			t.Errorf("json: %v, logged %q", err, logged.String())
		}
	}
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "loud"}, {"--log-level", "INFO+2"}} {
		if code := run(args...); code != fault.ExitUsage || !strings.Contains(logged.String(), args[0]) {
			t.Errorf("%v: exit %d, logged %q", args, code, logged.String())
		}
	}
}
