package main

import (
	"context"
	"errors"
)

// initCommand is being built; see the open issues.
func initCommand() command {
	return command{
		name:    "init",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
