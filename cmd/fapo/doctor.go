package main

import (
	"context"
	"errors"
)

// doctorCommand is being built; see the open issues.
func doctorCommand() command {
	return command{
		name:    "doctor",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
