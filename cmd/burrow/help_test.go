package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"runtime/debug"
	"strings"
	"testing"
)

// TestHelpEverywhere: every command and subcommand answers -h, --help and
// help with its usage line on stdout, and exits 0 (nil, or flag.ErrHelp,
// which main turns into status 0).
func TestHelpEverywhere(t *testing.T) {
	cmds := []struct{ args, want string }{
		{"server", "usage: burrow server init"},
		{"server init", "usage: burrow server init --cover HOST:PORT"},
		{"server run", "usage: burrow server run"},
		{"user", "usage: burrow user add NAME"},
		{"connect", "usage: burrow connect LINK|FILE"},
		{"cover", "usage: burrow cover"},
		{"demo", "usage: burrow demo"},
		{"lab", "usage: burrow lab"},
		{"check", "usage: burrow check HOST:PORT"},
		{"relay", "usage: burrow relay init"},
		{"relay init", "usage: burrow relay init --data DIR"},
		{"relay run", "usage: burrow relay run"},
		{"relay install", "usage: burrow relay install"},
		{"relay uninstall", "usage: burrow relay uninstall"},
		{"relay upgrade", "usage: burrow relay upgrade"},
		{"server relay-token", "usage: burrow server relay-token NAME"},
		{"admin", "usage: burrow admin add NAME"},
		{"admin add", "usage: burrow admin add NAME"},
		{"admin list", "usage: burrow admin list"},
		{"admin remove", "usage: burrow admin remove NAME"},
		{"admin totp", "usage: burrow admin totp NAME"},
	}
	for _, sub := range []string{"add", "list", "show", "set", "revoke", "enable", "rotate", "reset-traffic"} {
		cmds = append(cmds, struct{ args, want string }{"user " + sub, "usage: burrow user " + sub})
	}
	for _, c := range cmds {
		words := strings.Fields(c.args)
		for _, args := range [][]string{
			append(append([]string{}, words...), "-h"),
			append(append([]string{}, words...), "--help"),
			append(append([]string{}, words...), "help"),
			append([]string{"help"}, words...),
		} {
			var out, errOut bytes.Buffer
			err := run(context.Background(), args, &out, &errOut)
			if err != nil && !errors.Is(err, flag.ErrHelp) {
				t.Errorf("burrow %s: %v, want exit 0", strings.Join(args, " "), err)
			}
			if !strings.HasPrefix(out.String(), c.want) {
				t.Errorf("burrow %s printed %q on stdout, want it to start with %q", strings.Join(args, " "), out.String(), c.want)
			}
			if errOut.Len() > 0 {
				t.Errorf("burrow %s printed %q on stderr, want nothing", strings.Join(args, " "), errOut.String())
			}
		}
	}
}

// TestHelpFlagsReadable: no flag's usage text holds backquotes, which the
// flag package takes for the name of the flag's value (`-data burrow server
// init`).
func TestHelpFlagsReadable(t *testing.T) {
	var out bytes.Buffer
	run(context.Background(), []string{"server", "run", "-h"}, &out, &out)
	if !strings.Contains(out.String(), "-data string") {
		t.Errorf("server run -h:\n%s\nwant \"-data string\"", out.String())
	}
}

// TestHelpMisuse: a command group without a subcommand, or with an unknown
// one, prints the group's usage and fails.
func TestHelpMisuse(t *testing.T) {
	for _, args := range [][]string{{"server"}, {"user"}, {"user", "frobnicate"}, {"server", "frobnicate"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("burrow %s: %v, want an error", strings.Join(args, " "), err)
		}
		if !strings.Contains(errOut.String(), "usage: burrow "+args[0]) {
			t.Errorf("burrow %s printed %q on stderr, want the usage", strings.Join(args, " "), errOut.String())
		}
	}
}

func TestBuildStamp(t *testing.T) {
	info := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}, true
	}
	got := readBuildStamp(info)
	want := buildStamp{Version: "devel", Commit: "0123abcd", Time: "2026-12-01T10:00:00Z", Modified: true, Go: "go1.26.8"}
	if got != want {
		t.Errorf("readBuildStamp(vcs build) = %+v, want %+v", got, want)
	}
	releaseVersion, releaseCommit = "v1.2.0", "feedbeef"
	t.Cleanup(func() { releaseVersion, releaseCommit = "", "" })
	got = readBuildStamp(info)
	want = buildStamp{Version: "v1.2.0", Commit: "feedbeef", Time: "2026-12-01T10:00:00Z", Go: "go1.26.8"}
	if got != want {
		t.Errorf("readBuildStamp(stamped release) = %+v, want %+v", got, want)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"burrow v1.2.0\n", "commit:    feedbeef\n", "go:        go1", "platform:  "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("burrow version:\n%s\nwant %q in it", out.String(), w)
		}
	}
}
