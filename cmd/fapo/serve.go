package main

import (
	"context"
	"errors"
)

// serveCommand is being built; see the open issues.
func serveCommand() command {
	return command{
		name:    "serve",
		summary: "(not built yet)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			return errors.New("not built yet")
		},
	}
}
