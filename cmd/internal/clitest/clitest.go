// Package clitest holds testscript commands that the scenarios of more
// than one program use.
package clitest

import (
	"errors"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/airlock-project/airlock/keys"
)

// Encrypted is the script command "[!] encrypted FILE": it succeeds if the
// private key FILE is passphrase-protected (it does not open without a
// passphrase: keys.ErrPassphrase); negated, if it opens without one.
func Encrypted(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: [!] encrypted FILE")
	}
	_, err := keys.ReadPrivateFile(ts.MkAbs(args[0]), nil)
	switch {
	case err == nil && neg:
	case err == nil:
		ts.Fatalf("%s opens without a passphrase", args[0])
	case !errors.Is(err, keys.ErrPassphrase):
		ts.Fatalf("%s: %v", args[0], err)
	case neg:
		ts.Fatalf("%s is passphrase-protected", args[0])
	}
}
