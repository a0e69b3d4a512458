package main

import (
	"context"
	"errors"
)

// evalCommand is being built; see the open issues.
func evalCommand() command {
	return command{
		name:    "eval",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
