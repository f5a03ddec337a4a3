package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fault injection for the crash and failure tests, read from the
// environment (only cmd/ reads it). Never set these in production.
//
//	AIRLOCK_TEST_CRASH=POINT[:N]  kill this process with SIGKILL the Nth time
//	                              (default first) it reaches hook point POINT
//	AIRLOCK_TEST_FAIL=POINT[:N]   fail there with an injected I/O error instead
//
// The points are repo.Hook* of import ("ingested", "verified", "published",
// "commit", "committed") and of key rotate ("rotate-staged",
// "rotate-committed", "rotate-published"), and cluster.Hook* of install
// ("job-submitted", "step-executed", "step-recorded", reached once per
// step).
const (
	envCrash = "AIRLOCK_TEST_CRASH"
	envFail  = "AIRLOCK_TEST_FAIL"
)

// testHook returns the import or install hook the environment asks for, or
// nil.
func testHook() (func(point string) error, error) {
	crash, ccount, err := parseHookEnv(envCrash)
	if err != nil {
		return nil, err
	}
	fail, fcount, err := parseHookEnv(envFail)
	if err != nil {
		return nil, err
	}
	if crash == "" && fail == "" {
		return nil, nil
	}
	seen := map[string]int{}
	return func(point string) error {
		seen[point]++
		if point == crash && seen[point] == ccount {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			for { // SIGKILL cannot be caught: never go on
				time.Sleep(time.Hour)
			}
		}
		if point == fail && seen[point] == fcount {
			return fmt.Errorf("injected failure at %s (%s)", point, envFail)
		}
		return nil
	}, nil
}

func parseHookEnv(name string) (point string, count int, err error) {
	v := os.Getenv(name)
	if v == "" {
		return "", 0, nil
	}
	point, n, ok := strings.Cut(v, ":")
	count = 1
	if ok {
		if count, err = strconv.Atoi(n); err != nil || count < 1 {
			return "", 0, fmt.Errorf("%s=%q: want POINT or POINT:N with N >= 1", name, v)
		}
	}
	return point, count, nil
}
