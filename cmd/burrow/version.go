package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Release builds stamp these with the linker, which wins over what Go
// recorded in the binary:
//
//	go build -ldflags "-X main.releaseVersion=v1.2.0 -X main.releaseCommit=$(git rev-parse HEAD) -X main.releaseBuilt=$(date -u +%FT%TZ)" ./cmd/burrow
var releaseVersion, releaseCommit, releaseBuilt string

// buildStamp is what `burrow version` prints.
type buildStamp struct {
	Version  string // release version, module version (go install …@v1.2.0), or "devel"
	Commit   string // VCS revision, "" if unknown
	Time     string // commit time (RFC 3339), "" if unknown
	Modified bool   // built from a work tree with uncommitted changes
	Go       string // Go toolchain
}

// version is this binary's version, for the admin API and `burrow version`.
var version = readBuildStamp(debug.ReadBuildInfo).Version

// readBuildStamp reads what the Go toolchain recorded (module version and, for
// builds in a git checkout with -buildvcs on, vcs.revision, vcs.time and
// vcs.modified), then applies the linker stamps.
func readBuildStamp(read func() (*debug.BuildInfo, bool)) buildStamp {
	st := buildStamp{Version: "devel", Go: runtime.Version()}
	if bi, ok := read(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			st.Version = v
		}
		st.Go = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				st.Commit = s.Value
			case "vcs.time":
				st.Time = s.Value
			case "vcs.modified":
				st.Modified = s.Value == "true"
			}
		}
	}
	if releaseVersion != "" {
		st.Version = releaseVersion
	}
	if releaseCommit != "" {
		st.Commit, st.Modified = releaseCommit, false
	}
	return st
}

func printVersion(w io.Writer) {
	st := readBuildStamp(debug.ReadBuildInfo)
	fmt.Fprintf(w, "burrow %s\n", st.Version)
	commit := st.Commit
	switch {
	case commit == "":
		commit = "unknown (build in a git clone with -buildvcs=true, or stamp main.releaseCommit)"
	case st.Modified:
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(w, "commit:    %s\n", commit)
	if st.Time != "" {
		fmt.Fprintf(w, "committed: %s\n", st.Time)
	}
	if releaseBuilt != "" {
		fmt.Fprintf(w, "built:     %s\n", releaseBuilt)
	}
	fmt.Fprintf(w, "go:        %s\n", st.Go)
	fmt.Fprintf(w, "platform:  %s/%s\n", runtime.GOOS, runtime.GOARCH)
}
