package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func versionCommand() command {
	return command{
		name:    "version",
		summary: "print the version and the commit it was built from",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			fs := newFlagSet(env, "version", "Usage: fapo version\n\nPrints fapo's version, commit and Go version.")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			fmt.Fprintln(env.stdout, versionString())
			return nil
		},
	}
}

func versionString() string {
	v, commit, dirty, goVersion := version, "unknown", "", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return fmt.Sprintf("fapo %s (commit %s%s, %s)", v, commit, dirty, goVersion)
}
