// Package walkthrough holds the test that runs the commands of README.md's
// "A deployment, step by step" as written, in order, against loopback, so
// that the README a newcomer follows stays true to what the programs do.
//
// It has no code of its own: see walkthrough_test.go for how the README's
// host names, directories and fingerprints are swapped for local ones.
package walkthrough
