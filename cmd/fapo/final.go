package main

import (
	"context"
	"errors"
)

// finalCommand is being built; see the open issues.
func finalCommand() command {
	return command{
		name:    "final",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
